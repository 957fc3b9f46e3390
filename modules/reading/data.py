"""Reading ExampleGen's tf.Examples into columns, in the one canonical form every module uses.

Canonical raw form of a feature, whatever its CSV looked like:
- numeric (schema type INT or FLOAT): float64, NaN where the value is missing (float64 keeps
  integer ids such as census tracts exact);
- text (schema type BYTES): string, "" where the value is missing.
The label is always a string (its class name); rows without a label are dropped and counted.
"""
import dataclasses
import hashlib
import json
import logging
import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from tfx import types
from tfx.types import artifact_utils
from tfx.utils import io_utils

from modules import fileio

NUMERIC = "numeric"
TEXT = "text"

# CsvExampleGen's splits. Every step that selects (a tuner trial, early stopping, a student,
# a sparsity) scores on VALIDATION; TEST is read by the Evaluator alone, for the verdict.
TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)


@dataclasses.dataclass(frozen=True)
class FeatureColumn:
    name: str
    kind: str  # NUMERIC or TEXT
    schema_type: int  # schema_pb2.FeatureType, used to parse tf.Examples

    @property
    def dtype(self):
        return tf.float64 if self.kind == NUMERIC else tf.string


@dataclasses.dataclass
class Split:
    """One split loaded in memory: canonical feature columns and string labels."""
    features: Dict[str, np.ndarray]
    labels: np.ndarray  # class names as str; rows without a label are already dropped
    dropped_missing_label: int = 0

    def __len__(self):
        return len(self.labels)


def load_schema(schema_path: str) -> schema_pb2.Schema:
    if fileio.isdir(schema_path):
        schema_path = io_utils.get_only_uri_in_dir(schema_path)
    return io_utils.parse_pbtxt_file(schema_path, schema_pb2.Schema())


def feature_columns(schema: schema_pb2.Schema, label: str,
                    drop: Sequence[str] = ()) -> List[FeatureColumn]:
    """The model's input columns: every schema feature except the label and dropped ones.
    A dropped column the schema lacks is one CsvExampleGen left out (an identifier, see
    components/csv_example_gen) or a typo the preflight check catches on local runs: it is
    noted, not an error."""
    names = {f.name for f in schema.feature}
    if label not in names:
        raise ValueError(f"column {label} (--label) is not in the schema; check --label "
                         f"against the CSV header")
    absent = [name for name in drop if name not in names]
    if absent:
        logging.getLogger(__name__).debug(
            "--drop %s: not in the examples (left out by CsvExampleGen)", ", ".join(absent))
    columns = []
    for feature in schema.feature:
        if feature.name == label or feature.name in drop:
            continue
        kind = TEXT if feature.type == schema_pb2.BYTES else NUMERIC
        columns.append(FeatureColumn(feature.name, kind, feature.type))
    return columns


def _parse_spec(schema_type: int):
    dtype = {schema_pb2.INT: tf.int64, schema_pb2.FLOAT: tf.float32}.get(schema_type, tf.string)
    return tf.io.VarLenFeature(dtype)


def _first_value(sparse: tf.SparseTensor, batch_size, to_dtype, missing) -> tf.Tensor:
    """First value of each row of a VarLen feature, `missing` where the row has none."""
    sparse = tf.sparse.slice(sparse, [0, 0], tf.stack([tf.cast(batch_size, tf.int64), 1]))
    values = sparse.values
    if to_dtype == tf.string and values.dtype != tf.string:
        values = tf.strings.as_string(values)
    elif to_dtype != tf.string:
        values = tf.cast(values, to_dtype)
    sparse = tf.SparseTensor(sparse.indices, values, tf.stack([tf.cast(batch_size, tf.int64), 1]))
    return tf.reshape(tf.sparse.to_dense(sparse, default_value=missing), [batch_size])


def missing_value(dtype):
    return tf.constant(np.nan, tf.float64) if dtype == tf.float64 else tf.constant("", tf.string)


def parse_examples(serialized: tf.Tensor, columns: Sequence[FeatureColumn],
                   label: Optional[FeatureColumn] = None) -> Dict[str, tf.Tensor]:
    """Serialized tf.Examples -> {name: canonical 1-D tensor}; the label (if given) as string."""
    spec = {c.name: _parse_spec(c.schema_type) for c in columns}
    if label is not None:
        spec[label.name] = _parse_spec(label.schema_type)
    parsed = tf.io.parse_example(serialized, spec)
    batch_size = tf.shape(serialized)[0]
    out = {c.name: _first_value(parsed[c.name], batch_size, c.dtype, missing_value(c.dtype))
           for c in columns}
    if label is not None:
        out[label.name] = _first_value(parsed[label.name], batch_size, tf.string, "")
    return out


def split_files(examples: Sequence[types.Artifact], split: str) -> List[str]:
    """The file pattern of one split of an Examples artifact (as TFX's fn_args gives it)."""
    return [os.path.join(artifact_utils.get_split_uri(list(examples), split), "*")]


def split_records(patterns: Sequence[str]) -> tf.data.Dataset:
    """The serialized tf.Examples of one split (ExampleGen's GZIP TFRecord files), in file
    order, streamed."""
    files = sorted(f for pattern in patterns for f in fileio.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no examples match {', '.join(patterns)}")
    return tf.data.TFRecordDataset(files, compression_type="GZIP")


def label_counts(patterns: Sequence[str], label: FeatureColumn, batch_size: int = 8192,
                 cache_dir: Optional[str] = None) -> Dict[str, int]:
    """How many rows of a split hold each label value ("" for rows without one), streamed.
    With `cache_dir`, counted once per split and label: the steps that prepare the same
    examples after the first read the counts from there (a JSON file per split and label)."""
    cache = None
    if cache_dir:
        key = json.dumps([sorted(patterns), label.name]).encode("utf-8")
        cache = os.path.join(cache_dir, hashlib.sha256(key).hexdigest()[:16] + ".json")
        if fileio.exists(cache):
            try:
                return {str(k): int(v) for k, v in fileio.read_json(cache).items()}
            except (ValueError, AttributeError):
                pass  # a file cut short: count again
    counts: Dict[str, int] = {}
    labels = split_records(patterns).batch(batch_size).map(
        lambda s: parse_examples(s, [], label)[label.name])
    for batch in labels:
        names, numbers = np.unique(batch.numpy(), return_counts=True)
        for name, number in zip(names, numbers):
            key = name.decode("utf-8", "replace")
            counts[key] = counts.get(key, 0) + int(number)
    if cache:
        fileio.write_json(cache, counts)
    return counts


def write_labeled_examples(patterns: Sequence[str], label: FeatureColumn,
                           classes: Sequence[str], path: str, fraction: float = 1.0,
                           seed: int = 0, added: Optional[Callable[
                               [tf.Tensor, np.ndarray], Dict[str, np.ndarray]]] = None,
                           features: Optional[Sequence[str]] = None) -> int:
    """Copies the examples whose label is one of `classes` to a GZIP TFRecord file (for tools,
    like TFMA, that cannot skip rows without a label), each with probability `fraction`
    (a uniform sample, reproducible by `seed`); returns how many were kept.
    `added(serialized, class ids)` of the kept rows of a batch gives float features to add to
    them ({name: one value per row}): their scores by models, for TFMA. `features`: the only
    ones of each example to copy (None: all), e.g. what TFMA slices by: it decodes every
    feature of every row (TFMA on 2,304 taxi rows: 12.9 s with their 22 features, 12.0 s
    with the 4 it reads)."""
    known = tf.constant(list(classes))
    rng = np.random.default_rng(seed)
    kept = 0
    fileio.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for batch in split_records(patterns).batch(4096):
            labels = parse_examples(batch, [], label)[label.name]
            matches = tf.equal(labels[:, None], known[None, :]).numpy()
            keep = matches.any(axis=1) & (rng.random(len(matches)) < fraction)
            records = batch.numpy()[keep]
            extra = added(tf.constant(records), matches[keep].argmax(axis=1)) if (
                added and len(records)) else {}
            for i, record in enumerate(records):
                if extra or features is not None:
                    example = tf.train.Example.FromString(record)
                    if features is not None:
                        for name in [n for n in example.features.feature if n not in features]:
                            del example.features.feature[name]
                    for name, values in extra.items():
                        example.features.feature[name].float_list.value[:] = [values[i]]
                    record = example.SerializeToString()
                writer.write(record)
                kept += 1
    return kept


def label_column(schema: schema_pb2.Schema, label: str) -> FeatureColumn:
    for feature in schema.feature:
        if feature.name == label:
            return FeatureColumn(label, TEXT, feature.type)
    raise ValueError(f"label column '{label}' is not in the schema; pass --label NAME")


def class_vocabulary(labels) -> List[str]:
    """Sorted class names (of the training split): numerically when every class is a
    number; "" (no label) is not a class."""
    classes = sorted(set(labels) - {""})
    try:
        return sorted(classes, key=float)
    except ValueError:
        return classes

