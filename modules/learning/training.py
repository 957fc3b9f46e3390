"""What every training component shares: the prepared splits, the distribution strategy,
the optimizer with its learning-rate schedule, and one `train_model` around the loop."""
import collections
import contextlib
import dataclasses
import json
import math
import os
import random
import tempfile
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context
from tf_keras.src import backend as keras_backend

from modules.learning import loop
from modules.learning import callbacks as cb
from modules.learning.schedules import ConstantThenExponentialDecay
from modules.models import batchnorm
from modules.models.hyperparameters import ModelConfig
from modules.reading import data, splits
from modules.reading.preprocessing import FeaturePreprocessor, fit_preprocessor, load_statistics
from modules.settings import STRATEGIES, Training



@dataclasses.dataclass
class PreparedData:
    """The training split and one held-out split prepared (`modules.reading.splits.Split`: in memory
    when small, streamed when not), with what produced them. The held-out split is
    `data.VALIDATION` for every step that selects and `data.TEST` for the Evaluator alone."""
    train: splits.Split
    held_out: splits.Split
    classes: List[str]
    columns: List[data.FeatureColumn]
    label: data.FeatureColumn
    preprocessor: Optional[FeaturePreprocessor]
    row_counts: Dict[str, int]  # rows used and rows dropped, for the report
    class_counts: Dict[str, List[int]] = dataclasses.field(default_factory=dict)
    held_out_split: str = data.VALIDATION
    files: Dict[str, Sequence[str]] = dataclasses.field(default_factory=dict)  # by split

    def raw(self, split: str) -> "RawRows":
        """The same rows as `train` or `held_out`, in the same order, as raw columns."""
        return RawRows(self.files[split], _inputs(self.columns, self.preprocessor), self.label,
                       self.classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def dim(self) -> int:
        """Width of the preprocessed feature vector: the model core's input."""
        return self.train.dim

    def features(self, serialized: tf.Tensor) -> tf.Tensor:
        """Serialized tf.Examples -> their preprocessed feature vectors, as the splits hold
        them (for scoring raw examples)."""
        return self.preprocessor(data.parse_examples(
            serialized, _inputs(self.columns, self.preprocessor)))

    def validation(self, rows: Optional[int] = None) -> splits.Split:
        """The held-out split, or a uniform sample of at most `rows` of its rows (drawn once,
        the same for every model of a step: `Split.sample` keeps it)."""
        return self.held_out.sample(rows) if rows else self.held_out

    def counts(self, split: str) -> np.ndarray:
        """Rows per class of the training split (data.TRAIN) or of the held-out one."""
        if split not in self.class_counts:
            held = {data.TRAIN: self.train, self.held_out_split: self.held_out}
            self.class_counts[split] = held[split].class_counts(self.num_classes).tolist()
        return np.asarray(self.class_counts[split], np.int64)


def prepare_data(train_files: Sequence[str], held_out_files: Sequence[str], schema_path: str,
                 statistics_uri: str, label: str, drop: Sequence[str] = (),
                 cache_mb: float = splits.DEFAULT_CACHE_MB,
                 counts_dir: Optional[str] = None,
                 held_out_split: str = data.VALIDATION) -> PreparedData:
    """Prepares the train split and a held-out split (validation unless told otherwise): the
    preprocessing is fitted on StatisticsGen's statistics of the training split
    (`statistics_uri`), the classes are the training split's labels. `counts_dir` keeps the
    label counts for the next steps (`data.label_counts`)."""
    schema = data.load_schema(schema_path)
    columns = data.feature_columns(schema, label, drop)
    preprocessor = fit_preprocessor(load_statistics(statistics_uri, data.TRAIN), columns)
    return _prepare(train_files, held_out_files, held_out_split, columns,
                    data.label_column(schema, label), preprocessor, cache_mb=cache_mb,
                    counts_dir=counts_dir)


def prepare_like(model, examples: Sequence, cache_mb: float = splits.DEFAULT_CACHE_MB,
                 counts_dir: Optional[str] = None,
                 held_out_split: str = data.VALIDATION) -> PreparedData:
    """Prepares the train split and the `held_out_split` of an Examples artifact (a one-item
    list, as in an executor's input_dict) exactly as `model` (an `export.ExportedModel`) was
    trained: its columns, label, classes and preprocessing."""
    return _prepare(data.split_files(examples, data.TRAIN),
                    data.split_files(examples, held_out_split), held_out_split,
                    model.columns, model.label, model.preprocessor, model.classes, cache_mb,
                    counts_dir)


def _prepare(train_files, held_out_files, held_out_split: str, columns, label_column,
             preprocessor: FeaturePreprocessor, classes: Optional[Sequence[str]] = None,
             cache_mb: float = splits.DEFAULT_CACHE_MB,
             counts_dir: Optional[str] = None) -> PreparedData:
    """Rows without a label are dropped; held-out rows of a class the training split never
    had are dropped too. Both are counted in `row_counts`. One streamed pass counts the
    labels, a second prepares the rows (only when a step reads them)."""
    train_labels = data.label_counts(train_files, label_column, cache_dir=counts_dir)
    held_out_labels = data.label_counts(held_out_files, label_column, cache_dir=counts_dir)
    classes = list(classes) if classes is not None else data.class_vocabulary(train_labels)
    if len(classes) < 2:
        raise ValueError(f"label '{label_column.name}' has a single class ({classes}) in the "
                         f"training split; a classifier needs at least two")
    per_class = {name: [labels.get(c, 0) for c in classes]
                 for name, labels in ((data.TRAIN, train_labels),
                                      (held_out_split, held_out_labels))}
    unseen = sum(n for labels in (train_labels, held_out_labels) for c, n in labels.items()
                 if c and c not in classes)
    counts = {"train_rows": sum(per_class[data.TRAIN]),
              f"{held_out_split}_rows": sum(per_class[held_out_split]),
              "dropped_missing_label": train_labels.get("", 0) + held_out_labels.get("", 0),
              "dropped_unseen_class": unseen}
    prepared_splits = [
        splits.Split.from_blocks(_prepared_blocks(files, columns, label_column, preprocessor,
                                                  classes),
                                 preprocessor.output_dim, rows, cache_mb,
                                 expand=preprocessor.expand)
        for files, rows in ((train_files, counts["train_rows"]),
                            (held_out_files, counts[f"{held_out_split}_rows"]))]
    return PreparedData(*prepared_splits, classes, list(columns), label_column, preprocessor,
                        counts, per_class, held_out_split,
                        {data.TRAIN: train_files, held_out_split: held_out_files})


class RawRows:
    """A split's labeled rows of known classes as raw canonical columns (numeric: float64,
    NaN if missing; text: bytes), streamed in file order: the rows of the prepared split,
    in its order, for the models that take raw features (`modules.edge.RawModel`). `blocks`
    and `first_row` read like `splits.Split`'s, so `modules.verdict.evaluation` measures
    both the same way."""

    def __init__(self, files: Sequence[str], columns: Sequence[data.FeatureColumn],
                 label: data.FeatureColumn, classes: Sequence[str]):
        self.files, self.columns, self.label = list(files), list(columns), label
        self.classes = list(classes)
        # Traced once in the process for every read of such rows: a function made per read,
        # traced per block shape, was traced again by every candidate measured on them (about
        # 1 s each with 30 columns).
        columns, label = self.columns, self.label
        self._parse = _traced_once(
            ["raw rows", [dataclasses.asdict(c) for c in columns], dataclasses.asdict(label)],
            lambda: tf.function(lambda s: data.parse_examples(s, columns, label),
                                input_signature=[tf.TensorSpec([None], tf.string)],
                                autograph=False))

    def parse(self, serialized: tf.Tensor) -> Dict[str, np.ndarray]:
        """Serialized tf.Examples -> their raw columns."""
        return {name: values.numpy()
                for name, values in data.parse_examples(serialized, self.columns).items()}

    def blocks(self) -> Iterator[tuple]:
        """({column: values}, {"label": class ids}) per block of `splits.BLOCK_ROWS` rows."""
        known = {name.encode("utf-8"): i for i, name in enumerate(self.classes)}
        for serialized in data.split_records(self.files).batch(splits.BLOCK_ROWS):
            parsed = {name: values.numpy() for name, values in self._parse(serialized).items()}
            ids = np.array([known.get(v, -1) for v in parsed.pop(self.label.name)], np.int64)
            keep = ids >= 0
            if keep.any():
                yield {name: values[keep] for name, values in parsed.items()}, {"label": ids[keep]}

    def first_row(self) -> Dict[str, np.ndarray]:
        columns, _ = next(iter(self.blocks()))
        return {name: values[:1] for name, values in columns.items()}

    def sample(self, rows: int, seed: int = 0) -> Dict[str, np.ndarray]:
        """A uniform sample of at most `rows` rows, in one pass holding at most `rows` (each
        block's rows get random keys; the `rows` smallest keys so far are kept)."""
        rng = np.random.default_rng(seed)
        kept: Optional[Dict[str, np.ndarray]] = None
        keys = np.zeros(0)
        for columns, _ in self.blocks():
            block_keys = rng.random(len(next(iter(columns.values()))))
            merged = {n: np.concatenate([kept[n], v]) if kept else v for n, v in columns.items()}
            keys = np.concatenate([keys, block_keys])
            order = np.argsort(keys, kind="stable")[:rows]
            kept, keys = {n: v[order] for n, v in merged.items()}, keys[order]
        if kept is None:
            raise ValueError("the split has no labeled rows to sample")
        return kept


def _prepared_blocks(files, columns, label_column, preprocessor: FeaturePreprocessor,
                     classes: Sequence[str]) -> tf.data.Dataset:
    """(encoded features, {"label": class id}) blocks of a split's labeled rows of known
    classes, parsed and encoded batch by batch with the graph serving runs
    (`FeaturePreprocessor.encode`; the split reads them through `expand`)."""
    return (data.split_records(files).batch(splits.BLOCK_ROWS)
            .map(_block_preparation(columns, label_column, preprocessor, classes),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))


# The traced functions of this process, by what they compute (the newest kept). Under
# LocalDagRunner the Tuner, Trainer, Baselines, Distiller, Pruner, Quantizer and Evaluator
# share one process and read their splits with the same parsing and preprocessing, each from
# its own copy of it: traced per split, they took 1-2 s each time (12 s of a run with
# attrition's 30 columns); now traced once, and called by every split's dataset.
_TRACED: "collections.OrderedDict[str, Callable]" = collections.OrderedDict()
_TRACED_KEPT = 8


def _traced_once(what: list, make: Callable[[], Callable]) -> Callable:
    """The function `make()` returns, made once for every equal `what` (JSON)."""
    key = json.dumps(what, sort_keys=True, default=str)
    function = _TRACED.pop(key, None)
    if function is None:
        function = make()
    _TRACED[key] = function
    while len(_TRACED) > _TRACED_KEPT:
        _TRACED.popitem(last=False)
    return function


def _block_preparation(columns, label_column, preprocessor: FeaturePreprocessor,
                       classes: Sequence[str]) -> Callable:
    """serialized tf.Examples [n] -> (encoded features, {"label": class ids}) of those with a
    label of `classes`."""
    inputs = _inputs(columns, preprocessor)

    def make():
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(classes)), tf.range(len(classes), dtype=tf.int64)), -1)

        # Not converted by AutoGraph (no Python control flow on tensors): converting the
        # parsing and the preprocessing layers took 4.6 s a split.
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
        def prepare(serialized):
            parsed = data.parse_examples(serialized, inputs, label_column)
            ids = table.lookup(parsed.pop(label_column.name))
            known = ids >= 0
            x = preprocessor.encode(parsed)
            return tf.boolean_mask(x, known), {"label": tf.boolean_mask(ids, known)}

        return prepare

    return _traced_once(["prepared blocks", [dataclasses.asdict(c) for c in inputs],
                         dataclasses.asdict(label_column), preprocessor.get_config(),
                         list(classes)], make)


def _inputs(columns: Sequence[data.FeatureColumn],
            preprocessor: FeaturePreprocessor) -> List[data.FeatureColumn]:
    """The columns the preprocessing reads."""
    return [c for c in columns if c.name in set(preprocessor.input_names)]


_STRATEGIES: Dict[str, tf.distribute.Strategy] = {}


def make_strategy(name: str = "none") -> tf.distribute.Strategy:
    """none: the default strategy; mirrored: every local device; multi_worker: the cluster in
    TF_CONFIG (as a Kubeflow training job sets it). One instance per process: components
    share a process under LocalDagRunner, and collectives must not be set up twice.
    multi_worker must be made before the process runs any TensorFlow op (TensorFlow sets up
    its collectives at program startup): the Trainer's run_fn makes it first."""
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


@contextlib.contextmanager
def written_by_chief(strategy: tf.distribute.Strategy, path: str) -> Iterator[str]:
    """Where this process writes what a training under `strategy` saves at `path`: `path` on
    the chief (the only process, but under multi_worker), a local temporary folder deleted on
    exit on the other workers. They must save as the chief does (saving reads the variables,
    a collective every worker joins) but not over it: TensorFlow's multi-worker guide, "Model
    saving and loading"."""
    if strategy.extended.should_checkpoint:
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="worker-") as scratch:
            yield scratch


# Training budgets that fit the data. On a small split a batch is at most 1/8 of the rows (not
# below 16), and an epoch repeats the split until it makes at least MIN_STEPS_PER_EPOCH
# optimizer steps. The searches (tuner trials, student candidates, pruning and QAT fine-tuning)
# cap an epoch at MAX_ROWS_PER_EPOCH rows of one continuous shuffled stream (each epoch goes
# on where the last one stopped, so successive epochs see new rows), as Keras'
# `steps_per_epoch` does for large data: their epoch counts, patience and learning-rate
# schedules mean a bounded, sufficient number of steps, and validation comes as often,
# whatever the number of rows. The Trainer's final training is not capped: its epochs are
# passes over every row. Splits in between: one epoch is one pass.
MIN_BATCH_SIZE = 16
MIN_BATCHES_PER_PASS = 8
MIN_STEPS_PER_EPOCH = 32
MAX_ROWS_PER_EPOCH = 65_536
EVAL_BATCH_SIZE = 2048
# The searches validate on a uniform sample of at most this many validation rows (standard
# error of an accuracy near 0.9: 0.002), bounded as their epochs are; the candidates they pick
# are then measured on every validation row. The Trainer's final training validates on all.
SEARCH_VALIDATION_ROWS = MAX_ROWS_PER_EPOCH // 4


@dataclasses.dataclass(frozen=True)
class Budget:
    """How `rows` training rows are batched into epochs."""
    batch_size: int  # per replica
    global_batch_size: int
    passes_per_epoch: int  # passes over the training split per epoch
    steps_per_epoch: int
    continuous: bool = False  # epochs are MAX_ROWS_PER_EPOCH rows of one endless stream


def budget(rows: int, batch_size: int, replicas: int = 1,
           epoch_rows: Optional[int] = MAX_ROWS_PER_EPOCH,
           min_steps: int = MIN_STEPS_PER_EPOCH) -> Budget:
    """The batch size capped by the number of rows, and the passes an epoch needs to make
    `min_steps` steps (or, past `epoch_rows` rows, the steps of that many; None: no cap)."""
    cap = max(MIN_BATCH_SIZE, rows // (MIN_BATCHES_PER_PASS * replicas))
    per_replica = max(1, min(batch_size, cap))
    global_batch = per_replica * replicas
    if epoch_rows and rows > epoch_rows:
        return Budget(per_replica, global_batch, 1, math.ceil(epoch_rows / global_batch),
                      continuous=True)
    passes = max(1, math.ceil(min_steps * global_batch / max(1, rows)))
    if math.ceil(rows / global_batch) >= min_steps:
        passes = 1
    return Budget(per_replica, global_batch, passes,
                  max(1, math.ceil(rows * passes / global_batch)))


def make_optimizer(config: ModelConfig, steps_per_epoch: int):
    schedule = ConstantThenExponentialDecay(config.learning_rate, steps_per_epoch,
                                            config.constant_epochs, config.decay_rate)
    # tf_keras' legacy Adam: the same algorithm as tf.keras.optimizers.Adam in one fused op
    # per variable (ResourceApplyAdam), where the new one traces a dozen ops per variable into
    # every train step: half of a small model's tracing, which is most of a Tuner trial's time
    # (2x64 model: 2.7 -> 2.1 s to trace and train 94 steps; the Distiller's 7 students as
    # towers: 17 -> 12 s). The Model Optimization Toolkit supports both.
    optimizer = tf.keras.optimizers.legacy.Adam(schedule)
    if config.precision == "mixed_float16":
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def class_weights(counts: np.ndarray) -> List[float]:
    """Inverse-frequency weights from rows per class, normalized so the average example
    weighs 1."""
    counts = np.asarray(counts, np.float64)
    weights = counts.sum() / (len(counts) * np.maximum(counts, 1.0))
    return [float(w) for w in weights]


@dataclasses.dataclass
class TrainResult:
    model: tf.keras.Model
    history: Dict[str, list]
    epochs_trained: int
    best_epoch: Optional[int]  # None for towers: each has its own (`tower_history`)
    eval_metrics: Dict[str, float]
    budget: Budget


def tower_history(history: Dict[str, list], tower: str) -> Dict[str, list]:
    """One tower's part of the history of a `Towers` training, keyed as for one model
    ("loss", "val_auc", ...), with what the towers share (the learning rate)."""
    names = [*loop.METRICS, *(f"val_{m}" for m in loop.METRICS)]
    metrics = {loop.output_key(m, tower): m for m in names}
    return {metrics.get(key, key): values for key, values in history.items()
            if key in metrics or not key.endswith(loop.METRICS)}


def set_seeds(seed: int) -> None:
    """What `tf.keras.utils.set_random_seed` seeds (Python, NumPy, TensorFlow, and tf_keras'
    per-thread generator of seeds for layers made without one), but TensorFlow's only where
    it is not `seed` already: setting it clears TensorFlow's kernel caches, which restarts the
    random streams (dropout masks) of a model another thread is training (the Tuner's
    concurrent trials). Every training seeds the same value, so only the first sets it."""
    if context.global_seed() != seed:
        tf.keras.utils.set_random_seed(seed)
        return
    random.seed(seed)
    np.random.seed(seed)
    keras_backend._SEED_GENERATOR.generator = random.Random(seed)


def train_model(build_model: Callable[[], tf.keras.Model], prepared: PreparedData,
                config: ModelConfig, run: Training = Training(), *,
                loss_fn: Union[loop.LossFn, Dict[str, loop.LossFn]] = loop.cross_entropy,
                run_dir: Optional[str] = None,
                checkpoint_dir: Optional[str] = None, initial_epoch: int = 0,
                epochs: Optional[int] = None,
                monitor: Sequence[str] = ("val_loss", "val_auc"),
                early_stopping: bool = True,
                balance_classes: bool = False,
                extra_callbacks: Sequence[tf.keras.callbacks.Callback] = (),
                restore_model: Optional[Callable[[tf.keras.Model], None]] = None,
                steps_per_execution: int = 16, verbose: bool = True,
                epoch_rows: Optional[int] = MAX_ROWS_PER_EPOCH,
                min_steps_per_epoch: int = MIN_STEPS_PER_EPOCH) -> TrainResult:
    """Builds the model and optimizer in the strategy's scope and trains it with the loop.

    `run` is the run's training settings (its seed and `tf.distribute` strategy; every
    component passes `RunSettings.training`); `config` the model's hyperparameters.

    The targets of `prepared`'s splits (the labels, and e.g. a teacher's logits for
    distillation: `modules.reading.splits.Split.with_targets`) reach `loss_fn`. The batch size and
    the epoch follow `budget`. A dict of losses trains the towers of the
    `modules.models.model.Towers` that `build_model` makes, each on its own loss, stopped early on
    its own metrics (`tower_history` gives its part of the history).
    With `early_stopping`, training stops when none of the metrics in `monitor` has improved
    for `config.early_stopping_patience` epochs, and keeps the weights of the epoch best on
    the first (by default the validation loss, a proper score: AUC alone ranks well while
    probabilities drift). Batch normalization statistics are recalibrated on the training
    split at the end (`modules.models.batchnorm`; on an epoch's worth of rows where epochs are
    capped). `run_dir` receives metrics.jsonl and TensorBoard logs (from the chief alone under
    multi_worker); `checkpoint_dir` makes the training resumable. `restore_model` may load
    weights into the freshly built model before training (a Hyperband trial continuing another).
    `steps_per_execution` train steps run per tf.function call; pruning needs 1, so that its
    step counter advances every batch. `epoch_rows` caps an epoch (see `budget`) and makes
    validation use at most SEARCH_VALIDATION_ROWS validation rows; None makes every epoch a pass
    over every row, validated on every validation row (the Trainer's final training).
    `min_steps_per_epoch`: an epoch repeats a small split until it makes this many steps
    (tuner trials ask for more, so that every trial trains far enough to be ranked).
    """
    seed = run.seed
    set_seeds(seed)
    distribution = make_strategy(run.strategy)
    plan = budget(prepared.train.rows, config.batch_size, distribution.num_replicas_in_sync,
                  epoch_rows, min_steps_per_epoch)
    with distribution.scope():
        model = build_model()
        batchnorm.set_momentum(model, batchnorm.momentum_for(plan.steps_per_epoch))
        optimizer = make_optimizer(config, plan.steps_per_epoch)
        model.optimizer = optimizer
        if restore_model is not None:
            restore_model(model)
    train = prepared.train.dataset(plan.global_batch_size, shuffle=True, seed=seed,
                                   repeat=0 if plan.continuous else plan.passes_per_epoch)
    # Validation batches are large: their size changes no metric (means over rows), and
    # every epoch of every search validates.
    evaluation = prepared.validation(SEARCH_VALIDATION_ROWS if epoch_rows else None).dataset(
        max(plan.global_batch_size, EVAL_BATCH_SIZE))
    weights = class_weights(prepared.counts(data.TRAIN)) if balance_classes else None
    training_loop = loop.TrainingLoop(model, optimizer, loss_fn, prepared.num_classes,
                                      strategy=distribution, clip_norm=config.clip_norm,
                                      class_weights=weights,
                                      steps_per_execution=steps_per_execution)
    callbacks: List[tf.keras.callbacks.Callback] = [cb.LearningRateLogger()]
    if run_dir and distribution.extended.should_checkpoint:
        callbacks.append(cb.MetricsLogger(os.path.join(run_dir, "metrics.jsonl"),
                                          os.path.join(run_dir, "tensorboard")))
    stopper = None
    if early_stopping:
        stopper = (cb.EarlyStoppingPerTower(model.towers, monitor,
                                            config.early_stopping_patience)
                   if isinstance(loss_fn, dict) else
                   cb.EarlyStopping(monitor=monitor, patience=config.early_stopping_patience))
        callbacks.append(stopper)
    if checkpoint_dir:
        callbacks.append(cb.TrainingCheckpoint(checkpoint_dir))
    callbacks.extend(extra_callbacks)
    history = training_loop.fit(train, evaluation, epochs=epochs or config.epochs,
                                initial_epoch=initial_epoch, callbacks=callbacks,
                                verbose=verbose,
                                steps_per_epoch=plan.steps_per_epoch if plan.continuous
                                else None)
    # Batch normalization statistics from the training rows: all of them, or where epochs
    # are capped, one epoch's worth of the shuffled stream (a uniform sample).
    if plan.continuous:
        rows = prepared.train.dataset(plan.global_batch_size, shuffle=True, seed=seed, repeat=0,
                                      features_only=True).take(plan.steps_per_epoch)
    else:
        rows = prepared.train.features(plan.global_batch_size)
    with distribution.scope():
        batchnorm.recalibrate(model, rows)
    return TrainResult(model, history, training_loop.epochs_trained,
                       getattr(stopper, "best_epoch", None),
                       training_loop.evaluate(evaluation), plan)

