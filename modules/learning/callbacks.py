"""Custom tf_keras callbacks driven by `modules.learning.loop.TrainingLoop` (and by `model.fit`
alike).

Each one reacts only to the hooks it overrides.
"""
import json
import os
import shutil
import tempfile
import weakref
from typing import Dict, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from modules import fileio
from modules.learning.loop import output_key


def current_learning_rate(optimizer) -> float:
    learning_rate = optimizer.learning_rate
    if isinstance(learning_rate, tf.keras.optimizers.schedules.LearningRateSchedule):
        learning_rate = learning_rate(optimizer.iterations)
    return float(tf.keras.backend.get_value(learning_rate))


class LearningRateLogger(tf.keras.callbacks.Callback):
    """Adds the learning rate in effect at the end of each epoch to the logs ("learning_rate").

    Put it before the loggers so they record it.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = current_learning_rate(self.model.optimizer)


class MetricsLogger(tf.keras.callbacks.Callback):
    """Writes each epoch's logs as one JSON line and as TensorBoard scalars."""

    def __init__(self, jsonl_path: str, tensorboard_dir: Optional[str] = None):
        super().__init__()
        self.jsonl_path = jsonl_path
        self.tensorboard_dir = tensorboard_dir
        self._writer = None

    def on_train_begin(self, logs=None):
        fileio.makedirs(os.path.dirname(self.jsonl_path) or ".")
        if self.tensorboard_dir:
            self._writer = tf.summary.create_file_writer(self.tensorboard_dir)

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        with fileio.GFile(self.jsonl_path, "a") as f:
            f.write(json.dumps({"epoch": epoch + 1, **logs}) + "\n")
        if self._writer is not None:
            with self._writer.as_default(step=epoch + 1):
                for name, value in logs.items():
                    tf.summary.scalar(name, value)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


class EarlyStopping(tf.keras.callbacks.Callback):
    """Stops when no metric in `monitor` has improved by `min_delta` for `patience` epochs,
    then puts back the weights of the epoch best on the first metric (`best_epoch`, 1-based).

    `monitor` is a metric name or a sequence of them; `mode` ("min" or "max", one per metric
    or one for all) defaults to "min" for losses and "max" otherwise. Watching the validation
    loss and ROC AUC together keeps training while either still improves. `weights_of` is the
    model whose weights are kept (default: the one trained; a tower of it, for
    `EarlyStoppingPerTower`).
    """

    def __init__(self, monitor: Union[str, Sequence[str]] = "val_auc",
                 mode: Union[None, str, Sequence[str]] = None, patience: int = 4,
                 min_delta: float = 0.0, restore_best_weights: bool = True,
                 weights_of: Optional[tf.keras.Model] = None):
        super().__init__()
        self.weights_of = weights_of
        self.monitors = [monitor] if isinstance(monitor, str) else list(monitor)
        if mode is None or isinstance(mode, str):
            modes = [mode or ("min" if m.endswith("loss") else "max") for m in self.monitors]
        else:
            modes = list(mode)
        if len(modes) != len(self.monitors) or any(m not in ("min", "max") for m in modes):
            raise ValueError(f"mode must be 'min' or 'max' for each monitored metric, got {mode!r}")
        self.monitor, self.mode = self.monitors[0], modes[0]
        self.modes, self.patience = modes, patience
        self.min_delta, self.restore_best_weights = min_delta, restore_best_weights

    def _improved(self, value: float, best: Optional[float], mode: str) -> bool:
        if best is None:
            return True
        if mode == "max":
            return value > best + self.min_delta
        return value < best - self.min_delta

    def on_train_begin(self, logs=None):
        self.best, self.best_epoch, self.best_weights, self.wait = None, None, None, 0
        self.bests = [None] * len(self.monitors)
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        values = []
        for name in self.monitors:
            if (logs or {}).get(name) is None:
                raise KeyError(f"early stopping monitors '{name}', which the logs lack "
                               f"(have: {', '.join(sorted(logs or {}))})")
            values.append(float(logs[name]))
        improved = [self._improved(v, b, m) for v, b, m in zip(values, self.bests, self.modes)]
        for i, better in enumerate(improved):
            if better:
                self.bests[i] = values[i]
        if improved[0]:
            self.best, self.best_epoch = values[0], epoch + 1
            if self.restore_best_weights:
                self.best_weights = (self.weights_of or self.model).get_weights()
        if any(improved):
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            (self.weights_of or self.model).set_weights(self.best_weights)


class EarlyStoppingPerTower(tf.keras.callbacks.Callback):
    """`EarlyStopping` of each tower of a `modules.models.model.Towers` on its own metrics
    (`monitor` names them as for one model: "val_loss" watches "val_{tower}_loss"): each
    keeps and puts back its own tower's best weights, and training stops once every tower
    has stopped improving (towers that stopped earlier keep training until then; only an
    epoch better than their best replaces the weights they keep)."""

    def __init__(self, towers: Dict[str, tf.keras.Model],
                 monitor: Union[str, Sequence[str]] = "val_auc", patience: int = 4):
        super().__init__()
        monitors = [monitor] if isinstance(monitor, str) else list(monitor)
        self.stoppers = {name: EarlyStopping([output_key(m, name) for m in monitors],
                                             patience=patience, weights_of=tower)
                         for name, tower in towers.items()}

    def set_model(self, model):
        super().set_model(model)
        for stopper in self.stoppers.values():
            stopper.set_model(model)

    def on_train_begin(self, logs=None):
        for stopper in self.stoppers.values():
            stopper.on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        for stopper in self.stoppers.values():
            stopper.on_epoch_end(epoch, logs)
        self.model.stop_training = all(s.stopped_epoch is not None
                                       for s in self.stoppers.values())

    def on_train_end(self, logs=None):
        for stopper in self.stoppers.values():
            stopper.on_train_end(logs)


class TrainingCheckpoint(tf.keras.callbacks.Callback):
    """Saves model, optimizer and epoch with `tf.train.CheckpointManager` after every epoch.

    On train begin it restores the latest checkpoint in `directory`, if any, and sets
    `restored_epoch` so the loop continues after the last finished epoch. A checkpoint is
    written only after an epoch completes, so a crash (or a NaN loss) keeps the last good one.
    Under a multi-worker strategy every worker restores the chief's checkpoint and saves (a
    collective), but only the chief in `directory`: the others in a local temporary folder,
    deleted with the callback.
    """

    def __init__(self, directory: str, max_to_keep: int = 2):
        super().__init__()
        self.directory = directory
        self.max_to_keep = max_to_keep
        self.restored_epoch = None

    def on_train_begin(self, logs=None):
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer,
                                               epoch=self._epoch)
        saved_in = self.directory
        if not self.model.distribute_strategy.extended.should_checkpoint:
            saved_in = tempfile.mkdtemp(prefix="worker-checkpoint-")
            weakref.finalize(self, shutil.rmtree, saved_in, True)
        self._manager = tf.train.CheckpointManager(self._checkpoint, saved_in,
                                                   max_to_keep=self.max_to_keep)
        self.restored_epoch = None
        latest = tf.train.latest_checkpoint(self.directory)
        if latest:
            self._checkpoint.restore(latest)
            self.restored_epoch = int(self._epoch.numpy())

    def on_epoch_end(self, epoch, logs=None):
        if logs and not all(np.isfinite(float(v)) for v in logs.values()):
            return
        self._epoch.assign(epoch + 1)
        self._manager.save(checkpoint_number=epoch + 1)
