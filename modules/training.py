"""What every training component shares: in-memory prepared data, the distribution strategy,
the optimizer with its learning-rate schedule, and one `train_model` around the loop."""
import dataclasses
import math
import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from modules import batchnorm, data, loop
from modules import callbacks as cb
from modules.model import ModelConfig
from modules.preprocessing import FeaturePreprocessor, fit_preprocessor, transform
from modules.schedules import ConstantThenExponentialDecay
from modules.settings import STRATEGIES



@dataclasses.dataclass
class PreparedData:
    """Both splits preprocessed into dense matrices, with what produced them."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    classes: List[str]
    columns: List[data.FeatureColumn]
    label: data.FeatureColumn
    preprocessor: FeaturePreprocessor
    row_counts: Dict[str, int]  # rows used and rows dropped, for the report

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def prepare_data(train_files: Sequence[str], eval_files: Sequence[str], schema_path: str,
                 label: str, drop: Sequence[str] = ()) -> PreparedData:
    """Loads the train and eval splits; learns the preprocessing and the classes from train."""
    schema = data.load_schema(schema_path)
    return _prepare(train_files, eval_files, data.feature_columns(schema, label, drop),
                    data.label_column(schema, label))


def prepare_like(model, examples: Sequence) -> PreparedData:
    """Loads the train and eval splits of an Examples artifact (a one-item list, as in an
    executor's input_dict) exactly as `model` (an `export.ExportedModel`) was trained: its
    columns, label, classes and preprocessing."""
    return _prepare(data.split_files(examples, "train"), data.split_files(examples, "eval"),
                    model.columns, model.label, model.preprocessor, model.classes)


def _prepare(train_files, eval_files, columns, label_column,
             preprocessor: Optional[FeaturePreprocessor] = None,
             classes: Optional[Sequence[str]] = None) -> PreparedData:
    """Rows without a label are dropped; eval rows of a class the training split never had
    are dropped too. Both are counted in `row_counts`."""
    train = data.load_split(train_files, columns, label_column)
    evaluation = data.load_split(eval_files, columns, label_column)
    classes = list(classes) if classes is not None else data.class_vocabulary(train.labels)
    if len(classes) < 2:
        raise ValueError(f"label '{label_column.name}' has a single class ({classes}) in the "
                         f"training split; a classifier needs at least two")
    if preprocessor is None:
        preprocessor = fit_preprocessor(train, columns)
    y_train = data.class_ids(train.labels, classes)
    y_eval = data.class_ids(evaluation.labels, classes)
    known_train, known_eval = y_train >= 0, y_eval >= 0
    x_train, x_eval = transform(preprocessor, train), transform(preprocessor, evaluation)
    counts = {"train_rows": int(known_train.sum()), "eval_rows": int(known_eval.sum()),
              "dropped_missing_label": train.dropped_missing_label
              + evaluation.dropped_missing_label,
              "dropped_unseen_class": int((~known_train).sum() + (~known_eval).sum())}
    return PreparedData(x_train[known_train], y_train[known_train], x_eval[known_eval],
                        y_eval[known_eval], classes, list(columns), label_column, preprocessor,
                        counts)


_STRATEGIES: Dict[str, tf.distribute.Strategy] = {}


def make_strategy(name: str = "none") -> tf.distribute.Strategy:
    """none: the default strategy; mirrored: every local device; multi_worker: the cluster in
    TF_CONFIG (as a Kubeflow training job sets it). One instance per process: components
    share a process under LocalDagRunner, and collectives must not be set up twice."""
    if name == "none":
        return tf.distribute.get_strategy()
    if name not in ("mirrored", "multi_worker"):
        raise ValueError(f"unknown strategy '{name}'; choose one of {', '.join(STRATEGIES)}")
    if name == "multi_worker" and "TF_CONFIG" not in os.environ:
        raise ValueError("strategy multi_worker needs TF_CONFIG describing the cluster")
    if name not in _STRATEGIES:
        _STRATEGIES[name] = (tf.distribute.MirroredStrategy() if name == "mirrored"
                             else tf.distribute.MultiWorkerMirroredStrategy())
    return _STRATEGIES[name]


# Training budgets that fit the data. On a small split a batch is at most 1/8 of the rows (not
# below 16), and an epoch repeats the split until it makes at least MIN_STEPS_PER_EPOCH
# optimizer steps: epoch counts (training, tuning budgets, patience, the learning-rate
# schedule) then mean enough optimizer steps whatever the number of rows. Large splits are
# unaffected: one epoch is one pass.
MIN_BATCH_SIZE = 16
MIN_BATCHES_PER_PASS = 8
MIN_STEPS_PER_EPOCH = 32


@dataclasses.dataclass(frozen=True)
class Budget:
    """How `rows` training rows are batched into epochs."""
    batch_size: int  # per replica
    global_batch_size: int
    passes_per_epoch: int  # passes over the training split per epoch
    steps_per_epoch: int


def budget(rows: int, batch_size: int, replicas: int = 1) -> Budget:
    """The batch size capped by the number of rows, and the passes an epoch needs to make
    MIN_STEPS_PER_EPOCH steps."""
    cap = max(MIN_BATCH_SIZE, rows // (MIN_BATCHES_PER_PASS * replicas))
    per_replica = max(1, min(batch_size, cap))
    global_batch = per_replica * replicas
    passes = max(1, math.ceil(MIN_STEPS_PER_EPOCH * global_batch / max(1, rows)))
    if math.ceil(rows / global_batch) >= MIN_STEPS_PER_EPOCH:
        passes = 1
    return Budget(per_replica, global_batch, passes,
                  max(1, math.ceil(rows * passes / global_batch)))


def make_optimizer(config: ModelConfig, steps_per_epoch: int):
    schedule = ConstantThenExponentialDecay(config.learning_rate, steps_per_epoch,
                                            config.constant_epochs, config.decay_rate)
    optimizer = tf.keras.optimizers.Adam(schedule)
    if config.precision == "mixed_float16":
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def class_weights(labels: np.ndarray, num_classes: int) -> List[float]:
    """Inverse-frequency weights, normalized so the average example weighs 1."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = len(labels) / (num_classes * np.maximum(counts, 1.0))
    return [float(w) for w in weights]


@dataclasses.dataclass
class TrainResult:
    model: tf.keras.Model
    history: Dict[str, list]
    epochs_trained: int
    best_epoch: Optional[int]
    eval_metrics: Dict[str, float]
    budget: Budget


def train_model(build_model: Callable[[], tf.keras.Model], prepared: PreparedData,
                config: ModelConfig, *, seed: int = 0,
                loss_fn: loop.LossFn = loop.cross_entropy,
                extra_targets: Optional[Dict[str, Dict[str, np.ndarray]]] = None,
                strategy: str = "none", run_dir: Optional[str] = None,
                checkpoint_dir: Optional[str] = None, initial_epoch: int = 0,
                epochs: Optional[int] = None,
                monitor: Sequence[str] = ("val_loss", "val_auc"),
                early_stopping: bool = True,
                balance_classes: bool = False,
                extra_callbacks: Sequence[tf.keras.callbacks.Callback] = (),
                restore_model: Optional[Callable[[tf.keras.Model], None]] = None,
                steps_per_execution: int = 16, verbose: bool = True) -> TrainResult:
    """Builds the model and optimizer in the strategy's scope and trains it with the loop.

    `extra_targets` adds arrays next to the labels ({"train": {...}, "eval": {...}}), e.g.
    cached teacher logits for distillation. The batch size and the epoch follow `budget`.
    With `early_stopping`, training stops when none of the metrics in `monitor` has improved
    for `config.early_stopping_patience` epochs, and keeps the weights of the epoch best on
    the first (by default the validation loss, a proper score: AUC alone ranks well while
    probabilities drift). Batch normalization statistics are recalibrated on the training
    split at the end (`modules.batchnorm`). `run_dir` receives metrics.jsonl and TensorBoard
    logs; `checkpoint_dir` makes the training resumable. `restore_model` may load weights into
    the freshly built model before training (a Hyperband trial continuing another).
    `steps_per_execution` train steps run per tf.function call; pruning needs 1, so that its
    step counter advances every batch.
    """
    tf.keras.utils.set_random_seed(seed)
    distribution = make_strategy(strategy)
    plan = budget(len(prepared.x_train), config.batch_size, distribution.num_replicas_in_sync)
    with distribution.scope():
        model = build_model()
        batchnorm.set_momentum(model, batchnorm.momentum_for(plan.steps_per_epoch))
        optimizer = make_optimizer(config, plan.steps_per_epoch)
        model.optimizer = optimizer
        if restore_model is not None:
            restore_model(model)
    extra = extra_targets or {}
    train = loop.make_dataset(prepared.x_train, {"label": prepared.y_train, **extra.get("train", {})},
                              plan.global_batch_size, shuffle=True, seed=seed,
                              repeat=plan.passes_per_epoch)
    evaluation = loop.make_dataset(prepared.x_eval, {"label": prepared.y_eval,
                                                     **extra.get("eval", {})},
                                   plan.global_batch_size, shuffle=False)
    weights = class_weights(prepared.y_train, prepared.num_classes) if balance_classes else None
    training_loop = loop.TrainingLoop(model, optimizer, loss_fn, prepared.num_classes,
                                      strategy=distribution, clip_norm=config.clip_norm,
                                      class_weights=weights,
                                      steps_per_execution=steps_per_execution)
    callbacks: List[tf.keras.callbacks.Callback] = [cb.LearningRateLogger()]
    if run_dir:
        callbacks.append(cb.MetricsLogger(os.path.join(run_dir, "metrics.jsonl"),
                                          os.path.join(run_dir, "tensorboard")))
    stopper = None
    if early_stopping:
        stopper = cb.EarlyStopping(monitor=monitor, patience=config.early_stopping_patience)
        callbacks.append(stopper)
    if checkpoint_dir:
        callbacks.append(cb.TrainingCheckpoint(checkpoint_dir))
    callbacks.extend(extra_callbacks)
    history = training_loop.fit(train, evaluation, epochs=epochs or config.epochs,
                                initial_epoch=initial_epoch, callbacks=callbacks,
                                verbose=verbose)
    with distribution.scope():
        batchnorm.recalibrate(model, loop.make_dataset(prepared.x_train, None,
                                                       plan.global_batch_size, shuffle=False))
    return TrainResult(model, history, training_loop.epochs_trained,
                       stopper.best_epoch if stopper else None,
                       training_loop.evaluate(evaluation), plan)

