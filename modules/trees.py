"""Gradient-boosted trees (TensorFlow Decision Forests) as a model core: a baseline, and a
possible teacher for distillation.

A `TreesCore` is a core like every other (`modules.model.build_core`): a Keras model from the
preprocessed float32 vector [rows, dim] (`FeaturePreprocessor.expand`) to class logits
[rows, classes] float32, here the log of the trees' probabilities (clipped at 1e-7), so that
softmax(logits) gives those probabilities back.

How the trees see the features: the expanded vector spreads each feature over many slots (a
numeric one over a z-score, a missing indicator and 16 piecewise-linear bins; a categorical
one over a one-hot block). Trees split best on one value per feature, with categorical
features split natively (subsets of categories) rather than one slot at a time. So the core
first decodes the vector with a fixed computation read from `FeaturePreprocessor.layout()`:
- numeric feature: its z-score slot, NaN where its missing indicator is 1 (the trees learn
  where missing values go). Trees split on order alone, so the z-score is as good as the raw
  value, except that values past `clip` standard deviations share one value.
- categorical feature: the index of the hot slot of its one-hot block (0: out of vocabulary),
  an integer that TF-DF takes as a CATEGORICAL feature.
On the taxi data this beats feeding the trees the expanded vector, in accuracy and in
training time (see `benchmarks`-style figures in the report of the change that added this).

Training (`train_trees`): TF-DF's GradientBoostedTreesModel with its defaults, on a uniform
random sample of at most `max_rows` training rows (`Split.sample`: one streamed pass when
the split is large, never more held), with a sample of the held-out split as its validation
data for early stopping (instead of carving 10% out of the training rows).

Saving: a TF-DF model cannot go into `core.keras`. `save_core` writes a SavedModel (the
core's inference function, whose assets hold the trees) and `load_core` reads it back as a
TreesCore: callable as `core(x, training=False)`, usable in `tf.function`s and in a
`tf.Module` saved with `tf.saved_model.save` (as `modules.export` does), with
`count_params()` giving the number of tree nodes. Loading needs TF-DF's custom ops:
`import tensorflow_decision_forests` (this module does it) before `tf.saved_model.load`.
"""
import contextlib
import json
import logging
import os
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from modules import splits

CLASSIFIER_FILE = "trees_core.json"  # written by save_core next to the SavedModel files
MIN_PROBABILITY = 1e-7
MAX_ROWS = 100_000
VALIDATION_ROWS = 16_384  # validation rows sampled for early stopping (as the searches do)
BATCH_ROWS = 8192  # rows per batch fed to TF-DF (it reads the batches into its own cache)


def _tfdf():
    """TF-DF, imported on first use: it loads custom ops, which every process that trains or
    loads trees needs, and no other."""
    import tensorflow_decision_forests as tfdf

    return tfdf


@contextlib.contextmanager
def _quiet():
    """TF-DF's Python logs (tf_logging / absl) at WARNING or above, for the block."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


# -- decoding the expanded vector -------------------------------------------------------------
def decoding(layout: Sequence[dict]) -> List[dict]:
    """What the trees read from an expanded vector of this `FeaturePreprocessor.layout()`:
    [{"feature", "kind": "numeric", "value": z-score column, "missing": indicator column}]
    then [{"feature", "kind": "categorical", "offset", "width"}] (one-hot block)."""
    missing = {slot["feature"]: slot["offset"] for slot in layout
               if slot["transform"] == "missing_indicator"}
    columns = []
    for slot in layout:
        if slot["transform"] == "zscore":
            columns.append({"feature": slot["feature"], "kind": "numeric",
                            "value": slot["offset"], "missing": missing[slot["feature"]]})
        elif slot["transform"] == "one_hot":
            columns.append({"feature": slot["feature"], "kind": "categorical",
                            "offset": slot["offset"], "width": slot["width"]})
    return columns


def _input_name(index: int, feature: str) -> str:
    """The TF-DF input name of a decoded feature: unique, and a valid op name."""
    safe = "".join(c if c.isalnum() or c in "_." else "_" for c in feature)
    return f"f{index:03d}_{safe}"[:64]


def decode(x: tf.Tensor, columns: Sequence[dict]) -> Dict[str, tf.Tensor]:
    """Expanded vectors [n, dim] -> {input name: [n]}: numeric float32 (NaN when missing),
    categorical int64 (the hot slot of the block)."""
    numeric = [c for c in columns if c["kind"] == "numeric"]
    decoded = {}
    if numeric:
        values = tf.gather(x, [c["value"] for c in numeric], axis=1)
        missing = tf.gather(x, [c["missing"] for c in numeric], axis=1) > 0.5
        values = tf.where(missing, tf.constant(np.nan, x.dtype), values)
    for i, column in enumerate(columns):
        name = _input_name(i, column["feature"])
        if column["kind"] == "numeric":
            decoded[name] = values[:, numeric.index(column)]
        else:
            block = x[:, column["offset"]:column["offset"] + column["width"]]
            decoded[name] = tf.argmax(block, axis=1, output_type=tf.int64)
    return decoded


def to_logits(probabilities: tf.Tensor, num_classes: int) -> tf.Tensor:
    """TF-DF's probabilities ([n, 1]: P(class 1) for two classes; [n, classes] otherwise) ->
    logits [n, num_classes] float32: log(max(p, 1e-7))."""
    p = tf.cast(probabilities, tf.float32)
    if num_classes == 2 and p.shape[-1] == 1:
        p = tf.concat([1.0 - p, p], axis=1)
    return tf.math.log(tf.maximum(p, MIN_PROBABILITY))


# -- the core ---------------------------------------------------------------------------------
class _TrainedForest(tf.keras.layers.Layer):
    """Expanded vector -> logits, through a trained TF-DF model (decoded first, or not)."""

    def __init__(self, model, columns: Optional[List[dict]], num_classes: int, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.forest = model
        self._columns = json.dumps(columns)  # plain text: Keras would wrap lists of dicts
        self.num_classes = int(num_classes)

    @tf.autograph.experimental.do_not_convert
    def call(self, x, training=None):
        columns = json.loads(self._columns)
        features = decode(x, columns) if columns is not None else x
        return to_logits(self.forest(features, training=False), self.num_classes)


class _RestoredForest(tf.keras.layers.Layer):
    """Expanded vector -> logits, through the function `save_core` saved."""

    def __init__(self, restored, num_classes: int, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.restored = restored
        self.num_classes = int(num_classes)

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
                                  "as Keras config: save it with modules.trees.save_core")

    def save(self, *args, **kwargs):
        raise NotImplementedError("a TreesCore cannot be saved with Model.save (core.keras): "
                                  "use modules.trees.save_core / load_core")


def _num_nodes(model) -> int:
    """Split nodes and leaves of every tree of a trained TF-DF model: a tree of binary splits
    has one more leaf than splits, and the NUM_NODES variable importance counts, per
    feature, the splits on it."""
    inspector = model.make_inspector()
    importances = inspector.variable_importances().get("NUM_NODES", [])
    splits_count = int(sum(count for _, count in importances))
    return 2 * splits_count + inspector.num_trees()


def _batches(split: splits.Split, columns: Optional[List[dict]]) -> tf.data.Dataset:
    """(TF-DF features, label) batches of a split, each row once, in row order."""
    def convert(x, targets):
        return (decode(x, columns) if columns is not None else x), targets["label"]

    return split.dataset(BATCH_ROWS).map(tf.autograph.experimental.do_not_convert(convert))


def train_trees(prepared, *, max_rows: int = MAX_ROWS, seed: int = 0, verbose: bool = False,
                validation_rows: int = VALIDATION_ROWS, decode_features: bool = True,
                num_threads: Optional[int] = None, **hyperparameters) -> TreesCore:
    """Gradient-boosted trees on `prepared` (a `modules.training.PreparedData` with its
    preprocessor), trained on a uniform random sample of at most `max_rows` training rows and
    stopped early on a sample of at most `validation_rows` held-out rows (both drawn with
    `seed`). TF-DF's defaults otherwise (300 trees of depth 6, shrinkage 0.1, early stopping on
    the validation loss); `hyperparameters` go to GradientBoostedTreesModel as they are.

    `decode_features`: the trees read one value per feature (see the module's docstring);
    False feeds them the expanded vector as it is (for comparison). `num_threads`: TF-DF's
    default (every CPU, at most 32) unless given; the trees do not depend on it.
    TF-DF's console output is off unless `verbose`.
    """
    import time

    tfdf = _tfdf()
    preprocessor = prepared.preprocessor
    if decode_features and preprocessor is None:
        raise ValueError("decoding the features needs the preprocessor's layout; "
                         "pass decode_features=False for data without one")
    columns = decoding(preprocessor.layout()) if decode_features else None
    features = None
    if columns is not None:
        features = [tfdf.keras.FeatureUsage(_input_name(i, c["feature"]),
                                            semantic=tfdf.keras.FeatureSemantic.CATEGORICAL)
                    for i, c in enumerate(columns) if c["kind"] == "categorical"]
    train = prepared.train.sample(max_rows, seed=seed)
    validation = prepared.held_out.sample(validation_rows, seed=seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trees-") as temp, \
            (contextlib.nullcontext() if verbose else _quiet()):
        model = tfdf.keras.GradientBoostedTreesModel(
            task=tfdf.keras.Task.CLASSIFICATION, features=features or None,
            exclude_non_specified_features=False, random_seed=seed,
            verbose=2 if verbose else 0, num_threads=num_threads, temp_directory=temp,
            try_resume_training=False,
            # Keras evaluation after training: its loss is the GBT's own validation loss.
            advanced_arguments=tfdf.keras.AdvancedArguments(
                populate_history_with_yggdrasil_logs=True),
            **hyperparameters)
        model.fit(_batches(train, columns), validation_data=_batches(validation, columns),
                  verbose=2 if verbose else 0)
        seconds = time.perf_counter() - started
        inspector = model.make_inspector()
        logs = inspector.training_logs() or []
        info = {"train_rows": int(model.num_training_examples),
                "validation_rows": int(model.num_validation_examples or 0),
                "num_trees": int(inspector.num_trees()),
                "validation_loss": float(logs[-1].evaluation.loss) if logs else None,
                "train_seconds": seconds, "decoded_features": columns is not None,
                "seed": seed}
        nodes = _num_nodes(model)
        forest = _TrainedForest(model, columns, prepared.num_classes, name="forest")
        return TreesCore(forest, prepared.dim, prepared.num_classes, nodes, info)


# -- saving and loading ------------------------------------------------------------------------
class _Saved(tf.Module):
    def __init__(self, core: TreesCore):
        super().__init__()
        self.core = core
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
    fileio.write_json(os.path.join(directory, CLASSIFIER_FILE), {
        "dim": int(core.input_shape[-1]), "num_classes": core.num_classes,
        "nodes": core.count_params(), "info": core.info})
    return directory


def load_core(directory: str) -> TreesCore:
    """The TreesCore `save_core` wrote in `directory` (TF-DF's ops are loaded first)."""
    from modules import fileio

    _tfdf()  # registers the custom ops the SavedModel's graph uses
    meta = fileio.read_json(os.path.join(directory, CLASSIFIER_FILE))
    restored = tf.saved_model.load(directory)
    return TreesCore(_RestoredForest(restored, meta["num_classes"], name="forest"),
                     meta["dim"], meta["num_classes"], meta["nodes"], meta.get("info"))


def is_trees_core(directory: str) -> bool:
    """Whether `directory` holds a core written by `save_core`."""
    return tf.io.gfile.exists(os.path.join(directory, CLASSIFIER_FILE))
