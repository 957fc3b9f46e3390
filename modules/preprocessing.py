"""Preprocessing learned from the training split, exported inside every model.

`FeaturePreprocessor` maps canonical raw columns (see `modules.data`) to one dense float32
vector: the input of the model's core and of the TFLite model. Per numeric feature it emits a
clipped z-score (0 when missing), a missing indicator, and a piecewise-linear encoding over
quantile bins (Gorishniy et al. 2022, "On Embeddings for Numerical Features in Tabular Deep
Learning"): bin t gives clip((x - e[t]) / (e[t+1] - e[t]), 0, 1). Per categorical feature
(text, or an integer column with few distinct values) it emits a one-hot block whose slot 0
is "out of vocabulary". Every value lies in [-clip, clip], which keeps int8 input scales fine.
"""
import json
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from modules import data

PACKAGE = "tfx_compress"


@tf.keras.utils.register_keras_serializable(PACKAGE)
class FeaturePreprocessor(tf.keras.layers.Layer):
    """Canonical raw feature columns -> float32 [batch, output_dim].

    Args:
      numeric: [{"name", "mean", "std", "edges"}] for numeric features; `edges` are the
        quantile bin edges of the piecewise-linear encoding (at least two).
      categorical: [{"name", "source", "vocabulary"}]; `source` is "text" for string columns
        and "numeric" for integer codes (looked up by their decimal string).
      clip: z-scores are clipped to [-clip, clip].
    """

    def __init__(self, numeric: List[dict], categorical: List[dict], clip: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        # Kept as JSON text: Keras would wrap lists and dicts in attribute-tracking proxies.
        self._specs = json.dumps({"numeric": list(numeric), "categorical": list(categorical)})
        self.clip = float(clip)
        self._lookups = [tf.keras.layers.StringLookup(vocabulary=spec["vocabulary"] or [""],
                                                      num_oov_indices=1, output_mode="one_hot",
                                                      name=f"lookup_{spec['name']}")
                         for spec in self.categorical]

    @property
    def numeric(self) -> List[dict]:
        return json.loads(self._specs)["numeric"]

    @property
    def categorical(self) -> List[dict]:
        return json.loads(self._specs)["categorical"]

    @property
    def input_names(self) -> List[str]:
        return [s["name"] for s in self.numeric] + [s["name"] for s in self.categorical]

    @property
    def output_dim(self) -> int:
        return sum(slot["width"] for slot in self.layout())

    @tf.autograph.experimental.do_not_convert  # see modules.layers.DenseBlock.call
    def call(self, inputs: Dict[str, tf.Tensor], training=None) -> tf.Tensor:
        blocks = []
        if self.numeric:
            x = tf.stack([tf.cast(inputs[s["name"]], tf.float64) for s in self.numeric], axis=1)
            missing = tf.math.is_nan(x)
            mean = tf.constant([s["mean"] for s in self.numeric], tf.float64)
            std = tf.constant([s["std"] for s in self.numeric], tf.float64)
            z = tf.clip_by_value((x - mean) / std, -self.clip, self.clip)
            blocks.append(tf.where(missing, tf.zeros_like(z), z))
            blocks.append(tf.cast(missing, tf.float64))
            for i, spec in enumerate(self.numeric):
                edges = np.asarray(spec["edges"], np.float64)
                lower, upper = edges[:-1], edges[1:]
                column = x[:, i:i + 1]
                encoded = tf.clip_by_value((column - lower) / (upper - lower), 0.0, 1.0)
                blocks.append(tf.where(missing[:, i:i + 1], tf.zeros_like(encoded), encoded))
        for spec, lookup in zip(self.categorical, self._lookups):
            value = inputs[spec["name"]]
            if spec["source"] == "numeric":
                value = tf.cast(value, tf.float64)
                value = tf.where(tf.math.is_nan(value), tf.constant("", tf.string),
                                 tf.strings.as_string(tf.cast(tf.where(
                                     tf.math.is_nan(value), tf.zeros_like(value), value),
                                     tf.int64)))
            blocks.append(tf.cast(lookup(value), tf.float64))
        return tf.cast(tf.concat(blocks, axis=1), tf.float32)

    def layout(self) -> List[dict]:
        """Where each feature lands in the output vector, and how it was transformed."""
        slots = []
        for spec in self.numeric:
            slots.append({"feature": spec["name"], "transform": "zscore", "width": 1,
                          "mean": spec["mean"], "std": spec["std"], "clip": self.clip})
        for spec in self.numeric:
            slots.append({"feature": spec["name"], "transform": "missing_indicator", "width": 1})
        for spec in self.numeric:
            slots.append({"feature": spec["name"], "transform": "piecewise_linear",
                          "width": len(spec["edges"]) - 1, "edges": spec["edges"]})
        for spec in self.categorical:
            slots.append({"feature": spec["name"], "transform": "one_hot",
                          "width": len(spec["vocabulary"] or [""]) + 1,
                          "vocabulary": ["<out of vocabulary>"] + list(spec["vocabulary"] or [""])})
        offset = 0
        for slot in slots:
            slot["offset"] = offset
            offset += slot["width"]
        return slots

    def get_config(self):
        return {**super().get_config(), **json.loads(self._specs), "clip": self.clip}


def _is_integer_valued(values: np.ndarray) -> bool:
    present = values[~np.isnan(values)]
    return present.size > 0 and bool(np.all(np.floor(present) == present))


def fit_preprocessor(split: data.Split, columns: Sequence[data.FeatureColumn], *,
                     max_categories: int = 100, min_count: int = 5, bins: int = 16,
                     clip: float = 5.0) -> FeaturePreprocessor:
    """Learns normalization, quantile bins and vocabularies from the training split.

    Integer columns with at most `max_categories` distinct values are categorical codes; text
    values seen fewer than `min_count` times fall into the out-of-vocabulary slot.
    """
    numeric, categorical = [], []
    for column in columns:
        values = split.features[column.name]
        if column.kind == data.NUMERIC:
            present = values[~np.isnan(values)]
            distinct = np.unique(present)
            if _is_integer_valued(values) and len(distinct) <= max_categories:
                vocabulary = _vocabulary([str(int(v)) for v in present], max_categories, 1)
                categorical.append({"name": column.name, "source": "numeric",
                                    "vocabulary": vocabulary})
                continue
            if present.size == 0:
                present = np.zeros(1)
            mean, std = float(present.mean()), float(present.std())
            edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)))
            if len(edges) < 2:
                edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
            numeric.append({"name": column.name, "mean": mean, "std": std if std > 0 else 1.0,
                            "edges": [float(e) for e in edges]})
        else:
            vocabulary = _vocabulary(values.tolist(), max_categories, min_count)
            categorical.append({"name": column.name, "source": "text", "vocabulary": vocabulary})
    return FeaturePreprocessor(numeric, categorical, clip=clip, name="preprocessor")


def _vocabulary(values: Sequence[str], max_size: int, min_count: int) -> List[str]:
    names, counts = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
    order = np.lexsort((names, -counts))  # most frequent first, ties by name
    return [str(names[i]) for i in order[:max_size] if counts[i] >= min_count]


def transform(preprocessor: FeaturePreprocessor, split: data.Split,
              batch_size: int = 16384) -> np.ndarray:
    """Applies the preprocessor to a whole in-memory split (the same graph serving runs)."""
    n = len(split)
    out = []
    for start in range(0, n, batch_size):
        batch = {name: tf.constant(split.features[name][start:start + batch_size])
                 for name in preprocessor.input_names}
        out.append(preprocessor(batch).numpy())
    return np.concatenate(out) if out else np.zeros((0, preprocessor.output_dim), np.float32)
