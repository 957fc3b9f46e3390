"""Preprocessing learned from the training split, exported inside every model.

`FeaturePreprocessor` maps canonical raw columns (see `modules.reading.data`) to one dense float32
vector: the input of the model's core and of the TFLite model. Per numeric feature it emits a
clipped z-score (0 when missing), a missing indicator, and a piecewise-linear encoding over
quantile bins (Gorishniy et al. 2022, "On Embeddings for Numerical Features in Tabular Deep
Learning"): bin t gives clip((x - e[t]) / (e[t+1] - e[t]), 0, 1). Per categorical feature
(text, or an integer column with few distinct values) it emits a one-hot block whose slot 0
is "out of vocabulary". Every value lies in [-clip, clip], which keeps int8 input scales fine.
"""
import json
import os
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from modules import autograph  # noqa: F401  (AutoGraph leaves tf_keras alone)
from modules.reading import data

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
        # Keras casts a float32 layer's floating inputs to float32 when it is called: serving
        # would then round 11-digit codes (taxi's census tracts) that training read as float64
        # through `encode` (a piecewise-linear bin flipped on taxi's validation rows).
        self._autocast = False
        # Kept as JSON text: Keras would wrap lists and dicts in attribute-tracking proxies.
        self._specs = json.dumps({"numeric": list(numeric), "categorical": list(categorical)})
        self.clip = float(clip)
        self._lookups = [tf.keras.layers.StringLookup(vocabulary=spec["vocabulary"] or [""],
                                                      num_oov_indices=1, output_mode="int",
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

    @tf.autograph.experimental.do_not_convert  # see modules.models.layers.DenseBlock.call
    def call(self, inputs: Dict[str, tf.Tensor], training=None) -> tf.Tensor:
        return self.expand(self.encode(inputs))

    @tf.autograph.experimental.do_not_convert  # also when a tf.data map calls it
    def encode(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
        """Raw columns -> float64 [batch, features]: each numeric value as it is (NaN when
        missing), then each categorical value's vocabulary index (0: out of vocabulary).
        The compact form prepared splits are held in (`modules.reading.splits`): a row takes one
        number per feature, not one per output slot; `expand` makes the model's input."""
        columns = [tf.cast(inputs[s["name"]], tf.float64) for s in self.numeric]
        for spec, lookup in zip(self.categorical, self._lookups):
            value = inputs[spec["name"]]
            if spec["source"] == "numeric":
                value = tf.cast(value, tf.float64)
                value = tf.where(tf.math.is_nan(value), tf.constant("", tf.string),
                                 tf.strings.as_string(tf.cast(tf.where(
                                     tf.math.is_nan(value), tf.zeros_like(value), value),
                                     tf.int64)))
            columns.append(tf.cast(lookup(value), tf.float64))
        return tf.stack(columns, axis=1)

    @tf.autograph.experimental.do_not_convert
    def expand(self, encoded: tf.Tensor) -> tf.Tensor:
        """`encode`'s output -> float32 [batch, output_dim] (see `layout`), vectorized over
        the features: a handful of ops per batch whatever their number."""
        numeric, blocks = self.numeric, []
        n = len(numeric)
        if n:
            x = encoded[:, :n]
            missing = tf.math.is_nan(x)
            present = tf.cast(tf.logical_not(missing), tf.float64)
            x = tf.where(missing, tf.zeros_like(x), x)
            mean = tf.constant([s["mean"] for s in numeric], tf.float64)
            std = tf.constant([s["std"] for s in numeric], tf.float64)
            blocks.append(tf.clip_by_value((x - mean) / std, -self.clip, self.clip) * present)
            blocks.append(1.0 - present)
            # Piecewise-linear bins of every feature side by side: bin t of feature i reads
            # column i (and whether it is present) and its edges e[t], e[t+1].
            owner = [i for i, s in enumerate(numeric) for _ in s["edges"][1:]]
            lower = np.concatenate([np.asarray(s["edges"][:-1], np.float64) for s in numeric])
            upper = np.concatenate([np.asarray(s["edges"][1:], np.float64) for s in numeric])
            column, kept = tf.split(tf.gather(tf.concat([x, present], axis=1),
                                              owner + [n + i for i in owner], axis=1), 2, axis=1)
            blocks.append(tf.clip_by_value((column - lower) / (upper - lower), 0.0, 1.0) * kept)
        numbers = tf.cast(tf.concat(blocks, axis=1), tf.float32) if blocks else None
        if not self.categorical:
            return numbers
        # Every one-hot block at once: feature j's index lands at its block's offset.
        widths = [len(s["vocabulary"] or [""]) + 1 for s in self.categorical]
        offsets = np.cumsum([0] + widths[:-1])
        slots = tf.cast(encoded[:, n:], tf.int64) + offsets
        rows = tf.broadcast_to(tf.range(tf.shape(slots, out_type=tf.int64)[0])[:, None],
                               tf.shape(slots, out_type=tf.int64))
        hot = tf.scatter_nd(tf.stack([rows, slots], axis=-1),
                            tf.ones_like(slots, tf.float32),
                            tf.stack([tf.shape(slots, out_type=tf.int64)[0], sum(widths)]))
        return hot if numbers is None else tf.concat([numbers, hot], axis=1)

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


# Quantile bins of the piecewise-linear encoding: StatisticsGen computes this many quantile
# buckets per numeric feature (`statistics_options`), and `fit_preprocessor` uses them.
BINS = 16


def statistics_options(bins: int = BINS):
    """The StatsOptions StatisticsGen runs with: the quantiles the preprocessing needs."""
    import tensorflow_data_validation as tfdv

    return tfdv.StatsOptions(num_quantiles_histogram_buckets=bins)


def load_statistics(statistics_uri: str, split: str = "train"):
    """The DatasetFeatureStatistics StatisticsGen wrote for `split` of its artifact."""
    import tensorflow_data_validation as tfdv
    from tfx.components.statistics_gen import executor as statistics_executor

    path = os.path.join(statistics_uri, f"Split-{split}", statistics_executor.DEFAULT_FILE_NAME)
    return tfdv.load_stats_binary(path).datasets[0]


def fit_preprocessor(statistics, columns: Sequence[data.FeatureColumn], *,
                     max_categories: int = 100, min_count: int = 5,
                     clip: float = 5.0) -> FeaturePreprocessor:
    """Normalization, quantile bins and vocabularies from StatisticsGen's statistics of the
    training split (a DatasetFeatureStatistics, computed on Beam: nothing here reads rows).

    An integer column whose values span at most `max_categories` integers holds categorical
    codes (one slot per integer of its range); text values seen fewer than `min_count` times
    fall into the out-of-vocabulary slot; a missing text value is a category ("") like any
    other value.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    by_name = {f.path.step[0] if f.path.step else f.name: f for f in statistics.features}
    numeric, categorical = [], []
    for column in columns:
        feature = by_name.get(column.name)
        if column.kind == data.NUMERIC:
            stats = feature.num_stats if feature is not None else None
            present = stats is not None and stats.common_stats.num_non_missing > 0
            if (present and column.schema_type == schema_pb2.INT
                    and stats.max - stats.min + 1 <= max_categories):
                codes = range(int(stats.min), int(stats.max) + 1)
                categorical.append({"name": column.name, "source": "numeric",
                                    "vocabulary": [str(v) for v in codes]})
                continue
            mean, std, edges = 0.0, 1.0, np.zeros(1)
            if present:
                mean, std = float(stats.mean), float(stats.std_dev)
                quantiles = [h for h in stats.histograms
                             if h.type == h.QUANTILES and h.buckets]
                edges = (np.array([b.low_value for b in quantiles[0].buckets]
                                  + [quantiles[0].buckets[-1].high_value])
                         if quantiles else np.array([stats.min, stats.max]))
                edges = np.unique(edges[np.isfinite(edges)])
            if len(edges) < 2:
                center = edges[0] if len(edges) else mean
                edges = np.array([center - 0.5, center + 0.5])
            numeric.append({"name": column.name, "mean": mean, "std": std if std > 0 else 1.0,
                            "edges": [float(e) for e in edges]})
        else:
            stats = (feature.string_stats
                     if feature is not None and feature.HasField("string_stats") else None)
            counts = {b.label: b.sample_count
                      for b in (stats.rank_histogram.buckets if stats else [])}
            if stats:  # a missing value ("") is a category of its own when it is common
                counts[""] = counts.get("", 0) + stats.common_stats.num_missing
            categorical.append({"name": column.name, "source": "text",
                                "vocabulary": _vocabulary(counts, max_categories, min_count)})
    return FeaturePreprocessor(numeric, categorical, clip=clip, name="preprocessor")


def _vocabulary(counts: Dict[str, float], max_size: int, min_count: int) -> List[str]:
    """The most frequent values (ties by name), at most `max_size`, each seen `min_count`
    times or more."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [name for name, count in ranked[:max_size] if count >= min_count]


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
