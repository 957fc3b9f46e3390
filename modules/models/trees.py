"""Gradient-boosted trees (YDF, served by TensorFlow Decision Forests) as a model core: a
baseline, and a possible teacher for distillation.

A `TreesCore` is a core like every other (`modules.models.model.build_core`): a Keras model from the
preprocessed float32 vector [rows, dim] (`FeaturePreprocessor.expand`) to class logits
[rows, classes] float32, here the log of the trees' probabilities (clipped at 1e-7), so that
softmax(logits) gives those probabilities back.

How the trees see the features: the expanded vector spreads each feature over many slots (a
numeric one over a z-score, a missing indicator and 16 piecewise-linear bins; a categorical
one over a one-hot block). Trees split on one value at a time, so the core first decodes the
vector back to one value per feature (`decoding`, `decode`: a fixed computation read from
`FeaturePreprocessor.layout()`, nothing trained):
- numeric feature: its z-score slot, NaN where its missing indicator is 1 (YDF's default
  for a missing value: the training mean). Trees split on order alone, so the z-score is
  as good as the raw value, except that values past `clip` standard deviations share one.
- categorical feature of integer codes (hour, month, community area...): the index of its
  hot slot, a number (the vocabulary follows the codes' order; 0: missing or unknown).
- text categorical feature: the index of its hot slot (0: out of vocabulary), declared
  CATEGORICAL to YDF, which splits it natively (on subsets of categories).
5-fold cross-validation on the taxi data (15,002 rows; three folds train, one stops early,
one tests): this gives accuracy 0.903, ROC AUC 0.955, log loss 0.198 in 3-4 s a model; the
expanded vector as it is 0.903 / 0.954 / 0.199 in 25 s; every categorical feature native
0.900 / 0.952 / 0.202 (its many-valued codes overfit). `train_trees(decode_features=False)`
feeds the expanded vector, for comparison.

Training (`train_trees`): YDF's GradientBoostedTreesLearner (the learner of TF-DF's
GradientBoostedTreesModel) with the hyperparameters its authors' benchmark ranks first
(`TEMPLATE`; the 5-fold figures above are with its plain defaults), on a uniform random
sample of at most `max_rows` training rows (`Split.sample`: a streamed split is sampled as
it is read, never held beyond the sample), early-stopped on the learner's own 10% of those
rows: the held-out (validation) split stays untouched by the trees' training, so comparing
their validation log loss with the other models' (the teacher's choice,
`modules.learning.baselines`) is not biased by an early stop chosen on those very rows (on
1,000 rows of a 16%-positive set, stopping on the 214 validation rows made the trees look
best there and worst on test).
`validation_rows` > 0 early-stops on a sample of the held-out split instead. Also changed:
at least 2 threads (the trees then do not depend on the machine) and no console output.
The trained trees run in TensorFlow through TF-DF's inference op (`ydf`'s
`to_tensorflow_function`).

Saving: the trees cannot go into `core.keras`. `save_core` writes a SavedModel (the
core's inference function, whose assets hold the trees) and `load_core` reads it back as a
TreesCore: callable as `core(x, training=False)`, usable in `tf.function`s and in a
`tf.Module` saved with `tf.saved_model.save` (as `modules.models.export` does), with
`count_params()` giving the number of tree nodes. Loading needs TF-DF's custom ops:
`import tensorflow_decision_forests` (this module does it) before `tf.saved_model.load`.
"""
import contextlib
import io
import json
import logging
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from modules import autograph  # noqa: F401  (AutoGraph leaves tf_keras alone)
from modules.reading import splits

META_FILE = "trees_core.json"  # written by save_core next to the SavedModel files
MIN_PROBABILITY = 1e-7
MAX_ROWS = 100_000
VALIDATION_ROWS = 0  # 0: early stopping on the learner's own 10% of the training rows
# Below this many training rows there is no early stopping (a 10% carve-out is too few rows
# to stop on), and the trees are SMALL_DATA_TREES iterations: scikit-learn's
# HistGradientBoosting defaults (early stopping from 10,000 rows, 100 iterations). On the
# 1,061 training rows of a 16%-positive set: test ROC AUC 0.775 stopping on 10%, 0.805 so.
EARLY_STOPPING_ROWS = 10_000
SMALL_DATA_TREES = 100
# YDF's "benchmark_rank1@v1" hyperparameters (`GradientBoostedTreesLearner.
# hyperparameter_templates()`: the top-ranking configuration on its authors' benchmark of
# public data sets, best-first growth with sparse oblique splits), in place of YDF's plain
# defaults. On the generality benchmark's splits (train -> validation log loss, test ROC AUC,
# seed 42): mlc_churn 0.177 -> 0.129, 0.878 -> 0.910; wine 0.239 -> 0.136; breast cancer
# 0.475 -> 0.349; taxi 0.2055 -> 0.2051, 0.9543 -> 0.9557 (seeds 1 and 2: 0.9549 -> 0.9553,
# 0.9539 -> 0.9547); worse on Default (0.094 -> 0.108) and Titanic (0.87 -> 0.95), where the
# linear model is the teacher either way. Taxi's trees take 4-5 s instead of 3.
TEMPLATE = "benchmark_rank1v1"
BATCH_ROWS = 8192  # rows per batch decoded for the trees
LABEL = "__label__"  # the class id column of the rows the learner reads


def _tfdf():
    """TF-DF, imported on first use: it loads custom ops, which every process that trains or
    loads trees needs, and no other. Its C++ logs are then limited to warnings and errors."""
    import tensorflow_decision_forests as tfdf

    global _LOGGING_SET
    if not _LOGGING_SET:
        _LOGGING_SET = True
        _set_cc_logging(tfdf, 1)
        logging.getLogger("tensorflow").addFilter(_not_tfdf_retracing)
    return tfdf


_LOGGING_SET = False


def _not_tfdf_retracing(record: logging.LogRecord) -> bool:
    """False for TensorFlow's "N out of the last N calls to <function CoreModel...> triggered
    tf.function retracing" warnings about TF-DF's own functions: every model trained or
    loaded traces them anew, by design, and a process training several would print them."""
    message = record.getMessage()
    return not ("triggered tf.function retracing" in message
                and ("CoreModel." in message or "yggdrasil" in message))
_LEVEL_SYMBOL = "_ZN26yggdrasil_decision_forests7logging13logging_levelE"


def _set_cc_logging(tfdf, level: int) -> None:
    """Yggdrasil's (TF-DF's C++ library) logging level: 0 fatal errors only, 1 warnings too,
    2 everything (its default). TF-DF's ops come in two libraries, each with its own level:
    training's is set through TF-DF's API; inference's (which logs "Loading model from
    path ..." and three more lines whenever a graph first runs a model: at the end of
    training, when tracing a function that calls the core, when loading a SavedModel) has
    no API, so it is set through its exported variable (left alone where that fails)."""
    tfdf.keras.core.cc_logging.set_yggdrasil_logging_level(level)
    try:
        import ctypes

        path = os.path.join(os.path.dirname(tfdf.__file__), "tensorflow", "ops", "inference",
                            "inference.so")
        library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)  # the loaded one
        ctypes.c_int.in_dll(library, _LEVEL_SYMBOL).value = level
    except (OSError, ValueError, AttributeError):
        pass


@contextlib.contextmanager
def _quiet(verbose: bool = False):
    """Keeps TF-DF off the console for the block unless `verbose` (then it logs everything):
    its Python logs (the "tensorflow" and "absl" loggers) at WARNING or above; what it
    prints with `print` (its `tf_logging.info` always prints, e.g. "Num validation
    examples") kept, and shown only should the block fail; its C++ library at fatal errors
    only. The C++ output is filtered at its source, not captured: a fatal error (e.g. a
    hyperparameter value the learner does not support) still prints its reason as it ends
    the process. After the block, the C++ library logs warnings and errors."""
    tfdf = _tfdf()
    if verbose:
        _set_cc_logging(tfdf, 2)
        try:
            yield
        finally:
            _set_cc_logging(tfdf, 1)
        return
    loggers = [logging.getLogger(name) for name in ("tensorflow", "absl")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    _set_cc_logging(tfdf, 0)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    except BaseException:
        sys.stderr.write(printed.getvalue())
        raise
    finally:
        _set_cc_logging(tfdf, 1)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


# -- decoding the expanded vector -------------------------------------------------------------
def decoding(preprocessor) -> List[dict]:
    """What the trees read from the expanded vectors of a `FeaturePreprocessor` (from its
    `layout()`), one column per feature, in layout order:
    - {"feature", "kind": "numeric", "value": z-score slot, "missing": indicator slot};
    - {"feature", "kind": "ordinal", "offset", "width"}: a categorical feature of integer
      codes (source "numeric": hour, month, area...), its one-hot block read back as the
      vocabulary index, which follows the codes' order (0: out of vocabulary or missing);
    - {"feature", "kind": "categorical", "offset", "width"}: a text feature, the same index
      as a native categorical value."""
    layout = preprocessor.layout()
    sources = {spec["name"]: spec["source"] for spec in preprocessor.categorical}
    missing = {slot["feature"]: slot["offset"] for slot in layout
               if slot["transform"] == "missing_indicator"}
    columns = []
    for slot in layout:
        if slot["transform"] == "zscore":
            columns.append({"feature": slot["feature"], "kind": "numeric",
                            "value": slot["offset"], "missing": missing[slot["feature"]]})
        elif slot["transform"] == "one_hot":
            kind = "ordinal" if sources.get(slot["feature"]) == "numeric" else "categorical"
            columns.append({"feature": slot["feature"], "kind": kind,
                            "offset": slot["offset"], "width": slot["width"]})
    return columns


def input_name(index: int, feature: str) -> str:
    """The TF-DF input name of decoded column `index` (of `feature`): unique, and usable as
    an op name."""
    safe = "".join(c if c.isalnum() or c in "_." else "_" for c in feature)
    return f"f{index:03d}_{safe}"[:64]


def decode(x: tf.Tensor, columns: Sequence[dict]) -> Dict[str, tf.Tensor]:
    """Expanded vectors [n, dim] -> {input name: [n]} (see `decoding`): numeric float32 (NaN
    when missing), ordinal float32 and categorical int64 (the index of the hot slot)."""
    numeric = [c for c in columns if c["kind"] == "numeric"]
    if numeric:
        values = tf.gather(x, [c["value"] for c in numeric], axis=1)
        missing = tf.gather(x, [c["missing"] for c in numeric], axis=1) > 0.5
        values = tf.where(missing, tf.constant(np.nan, x.dtype), values)
    decoded = {}
    for i, column in enumerate(columns):
        if column["kind"] == "numeric":
            value = values[:, numeric.index(column)]
        else:
            block = x[:, column["offset"]:column["offset"] + column["width"]]
            value = tf.argmax(block, axis=1, output_type=tf.int64)
            if column["kind"] == "ordinal":
                value = tf.cast(value, tf.float32)
        decoded[input_name(i, column["feature"])] = value
    return decoded


def inputs_of(x: tf.Tensor, columns: Optional[Sequence[dict]]) -> Dict[str, tf.Tensor]:
    """What the trees read of expanded vectors [n, dim]: `decode`d, or with `columns` None
    (`train_trees(decode_features=False)`) each slot as it is."""
    if columns is not None:
        return decode(x, columns)
    return {input_name(i, "x"): x[:, i] for i in range(x.shape[1])}


def to_logits(probabilities: tf.Tensor) -> tf.Tensor:
    """Class probabilities [n, classes] -> logits float32: log(max(p, 1e-7))."""
    return tf.math.log(tf.maximum(tf.cast(probabilities, tf.float32), MIN_PROBABILITY))


# -- the core ---------------------------------------------------------------------------------
class _TrainedForest(tf.keras.layers.Layer):
    """Expanded vector -> logits, through a trained YDF model's TensorFlow function (the
    vector decoded first, or its slots as they are). `classes`: the class ids in the order
    of the function's probabilities (YDF's label dictionary); a class that the training
    sample lacked gets probability 0. `files`: the temporary folder the function reads the
    model from, kept as long as the layer."""

    def __init__(self, function, columns: Optional[List[dict]], classes: Sequence[int],
                 num_classes: int, files, **kwargs):
        super().__init__(trainable=False, dtype="float32", **kwargs)  # whatever the policy
        self.forest = function
        self._files = files
        # plain text: Keras would wrap lists
        self._columns = json.dumps(columns)
        self._index = json.dumps([list(classes).index(k) if k in classes else len(classes)
                                  for k in range(num_classes)])

    @property
    def trackable(self):
        """What saving needs of it (`save_core`): the trees' resource and files."""
        return self.forest

    @tf.autograph.experimental.do_not_convert
    def call(self, x, training=None):
        probabilities = self.forest(inputs_of(x, json.loads(self._columns)))
        probabilities = tf.concat([probabilities, tf.zeros_like(probabilities[:, :1])], axis=1)
        return to_logits(tf.gather(probabilities, json.loads(self._index), axis=1))


class _RestoredForest(tf.keras.layers.Layer):
    """Expanded vector -> logits, through the function `save_core` saved."""

    def __init__(self, restored, num_classes: int, **kwargs):
        super().__init__(trainable=False, dtype="float32", **kwargs)  # whatever the policy
        self.restored = restored
        self.num_classes = int(num_classes)

    @property
    def trackable(self):
        """What saving needs of it (`save_core`): the restored trees' resource and files."""
        return self.restored

    @tf.autograph.experimental.do_not_convert
    def call(self, x, training=None):
        return self.restored.logits(tf.cast(x, tf.float32))


class TreesCore(tf.keras.Model):
    """Preprocessed vector float32 [n, dim] -> logits float32 [n, num_classes] from gradient
    boosted trees; built by `train_trees` or `load_core`, saved with `save_core` (not
    `Model.save`: TF-DF models cannot be written to a .keras file).

    `count_params()` is the number of tree nodes (split nodes and leaves of every tree): the
    size measure comparable to a network's weights. `info` holds what training recorded
    (rows seen, trees, validation loss, seconds)."""

    def __init__(self, forest: tf.keras.layers.Layer, dim: int, num_classes: int,
                 nodes: int, info: Optional[dict] = None, name: str = "trees"):
        inputs = tf.keras.Input(shape=(dim,), name="features", dtype=tf.float32)
        super().__init__(inputs=inputs, outputs=forest(inputs), name=name)
        self.forest_layer = forest
        self.num_classes = int(num_classes)
        self.nodes = int(nodes)
        self.info = dict(info or {})

    def count_params(self) -> int:
        return self.nodes

    def get_config(self):
        raise NotImplementedError("a TreesCore holds a TF-DF model, which cannot be written "
                                  "as Keras config: save it with modules.models.trees.save_core")

    def save(self, *args, **kwargs):
        raise NotImplementedError("a TreesCore cannot be saved with Model.save (core.keras): "
                                  "use modules.models.trees.save_core / load_core")


def _num_nodes(model) -> int:
    """Split nodes and leaves of every tree of a trained YDF model: a tree of binary splits
    has one more leaf than splits, and the NUM_NODES variable importance counts, per
    feature, the splits on it."""
    importances = model.variable_importances().get("NUM_NODES", [])
    splits_count = int(sum(count for count, _ in importances))
    return 2 * splits_count + model.num_trees()


def _columns(split: splits.Split, columns: Optional[List[dict]]) -> Dict[str, np.ndarray]:
    """A split's rows as the trees read them, {input name: [rows]} with LABEL: each row once,
    in row order (a sample of at most `max_rows` rows: bounded)."""
    def convert(x, targets):
        return {**inputs_of(x, columns), LABEL: targets["label"]}

    batches = [batch for batch in split.dataset(BATCH_ROWS).map(
        tf.autograph.experimental.do_not_convert(convert)).as_numpy_iterator()]
    return {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}


@contextlib.contextmanager
def _ydf_quiet(verbose: bool):
    """YDF's C++ library writes its logs (data spec, every iteration) to the process's own
    stderr, below Python: they are captured for the block (wurlitzer) and shown only should
    it fail, unless `verbose`."""
    if verbose:
        yield
        return
    import wurlitzer

    with wurlitzer.pipes() as (out, err):
        try:
            yield
        except BaseException:
            failed = True
            raise
        else:
            failed = False
    if failed:  # pragma: no cover - printed after the pipes close
        sys.stderr.write(out.read() + err.read())


def train_trees(prepared, *, max_rows: int = MAX_ROWS, seed: int = 0, verbose: bool = False,
                validation_rows: int = VALIDATION_ROWS, decode_features: bool = True,
                num_threads: Optional[int] = None, **hyperparameters) -> TreesCore:
    """Gradient-boosted trees on `prepared` (a `modules.learning.training.PreparedData` with its
    preprocessor), trained on a uniform random sample of at most `max_rows` training rows
    (drawn with `seed`), stopped early on the learner's own 10% of them, or with
    `validation_rows` on a sample of that many held-out rows; below EARLY_STOPPING_ROWS
    training rows, 100 trees without early stopping. YDF's TEMPLATE otherwise, over its
    defaults (at most 300 trees, shrinkage 0.1); `hyperparameters` go to
    ydf.GradientBoostedTreesLearner over both.

    Trained with YDF (`ydf`, the library TF-DF is built on) from numpy columns, then turned
    into a TensorFlow function that runs TF-DF's inference op (`to_tensorflow_function`):
    the same learner as TF-DF's Keras model, without its Keras training steps, whose
    tracing took 20 s of the 21 s it spent on 10,000 rows (YDF trains them in 1.4 s).

    `decode_features`: the trees read one value per feature (see the module's docstring);
    False feeds them the expanded vector's slots as they are (for comparison). `num_threads`:
    every CPU (at most 32) but at least 2: the trees are the same for any number of threads
    from 2 up, and differ with one, so a seed gives the same trees on every machine. YDF's
    console output is off unless `verbose`: file descriptors 1 and 2 are held while it trains,
    for the whole process, so what another thread writes to them meanwhile (the Baselines
    step trains the linear model beside the trees: TensorFlow's C++ logs, print()) is held
    too and kept only should the trees fail; logging records and the run's terminal
    (`local_runner.terminal_and_log`) do not go through them.
    """
    import tempfile
    import time

    import ydf

    _tfdf()  # TF-DF's inference op runs the trees in TensorFlow
    preprocessor = prepared.preprocessor
    if decode_features and preprocessor is None:
        raise ValueError("decoding the features needs the preprocessor's layout; "
                         "pass decode_features=False for data without one")
    columns = decoding(preprocessor) if decode_features else None
    categorical = [ydf.Feature(input_name(i, c["feature"]), ydf.Semantic.CATEGORICAL)
                   for i, c in enumerate(columns or []) if c["kind"] == "categorical"]
    if num_threads is None:
        num_threads = max(2, min(os.cpu_count() or 1, 32))
    started = time.perf_counter()
    train = _columns(prepared.train.sample(max_rows, seed=seed), columns)
    train_rows = len(train[LABEL])
    if not validation_rows and train_rows < EARLY_STOPPING_ROWS:
        hyperparameters = {"early_stopping": "NONE", "num_trees": SMALL_DATA_TREES,
                           "validation_ratio": 0.0, **hyperparameters}
    validation = (_columns(prepared.held_out.sample(validation_rows, seed=seed), columns)
                  if validation_rows else None)
    template = ydf.GradientBoostedTreesLearner.hyperparameter_templates()[TEMPLATE]
    learner = ydf.GradientBoostedTreesLearner(
        label=LABEL, task=ydf.Task.CLASSIFICATION, random_seed=seed, num_threads=num_threads,
        features=categorical or None, include_all_columns=True,
        **{**template, **hyperparameters})
    with _ydf_quiet(verbose):
        model = learner.train(train, valid=validation, verbose=2 if verbose else 0)
    seconds = time.perf_counter() - started
    loss = model.validation_loss()
    info = {"train_rows": train_rows,
            "validation_rows": len(validation[LABEL]) if validation is not None else 0,
            "num_trees": int(model.num_trees()),
            "iterations": int(model.num_trees() // model.num_trees_per_iteration()),
            # the GBT's own scale: for two classes, twice the mean log loss
            "validation_loss": float(loss) if loss is not None and np.isfinite(loss) else None,
            "train_seconds": seconds, "decoded_features": columns is not None,
            "seed": seed}
    # The function reads the model's files from a temporary folder until it is saved (its
    # assets then hold a copy): the folder lives as long as the layer.
    files = tempfile.TemporaryDirectory(prefix="trees-")
    with _quiet(verbose):
        function = model.to_tensorflow_function(temp_dir=files.name,
                                                squeeze_binary_classification=False)
    classes = [int(label) for label in model.label_classes()]
    forest = _TrainedForest(function, columns, classes, prepared.num_classes, files,
                            name="forest")
    return TreesCore(forest, prepared.dim, prepared.num_classes, _num_nodes(model), info)


# -- saving and loading ------------------------------------------------------------------------
class _Saved(tf.Module):
    def __init__(self, core: TreesCore):
        super().__init__()
        # What the function reads (the trees' model resource and its files), not the Keras
        # model: tf.saved_model.save traces a Keras model's call once more, with AutoGraph,
        # for its default signature (10 s of a 25-s Baselines step on 569 rows).
        self.forest = core.forest_layer.trackable
        self.logits = tf.function(
            lambda x: core(x, training=False), autograph=False,
            input_signature=[tf.TensorSpec([None, core.input_shape[-1]], tf.float32,
                                           name="features")])


def save_core(core: TreesCore, directory: str) -> str:
    """Writes `core` as a SavedModel in `directory` (its `logits` function: features
    [None, dim] float32 -> logits) with `trees_core.json` (dim, classes, nodes, info) beside.
    Returns `directory`. `load_core` reads it back."""
    from modules import fileio

    tf.saved_model.save(_Saved(core), directory)
    fileio.write_json(os.path.join(directory, META_FILE), {
        "dim": int(core.input_shape[-1]), "num_classes": core.num_classes,
        "nodes": core.count_params(), "info": core.info})
    return directory


def load_core(directory: str) -> TreesCore:
    """The TreesCore `save_core` wrote in `directory` (TF-DF's ops are loaded first)."""
    from modules import fileio

    _tfdf()  # registers the custom ops the SavedModel's graph uses
    meta = fileio.read_json(os.path.join(directory, META_FILE))
    with _quiet():
        restored = tf.saved_model.load(directory)
    return TreesCore(_RestoredForest(restored, meta["num_classes"], name="forest"),
                     meta["dim"], meta["num_classes"], meta["nodes"], meta.get("info"))


def is_trees_core(directory: str) -> bool:
    """Whether `directory` holds a core written by `save_core`."""
    return tf.io.gfile.exists(os.path.join(directory, META_FILE))
