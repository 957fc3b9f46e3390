"""The project's one training loop: tf.GradientTape steps compiled with tf.function.

The Trainer, every Tuner trial, the Distiller and the Pruner's fine-tuning all call
`TrainingLoop.fit`. It takes the model, the optimizer and a per-example loss function, so a
different loss (distillation) or a wrapped model (pruning) reuses it unchanged. It drives
tf_keras callbacks (ours and stock ones) through the standard hooks, and runs under any
`tf.distribute.Strategy`: the model and optimizer must then be created in `strategy.scope()`.
"""
import contextlib
import functools
import logging
import math
from typing import Callable, Dict, Iterable, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from modules.learning import console

LossFn = Callable[[Dict[str, tf.Tensor], tf.Tensor], tf.Tensor]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


def cross_entropy(targets: Dict[str, tf.Tensor], logits: tf.Tensor) -> tf.Tensor:
    """Per-example softmax cross-entropy of the integer labels, from logits."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(targets["label"],
                                                          tf.cast(logits, tf.float32))


def make_dataset(features: np.ndarray, targets: Optional[Dict[str, np.ndarray]],
                 batch_size: int, shuffle: bool, seed: Optional[int] = None,
                 repeat: int = 1,
                 transform: Optional[Callable[[tf.Tensor], tf.Tensor]] = None
                 ) -> tf.data.Dataset:
    """(features, {"label": ..., ...}) batches from in-memory arrays, reshuffled every epoch
    (features alone when `targets` is None). With `repeat`, one iteration (an epoch) makes
    that many passes over the rows, each in a new order; 0 repeats them endlessly.
    `transform` maps each batch of `features` (rows as stored) to the features yielded.

    Shuffled batches are gathered by index: each pass draws a permutation of the row numbers
    (a new one every pass and every iteration, reproducible from `seed`) and each batch
    gathers its rows, rather than passing every row through a shuffle buffer (6x slower per
    batch: the data pipeline, not the model, bounded the steps of small models)."""
    arrays = features if targets is None else (features, targets)
    rows = len(features)

    def transformed(batch):
        if transform is None:
            return batch
        return transform(batch) if targets is None else (transform(batch[0]), batch[1])

    if not shuffle:
        dataset = tf.data.Dataset.from_tensor_slices(arrays)
        if repeat != 1:
            dataset = dataset.repeat(repeat or None)
        dataset = dataset.batch(batch_size)
        if transform is not None:
            dataset = dataset.map(lambda *batch: transformed(batch[0] if targets is None
                                                             else batch),
                                  num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.prefetch(tf.data.AUTOTUNE)
    tensors = tf.nest.map_structure(tf.convert_to_tensor, arrays)
    orders = permutations(rows, seed)
    if repeat:
        orders = orders.take(repeat)
    batches = orders.rebatch(batch_size).map(
        lambda index: transformed(tf.nest.map_structure(lambda t: tf.gather(t, index),
                                                        tensors)),
        num_parallel_calls=tf.data.AUTOTUNE)
    if repeat:
        batches = batches.apply(tf.data.experimental.assert_cardinality(
            math.ceil(rows * repeat / batch_size)))
    return batches.prefetch(tf.data.AUTOTUNE)


def permutations(rows: int, seed: Optional[int] = None) -> tf.data.Dataset:
    """Endless random permutations of range(rows) (int64 [rows] each): different in every
    iteration of the dataset, and the same sequence again for the same `seed`."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).map(
        lambda draw: tf.random.experimental.stateless_shuffle(
            tf.range(rows, dtype=tf.int64), seed=tf.stack([draw, tf.constant(0, tf.int64)])))


# What the loop measures, per output: the names its logs use (`_Metrics`).
METRICS = ("loss", "accuracy", "auc")


def output_key(metric: str, output: str) -> str:
    """The log key of `metric` ("loss", "val_auc", ...) for one output of a model with
    several (towers): "{output}_loss", "val_{output}_auc", as Keras names them."""
    if metric.startswith("val_"):
        return f"val_{output}_{metric[4:]}"
    return f"{output}_{metric}"


class _Metrics:
    """Streaming loss, accuracy and ROC AUC (macro over classes when there are more than two),
    of each output when the model has several (`outputs`: keys as `output_key` names them)."""

    def __init__(self, num_classes: int, prefix: str = "",
                 outputs: Optional[Sequence[str]] = None):
        self.num_classes = num_classes
        self.outputs = outputs
        prefixes = [prefix] if outputs is None else [output_key(prefix, o) for o in outputs]
        loss, accuracy, auc = METRICS
        self.groups = [(tf.keras.metrics.Mean(name=p + loss),
                        tf.keras.metrics.SparseCategoricalAccuracy(name=p + accuracy),
                        tf.keras.metrics.AUC(num_thresholds=1000, name=p + auc,
                                             multi_label=num_classes > 2,
                                             num_labels=num_classes if num_classes > 2 else None))
                       for p in prefixes]
        self._metrics = [m for group in self.groups for m in group]
        # Read in one compiled call: read one by one, eagerly, they cost 4 ms per model
        # (0.25 ms a step, as the loop reads them after every execution).
        self._read = tf.function(lambda: [m.result() for m in self._metrics], autograph=False)

    def _each(self, values):
        return [values] if self.outputs is None else [values[o] for o in self.outputs]

    def update(self, per_example_loss, labels, logits):
        for (loss, accuracy, auc), per_example, output in zip(
                self.groups, self._each(per_example_loss), self._each(logits)):
            probabilities = tf.nn.softmax(tf.cast(output, tf.float32))
            loss.update_state(per_example)
            accuracy.update_state(labels, probabilities)
            if self.num_classes > 2:
                auc.update_state(tf.one_hot(labels, self.num_classes), probabilities)
            else:
                auc.update_state(labels, probabilities[:, 1])

    def reset(self):
        for group in self.groups:
            for metric in group:
                metric.reset_state()

    def results(self) -> Dict[str, float]:
        return {m.name: float(value) for m, value in zip(self._metrics, self._read())}


class TrainingLoop:
    """Custom training loop: loss, optimizer step, metrics, callbacks.

    Args:
      model: maps a batch of features to logits [batch, num_classes].
      optimizer: a tf_keras optimizer; a `LossScaleOptimizer` makes the loop scale the loss
        and unscale the gradients (mixed_float16).
      loss_fn: (targets, logits) -> per-example loss. `targets` is the dict the dataset yields
        next to the features; it always holds "label" (class ids). A dict of them, by name,
        trains a `modules.models.model.Towers` of the same names: each tower's loss is its own, and
        so are its gradient clipping and metrics (`output_key`).
      num_classes: number of classes of the label.
      strategy: a tf.distribute.Strategy; default: the current one (no distribution).
      clip_norm: clip gradients to this global norm after cross-replica summation; 0: off.
      class_weights: per-class multipliers of the per-example loss (imbalanced labels).
      steps_per_execution: train steps per tf.function call (fewer Python round trips);
        batch-level callbacks are called once per execution, as in `model.fit`.
    """

    def __init__(self, model: tf.keras.Model, optimizer,
                 loss_fn: Union[LossFn, Dict[str, LossFn]] = cross_entropy,
                 num_classes: int = 2, *, strategy: Optional[tf.distribute.Strategy] = None,
                 clip_norm: float = 0.0, class_weights: Optional[Sequence[float]] = None,
                 steps_per_execution: int = 1):
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.outputs = list(loss_fn) if isinstance(loss_fn, dict) else None
        self.num_classes = num_classes
        self.strategy = strategy or tf.distribute.get_strategy()
        self.clip_norm = float(clip_norm)
        self.steps_per_execution = max(1, int(steps_per_execution))
        self._scales_loss = isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
        # Both kinds of tf_keras optimizer (`make_optimizer` uses the legacy one) with their own
        # names for the same calls.
        self._legacy_optimizer = isinstance(optimizer, tf.keras.optimizers.legacy.Optimizer)
        with self.strategy.scope():
            self.class_weights = (None if class_weights is None
                                  else tf.constant(class_weights, tf.float32))
            self.train_metrics = _Metrics(num_classes, outputs=self.outputs)
            self.val_metrics = _Metrics(num_classes, prefix="val_", outputs=self.outputs)
            # The optimizer's slots are made here rather than in the first call of the train
            # step: a tf.function that creates variables is traced twice (0.6 s a model).
            if self._legacy_optimizer:
                optimizer._create_all_weights(model.trainable_variables)
            else:
                optimizer.build(model.trainable_variables)
        self._train_fn = self._make_train_fn()
        self._eval_fn = self._make_eval_fn()

    # -- compiled steps ----------------------------------------------------------------------
    def _per_example_loss(self, targets, logits):
        if self.outputs is not None:
            return {o: self._weighted(targets, self.loss_fn[o](targets, logits[o]))
                    for o in self.outputs}
        return self._weighted(targets, self.loss_fn(targets, logits))

    def _weighted(self, targets, per_example):
        if self.class_weights is not None:
            per_example = per_example * tf.gather(self.class_weights, targets["label"])
        return per_example

    def _variable_groups(self):
        """The trainable variables, one group per tower (clipped apart) or one in all."""
        if self.outputs is None:
            return [self.model.trainable_variables]
        return [self.model.towers[o].trainable_variables for o in self.outputs]

    def _train_step(self, features, targets):
        model, optimizer = self.model, self.optimizer
        with tf.GradientTape() as tape:
            logits = model(features, training=True)
            per_example = self._per_example_loss(targets, logits)
            loss = tf.add_n([tf.nn.compute_average_loss(p) for p in tf.nest.flatten(per_example)])
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled_loss = optimizer.get_scaled_loss(loss) if self._scales_loss else loss
        groups = self._variable_groups()
        gradients = tape.gradient(scaled_loss, groups)
        if self._scales_loss:
            gradients = [optimizer.get_unscaled_gradients(g) for g in gradients]
        if self.strategy.num_replicas_in_sync > 1:
            gradients = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, gradients)
        if self.clip_norm:
            gradients = [tf.clip_by_global_norm(g, self.clip_norm)[0] for g in gradients]
        pairs = zip(tf.nest.flatten(gradients), tf.nest.flatten(groups))
        if self._legacy_optimizer:  # gradients are already summed across replicas (above)
            optimizer.apply_gradients(pairs, experimental_aggregate_gradients=False)
        else:
            optimizer.apply_gradients(pairs, skip_gradients_aggregation=True)
        self.train_metrics.update(per_example, targets["label"], logits)

    def _eval_step(self, features, targets):
        logits = self.model(features, training=False)
        self.val_metrics.update(self._per_example_loss(targets, logits), targets["label"], logits)

    # The steps are compiled without AutoGraph: they hold no Python control flow on tensors
    # (the step loop is an explicit tf.while_loop), and converting the model's code again
    # for every new model cost more than the training of a small one.
    def _make_train_fn(self):
        return tf.function(functools.partial(_repeat, self.strategy, self._train_step),
                           autograph=False)

    def _make_eval_fn(self):
        return tf.function(functools.partial(_repeat, self.strategy, self._eval_step),
                           autograph=False)

    def _distribute(self, dataset: tf.data.Dataset):
        """`dataset`'s batches split among the replicas. Under a multi-worker strategy every
        worker builds the whole dataset, the same (same rows, same seeds), and keeps its own
        part of each batch: sharded by data. Our datasets read no files, so the default
        policy (AUTO) comes to the same; sharding by files would give the workers different
        numbers of batches and leave one waiting in a collective."""
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    # -- public API --------------------------------------------------------------------------
    def evaluate(self, dataset: tf.data.Dataset) -> Dict[str, float]:
        """Loss and metrics of the model on `dataset` (keys prefixed with `val_`)."""
        self.val_metrics.reset()
        steps = _num_batches(dataset)
        if steps:
            self._eval_fn(iter(self._distribute(dataset)), tf.constant(steps))
        return self.val_metrics.results()

    def fit(self, train: tf.data.Dataset, validation: Optional[tf.data.Dataset] = None, *,
            epochs: int = 1, initial_epoch: int = 0,
            callbacks: Iterable[tf.keras.callbacks.Callback] = (),
            verbose: bool = True, steps_per_epoch: Optional[int] = None) -> Dict[str, list]:
        """Trains from `initial_epoch` to `epochs`; returns the per-epoch logs (History).

        An epoch is one iteration of `train`; with `steps_per_epoch` (an endless `train`),
        that many batches of one iterator, each epoch going on where the last stopped.

        A callback that restores a checkpoint in `on_train_begin` sets `restored_epoch`, and
        training continues from there. `model.stop_training` (early stopping) ends it.
        """
        with self.strategy.scope():  # callbacks may touch distributed variables, as in fit
            return self._fit(train, validation, epochs, initial_epoch, list(callbacks), verbose,
                             steps_per_epoch)

    def _fit(self, train, validation, epochs, initial_epoch, callbacks, verbose,
             steps_per_epoch):
        steps = steps_per_epoch or _num_batches(train)
        progress, bar = [], console.progress_stream() if verbose else None
        if bar is not None:  # our metrics are already running means: the bar must not average
            names = [*self.train_metrics.results(), *self.val_metrics.results()]
            progress = [tf.keras.callbacks.ProgbarLogger("steps", stateful_metrics=names)]
        elif verbose:  # a pipe, a file, a pod's log: one line per epoch
            progress = [EpochLines(epochs)]
        callback_list = tf.keras.callbacks.CallbackList(
            callbacks + progress, add_history=True, model=self.model,
            epochs=epochs, steps=steps, verbose=1 if verbose else 0)
        with contextlib.redirect_stdout(bar) if bar is not None else contextlib.nullcontext():
            return self._run_epochs(train, validation, epochs, initial_epoch, callbacks,
                                    callback_list, steps, steps_per_epoch)

    def _run_epochs(self, train, validation, epochs, initial_epoch, callbacks, callback_list,
                    steps, steps_per_epoch):
        if getattr(self.model, "optimizer", None) is None:
            self.model.optimizer = self.optimizer  # for callbacks that read the learning rate
        self.model.stop_training = False
        self.epochs_trained = 0
        callback_list.on_train_begin()
        restored = [cb.restored_epoch for cb in callbacks
                    if getattr(cb, "restored_epoch", None) is not None]
        initial_epoch = max([initial_epoch, *restored])
        logs: Dict[str, float] = {}
        distributed = self._distribute(train)
        stream = iter(distributed) if steps_per_epoch else None
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            self.train_metrics.reset()
            iterator = stream or iter(distributed)
            for first in range(0, steps, self.steps_per_execution):
                count = min(self.steps_per_execution, steps - first)
                callback_list.on_train_batch_begin(first)
                self._train_fn(iterator, tf.constant(count))
                logs = self.train_metrics.results()
                bad = [f"{k} became {v}" for k, v in logs.items() if k.endswith("loss")
                       and not math.isfinite(v)]
                if bad:
                    raise NonFiniteLossError(
                        f"training {', '.join(bad)} at epoch {epoch + 1}, step "
                        f"{first + count}: lower the learning rate or enable clip_norm; the last "
                        f"good checkpoint (if any) was kept")
                callback_list.on_train_batch_end(first + count - 1, logs)
            if validation is not None:
                logs.update(self.evaluate(validation))
            self.epochs_trained += 1
            callback_list.on_epoch_end(epoch, logs)
            if self.model.stop_training:
                break
        callback_list.on_train_end(logs)
        return self.model.history.history if hasattr(self.model, "history") else {}


class EpochLines(tf.keras.callbacks.Callback):
    """One log line per epoch (loss and metrics), where no progress bar can be drawn."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        values = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items()
                          if isinstance(v, (int, float)))
        logging.getLogger(__name__).info("epoch %d/%d: %s", epoch + 1, self.epochs, values)


def _repeat(strategy: tf.distribute.Strategy, step: Callable, iterator, steps: tf.Tensor):
    """Runs `step` on the next `steps` batches of a distributed iterator, in one graph."""
    def body(i):
        strategy.run(step, args=next(iterator))
        return (i + 1,)

    tf.while_loop(lambda i: i < steps, body, (tf.constant(0, steps.dtype),))


def _num_batches(dataset: tf.data.Dataset) -> int:
    count = int(dataset.cardinality())
    if count < 0:
        raise ValueError("the training loop needs datasets of known size (from in-memory data)")
    return count

