"""Writing and reading the project's Model artifacts.

Layout of a Model artifact (every model the pipeline produces has it):
  Format-Serving/      SavedModel. `serving_default` takes serialized tf.Examples of raw
                       features (input "examples"); `serving_raw` takes one 1-D tensor per
                       feature in canonical form (numeric: float64, NaN if missing; text:
                       string, "" if missing). Both return `logits`, `probabilities`,
                       `class_ids`, `classes` and, for two classes, `score` (P(second class)).
  core.keras           the Keras core (preprocessed vector -> logits), for further training;
  trees_core/          or, for gradient-boosted trees (modules.models.trees), their core as a
                       SavedModel (a TF-DF model cannot be written to a .keras file).
  preprocessor.json    the fitted FeaturePreprocessor: features, statistics, vocabularies.
  model_info.json      label, classes, input columns, hyperparameters, parameter count,
                       metrics and whatever the producing component adds.
"""
import dataclasses
import os
import tempfile
from typing import Any, Dict, List, Sequence

import tensorflow as tf

from modules import fileio
from modules.models import trees
from modules.reading import data
from modules.models.layers import DenseBlock, FeatureCross  # noqa: F401  (registers custom layers)
from modules.reading.preprocessing import FeaturePreprocessor

SERVING_DIR = "Format-Serving"
CORE_FILE = "core.keras"
TREES_DIR = "trees_core"
PREPROCESSOR_FILE = "preprocessor.json"
INFO_FILE = "model_info.json"


@dataclasses.dataclass
class ExportedModel:
    core: tf.keras.Model
    preprocessor: FeaturePreprocessor
    columns: List[data.FeatureColumn]
    label: data.FeatureColumn
    classes: List[str]
    info: Dict[str, Any]

    def serve_raw(self, raw: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """What the SavedModel's `serving_raw` signature returns for `raw` (canonical 1-D
        tensors by column; those the preprocessing reads suffice), computed in this process
        from the same preprocessor and core, without loading the SavedModel."""
        return _ServingModule(self.preprocessor, self.core, self.columns,
                              self.classes).outputs(raw)


class _ServingModule(tf.Module):
    def __init__(self, preprocessor, core, columns, classes):
        super().__init__()
        self.preprocessor = preprocessor
        self.core = core
        self._columns = list(columns)
        self.class_names = tf.constant(list(classes))

    def outputs(self, raw: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        logits = tf.cast(self.core(self.preprocessor(raw), training=False), tf.float32)
        probabilities = tf.nn.softmax(logits)
        class_ids = tf.argmax(probabilities, axis=1)
        result = {"logits": logits, "probabilities": probabilities, "class_ids": class_ids,
                  "classes": tf.gather(self.class_names, class_ids)}
        if logits.shape[-1] == 2:
            result["score"] = probabilities[:, 1]
        return result


def export_model(artifact_uri: str, core: tf.keras.Model, preprocessor: FeaturePreprocessor,
                 columns: Sequence[data.FeatureColumn], label: data.FeatureColumn,
                 classes: Sequence[str], info: Dict[str, Any]) -> str:
    """Writes the artifact layout above; returns the SavedModel directory."""
    module = _ServingModule(preprocessor, core, columns, classes)

    # No AutoGraph: parsing, preprocessing and the core hold no tensor-dependent Python
    # control flow, and converting them cost seconds per export.
    raw_signature = {c.name: tf.TensorSpec([None], c.dtype, name=c.name) for c in columns}

    @tf.function(input_signature=[raw_signature], autograph=False)
    def serve_raw(raw):
        return module.outputs(raw)

    # Parsing, then a call of serve_raw's one trace (parse_examples gives the same canonical
    # tensors): the preprocessing and the core are traced and stored once, not per signature
    # (a third of an export's time with attrition's 30 columns).
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")],
                 autograph=False)
    def serve_examples(examples):
        return serve_raw(data.parse_examples(examples, module._columns))

    serving_dir = os.path.join(artifact_uri, SERVING_DIR)
    # Without Keras' own traces of every layer's call (what Model.save(save_traces=False)
    # does): the SavedModel is read through its signatures only (tf.saved_model.load), and
    # the traces cost more than the signatures themselves.
    from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope

    with keras_option_scope(save_traces=False):
        tf.saved_model.save(module, serving_dir, signatures={
            "serving_default": serve_examples, "serving_raw": serve_raw})
    if isinstance(core, trees.TreesCore):
        trees.save_core(core, os.path.join(artifact_uri, TREES_DIR))
    else:
        core.save(os.path.join(artifact_uri, CORE_FILE))
    fileio.write_json(os.path.join(artifact_uri, PREPROCESSOR_FILE), preprocessor.get_config())
    fileio.write_json(os.path.join(artifact_uri, INFO_FILE), {
        **info, "label": dataclasses.asdict(label), "classes": list(classes),
        "columns": [dataclasses.asdict(c) for c in columns], "params": core.count_params()})
    return serving_dir


def load_model(artifact_uri: str, compile: bool = False) -> ExportedModel:
    """Loads what `export_model` wrote, for further training or evaluation."""
    info = read_info(artifact_uri)
    preprocessor = FeaturePreprocessor.from_config(
        fileio.read_json(os.path.join(artifact_uri, PREPROCESSOR_FILE)))
    trees_dir = os.path.join(artifact_uri, TREES_DIR)
    core = (trees.load_core(trees_dir) if fileio.exists(trees_dir) else
            _load_core(os.path.join(artifact_uri, CORE_FILE), compile))
    columns = [data.FeatureColumn(**c) for c in info["columns"]]
    return ExportedModel(core, preprocessor, columns, data.FeatureColumn(**info["label"]),
                         list(info["classes"]), info)


def _load_core(path: str, compile: bool) -> tf.keras.Model:
    """tf_keras reads a .keras file at a URI (gs://...) through a copy in a new temp folder
    that it never deletes: the copy is made here, and deleted."""
    if "://" not in path:
        return tf.keras.models.load_model(path, compile=compile)
    with tempfile.TemporaryDirectory(prefix="core-") as folder:
        local = os.path.join(folder, CORE_FILE)
        fileio.copy(path, local)
        return tf.keras.models.load_model(local, compile=compile)


def read_info(artifact_uri: str) -> Dict[str, Any]:
    return fileio.read_json(os.path.join(artifact_uri, INFO_FILE))
