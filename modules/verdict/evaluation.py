"""One evaluation path for every candidate model: metrics, size and latency.

Every candidate (Keras core of a SavedModel artifact, or a TFLite model) is reduced to a
function from preprocessed feature vectors to class probabilities, and measured the same way:
- metrics on a held-out split (validation in the steps that select, test in the Evaluator),
  from each model's `Scores` (labels and probabilities): accuracy, ROC AUC, precision,
  recall, log loss (binary: of the second class; more classes: macro averages, one-vs-rest
  AUC); `modules.verdict.intervals` gives their 95% intervals from the same Scores;
- size: bytes on disk, and gzip-compressed bytes (a folder is tarred first);
- latency: one example on the CPU (TFLite: one interpreter thread; TensorFlow: its default
  thread pools), median over many calls after warm-up. The
  timed call takes an already preprocessed float32 vector and returns probabilities: for a
  vector-in TFLite model it includes input quantization, `invoke` and reading the output;
  for a Keras model, one call of its compiled inference function. The deployable TFLite
  models take raw rows (`modules.edge`; `RawRows` splits, `raw_predictor`): their timed call
  includes their own preprocessing, from tensors of raw values.
"""
import dataclasses
import functools
import gzip
import io
import os
import tarfile
import time
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf
from sklearn import metrics as skm

from modules import edge, fileio
from modules.compression.quantization import TFLiteModel, softmax
from modules.reading.splits import Split


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> Dict[str, float]:
    num_classes = probabilities.shape[1]
    predictions = probabilities.argmax(axis=1)
    clipped = np.clip(probabilities, 1e-7, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    if num_classes == 2:
        auc = skm.roc_auc_score(labels, probabilities[:, 1])
        average = "binary"
    else:
        present = np.unique(labels)
        auc = skm.roc_auc_score(labels, clipped[:, present] / clipped[:, present].sum(1, keepdims=True),
                                multi_class="ovr", average="macro", labels=present) \
            if len(present) > 2 else float("nan")
        average = "macro"
    return {
        "auc": float(auc),
        "accuracy": float(skm.accuracy_score(labels, predictions)),
        "precision": float(skm.precision_score(labels, predictions, average=average,
                                               zero_division=0)),
        "recall": float(skm.recall_score(labels, predictions, average=average, zero_division=0)),
        "log_loss": float(skm.log_loss(labels, clipped, labels=list(range(num_classes)))),
    }


def size_on_disk(path: str) -> Dict[str, int]:
    """Bytes of a file or folder, and its gzip-compressed bytes (level 9; a folder is packed
    as an uncompressed tar of its files first)."""
    if fileio.isdir(path):
        buffer = io.BytesIO()
        raw_bytes = 0
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name in fileio.walk_files(path):
                content = fileio.read_bytes(os.path.join(path, name))
                member = tarfile.TarInfo(os.path.join(os.path.basename(path), name))
                member.size = len(content)
                tar.addfile(member, io.BytesIO(content))
                raw_bytes += len(content)
        content = buffer.getvalue()
    else:
        content = fileio.read_bytes(path)
        raw_bytes = len(content)
    return {"size_bytes": int(raw_bytes), "gzip_bytes": len(gzip.compress(content, 9))}


def latency_ms(call: Callable[[], object], warmup: int = 50, repeats: int = 300) -> Dict[str, float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
    return {"latency_ms_p50": float(np.percentile(times, 50)),
            "latency_ms_p90": float(np.percentile(times, 90))}


def _probabilities(core: tf.keras.Model, x: tf.Tensor) -> tf.Tensor:
    return tf.nn.softmax(tf.cast(core(x, training=False), tf.float32))


def keras_predictor(core: tf.keras.Model):
    """(batch predict fn, single-example timed call) for a Keras core producing logits."""
    infer = tf.function(functools.partial(_probabilities, core), autograph=False,
                        input_signature=[tf.TensorSpec([None, *core.input_shape[1:]],
                                                       tf.float32)])

    def predict(x: np.ndarray) -> np.ndarray:
        return np.concatenate([infer(tf.constant(x[i:i + 4096])).numpy()
                               for i in range(0, len(x), 4096)])

    def single(example: np.ndarray) -> Callable[[], object]:
        tensor = tf.constant(example[None, :])
        return lambda: infer(tensor).numpy()

    return predict, single


@dataclasses.dataclass(frozen=True)
class Scores:
    """One model's class probabilities on the rows of a split, in row order, with their
    labels: all its metrics and their intervals come from these (a few numbers per row)."""
    labels: np.ndarray  # class ids [rows]
    probabilities: np.ndarray  # [rows, classes]

    def metrics(self) -> Dict[str, float]:
        return classification_metrics(self.labels, self.probabilities)


def split_scores(predict: Callable[[np.ndarray], np.ndarray], split: Split) -> Scores:
    """`predict`'s probabilities over a prepared split, read block by block (only the labels
    and the probabilities are kept)."""
    labels, probabilities = [], []
    for x, targets in split.blocks():
        labels.append(targets["label"])
        probabilities.append(predict(x))
    if not labels:
        raise ValueError("the held-out split has no labeled rows to measure a model on")
    return Scores(np.concatenate(labels), np.concatenate(probabilities))


def split_metrics(predict: Callable[[np.ndarray], np.ndarray],
                  split: Split) -> Dict[str, float]:
    """`classification_metrics` of `predict` over a prepared split."""
    return split_scores(predict, split).metrics()


def keras_scores(core: tf.keras.Model, split: Split) -> Scores:
    """A Keras core's (inference mode) `Scores` on a prepared split."""
    predict, _ = keras_predictor(core)
    return split_scores(predict, split)


def keras_metrics(core: tf.keras.Model, split: Split) -> Dict[str, float]:
    """`classification_metrics` of a Keras core (inference mode) on a prepared split."""
    return keras_scores(core, split).metrics()


def tflite_predictor(model: TFLiteModel):
    """(batch predict fn, single-example timed call) for a TFLite model producing logits."""
    def single(example: np.ndarray) -> Callable[[], object]:
        row = example[None, :]
        model._resize(1)
        return lambda: softmax(model.invoke(model.quantize_input(row)).astype(np.float32))

    return model.probabilities, single


def raw_predictor(model: edge.RawModel):
    """(batch predict fn, single-example timed call) for a raw-in TFLite model; the timed
    call takes a row already made tensors (numbers, vocabulary ids) and returns its
    probabilities."""
    def single(row: Dict[str, np.ndarray]) -> Callable[[], object]:
        tensors = model.inputs.tensors(row)
        model.invoke(tensors)
        return lambda: model.invoke(tensors)

    return model.probabilities, single


def tflite_candidate(folder: str, prepared):
    """A Quantizer mode folder -> (predict, single, the held-out rows it reads). A raw-in
    model (its contract names its inputs) reads the raw rows of `prepared`'s held-out split
    (`training.RawRows`); a vector-in model (versions pushed before raw-in models) the
    prepared split."""
    if "inputs" in fileio.read_json(os.path.join(folder, edge.CONTRACT_FILE)):
        model = edge.RawModel.from_folder(folder, tf.lite.Interpreter, opener=tf.io.gfile.GFile,
                                          exists=fileio.exists)
        return (*raw_predictor(model), prepared.raw(prepared.held_out_split))
    return (*tflite_predictor(TFLiteModel.from_file(os.path.join(folder, edge.MODEL_FILE))),
            prepared.held_out)


def evaluate_candidate(predict: Callable[[np.ndarray], np.ndarray],
                       single: Callable[[np.ndarray], Callable[[], object]],
                       evaluation: Split, path: str, params: int, latency_repeats: int = 300,
                       metrics: Optional[Dict[str, float]] = None) -> Dict[str, float]:
    """All the numbers the report shows for one candidate on a prepared held-out split.
    `metrics`: its `classification_metrics` there, where they are already known."""
    result = dict(metrics) if metrics else split_metrics(predict, evaluation)
    result.update(size_on_disk(path))
    result["params"] = int(params)
    with tf.device("/CPU:0"):
        result.update(latency_ms(single(evaluation.first_row()), repeats=latency_repeats))
    return result


def nonzero_params(weights) -> int:
    return int(sum(np.count_nonzero(w) for w in weights))
