"""modules.reading.data: schema columns, class vocabulary and parsing tf.Examples."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from modules.reading import data


def schema():
    result = schema_pb2.Schema()
    for name, kind in [("age", schema_pb2.INT), ("fare", schema_pb2.FLOAT),
                       ("city", schema_pb2.BYTES), ("label", schema_pb2.INT)]:
        feature = result.feature.add()
        feature.name, feature.type = name, kind
    return result


def test_feature_columns_exclude_label_and_dropped_and_map_kinds():
    columns = data.feature_columns(schema(), "label", drop=["fare"])
    assert [(c.name, c.kind) for c in columns] == [("age", data.NUMERIC), ("city", data.TEXT)]
    assert columns[0].dtype == tf.float64 and columns[1].dtype == tf.string


def test_feature_columns_name_missing_columns():
    with pytest.raises(ValueError, match="tips"):
        data.feature_columns(schema(), "tips")
    with pytest.raises(ValueError, match="label column 'tips'"):
        data.label_column(schema(), "tips")


def test_class_vocabulary_sorts_numbers_numerically():
    assert data.class_vocabulary(np.array(["10", "9", "2", "9"])) == ["2", "9", "10"]
    assert data.class_vocabulary(np.array(["b", "a", "c"])) == ["a", "b", "c"]


def test_parse_examples_gives_canonical_columns_with_missing_values():
    columns = data.feature_columns(schema(), "label")
    label = data.label_column(schema(), "label")
    full = tf.train.Example(features=tf.train.Features(feature={
        "age": tf.train.Feature(int64_list=tf.train.Int64List(value=[41])),
        "fare": tf.train.Feature(float_list=tf.train.FloatList(value=[7.25])),
        "city": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"Paris"])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}))
    empty = tf.train.Example()
    parsed = data.parse_examples(tf.constant([full.SerializeToString(),
                                              empty.SerializeToString()]), columns, label)
    assert parsed["age"].dtype == tf.float64
    np.testing.assert_array_equal(parsed["age"].numpy()[:1], [41.0])
    assert np.isnan(parsed["age"].numpy()[1]) and np.isnan(parsed["fare"].numpy()[1])
    assert parsed["fare"].numpy()[0] == pytest.approx(7.25)
    assert list(parsed["city"].numpy()) == [b"Paris", b""]
    assert list(parsed["label"].numpy()) == [b"1", b""]


def _write_examples(path, labels):
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i, label in enumerate(labels):
            feature = {"age": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}
            if label:
                feature["label"] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[label.encode()]))
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())


def test_label_counts_stream_a_split_and_count_missing_labels(tmp_path):
    _write_examples(str(tmp_path / "a.gz"), ["yes", "no", "", "yes"] * 3000)
    label = data.FeatureColumn("label", data.TEXT, schema_pb2.BYTES)
    assert data.label_counts([str(tmp_path / "*.gz")], label) == {
        "yes": 6000, "no": 3000, "": 3000}


def test_label_counts_are_counted_once_per_split_and_label(tmp_path):
    """The steps after the first read the counts of the same examples from the cache."""
    _write_examples(str(tmp_path / "a.gz"), ["yes", "no"] * 100)
    label = data.FeatureColumn("label", data.TEXT, schema_pb2.BYTES)
    cache = str(tmp_path / "counts")
    assert data.label_counts([str(tmp_path / "a.gz")], label, cache_dir=cache) == {
        "yes": 100, "no": 100}
    os.remove(tmp_path / "a.gz")  # no longer readable: the counts come from the cache
    assert data.label_counts([str(tmp_path / "a.gz")], label, cache_dir=cache) == {
        "yes": 100, "no": 100}
    other = data.FeatureColumn("age", data.TEXT, schema_pb2.INT)
    with pytest.raises(Exception):  # another label is counted afresh
        data.label_counts([str(tmp_path / "a.gz")], other, cache_dir=cache)


def test_labeled_examples_keep_known_classes_and_sample_uniformly(tmp_path):
    """What TFMA reads: rows of known classes only, all of them or a uniform sample."""
    _write_examples(str(tmp_path / "in.gz"), ["yes", "no", "", "maybe"] * 2500)
    label = data.FeatureColumn("label", data.TEXT, schema_pb2.BYTES)
    pattern = [str(tmp_path / "in.gz")]
    assert data.write_labeled_examples(pattern, label, ["no", "yes"],
                                       str(tmp_path / "all.gz")) == 5000
    kept = data.write_labeled_examples(pattern, label, ["no", "yes"],
                                       str(tmp_path / "sample.gz"), fraction=0.2, seed=1)
    assert 900 <= kept <= 1100
    ages = [tf.train.Example.FromString(r.numpy()).features.feature["age"].int64_list.value[0]
            for r in tf.data.TFRecordDataset(str(tmp_path / "sample.gz"),
                                             compression_type="GZIP")]
    assert len(ages) == kept and all(age % 4 in (0, 1) for age in ages)
    assert max(ages) > 9000  # spread over the whole split
    data.write_labeled_examples(pattern, label, ["no", "yes"], str(tmp_path / "some.gz"),
                                features=["age"])
    names = {tuple(tf.train.Example.FromString(r.numpy()).features.feature)
             for r in tf.data.TFRecordDataset(str(tmp_path / "some.gz"), compression_type="GZIP")}
    assert names == {("age",)}  # the label and every other feature left out
