"""modules.reading.preprocessing: the FeaturePreprocessor learned from the training split."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import numpy as np
import pytest
from tensorflow_metadata.proto.v0 import schema_pb2

from conftest import statistics_of
from modules import fileio
from modules.reading import data
from modules.reading.preprocessing import FeaturePreprocessor, fit_preprocessor, transform

COLUMNS = [data.FeatureColumn("num", data.NUMERIC, schema_pb2.FLOAT),
           data.FeatureColumn("code", data.NUMERIC, schema_pb2.INT),
           data.FeatureColumn("city", data.TEXT, schema_pb2.BYTES)]
BINS = 4


def make_split():
    rng = np.random.default_rng(0)
    num = rng.normal(50.0, 10.0, size=40)
    num[:4] = np.nan
    code = np.array([1.0] * 20 + [2.0] * 12 + [3.0] * 6 + [np.nan] * 2)
    city = np.array(["a"] * 20 + ["b"] * 12 + [""] * 3 + ["rare"] + ["c"] * 4, dtype=object)
    labels = np.array(["x", "y"] * 20, dtype=object)
    return data.Split({"num": num, "code": code, "city": city}, labels)


def split_of(num, code, city):
    return data.Split({"num": np.asarray(num, np.float64), "code": np.asarray(code, np.float64),
                       "city": np.asarray(city, dtype=object)},
                      np.array(["x"] * len(num), dtype=object))


@pytest.fixture(scope="module")
def fitted():
    split = make_split()
    return split, fit_preprocessor(statistics_of(split, COLUMNS, BINS), COLUMNS, min_count=5)


def slots(preprocessor):
    return {(slot["feature"], slot["transform"]): slot for slot in preprocessor.layout()}


def test_layout_lists_numeric_blocks_then_one_hot_blocks(fitted):
    _, preprocessor = fitted
    layout = preprocessor.layout()
    assert [(s["feature"], s["transform"]) for s in layout] == [
        ("num", "zscore"), ("num", "missing_indicator"), ("num", "piecewise_linear"),
        ("code", "one_hot"), ("city", "one_hot")]
    widths = [s["width"] for s in layout]
    assert widths == [1, 1, BINS, 4, 3]
    assert [s["offset"] for s in layout] == [0, 1, 2, 2 + BINS, 6 + BINS]
    assert preprocessor.output_dim == sum(widths)
    assert preprocessor.input_names == ["num", "code", "city"]


def test_integer_column_spanning_few_values_is_categorical(fitted):
    _, preprocessor = fitted
    code = slots(preprocessor)[("code", "one_hot")]
    assert code["vocabulary"] == ["<out of vocabulary>", "1", "2", "3"]
    assert preprocessor.categorical[0]["source"] == "numeric"


def test_text_values_seen_fewer_than_min_count_times_are_out_of_vocabulary(fitted):
    _, preprocessor = fitted
    city = slots(preprocessor)[("city", "one_hot")]
    # "a" (20) and "b" (12) are kept; "c" (4), "" (3) and "rare" (1) are below min_count 5.
    assert city["vocabulary"] == ["<out of vocabulary>", "a", "b"]


def test_zscore_statistics_ignore_missing_values(fitted):
    split, preprocessor = fitted
    present = split.features["num"][~np.isnan(split.features["num"])]
    zscore = slots(preprocessor)[("num", "zscore")]
    assert zscore["mean"] == pytest.approx(present.mean())
    assert zscore["std"] == pytest.approx(present.std())


def test_transform_output_has_output_dim_columns_and_stays_within_clip(fitted):
    split, preprocessor = fitted
    out = transform(preprocessor, split)
    assert out.shape == (len(split), preprocessor.output_dim)
    assert out.dtype == np.float32
    assert np.all(np.abs(out) <= preprocessor.clip)


def test_transform_clips_zscores_marks_missing_and_maps_unknowns_to_oov(fitted):
    _, preprocessor = fitted
    z = slots(preprocessor)[("num", "zscore")]
    mean, std = z["mean"], z["std"]
    split = split_of(num=[mean, mean + std, mean + 100 * std, np.nan, mean - 100 * std],
                     code=[1, 2, 99, np.nan, 3],
                     city=["a", "zzz", "", "b", "rare"])
    out = transform(preprocessor, split)
    np.testing.assert_allclose(out[:, 0], [0.0, 1.0, 5.0, 0.0, -5.0], atol=1e-5)
    np.testing.assert_array_equal(out[:, 1], [0, 0, 0, 1, 0])  # missing indicator
    piecewise = slots(preprocessor)[("num", "piecewise_linear")]
    np.testing.assert_array_equal(
        out[3, piecewise["offset"]:piecewise["offset"] + piecewise["width"]], 0.0)

    code = slots(preprocessor)[("code", "one_hot")]
    block = out[:, code["offset"]:code["offset"] + code["width"]]
    np.testing.assert_array_equal(block.argmax(axis=1), [1, 2, 0, 0, 3])
    np.testing.assert_array_equal(block.sum(axis=1), 1.0)  # exactly one slot per row

    city = slots(preprocessor)[("city", "one_hot")]
    block = out[:, city["offset"]:city["offset"] + city["width"]]
    np.testing.assert_array_equal(block.argmax(axis=1), [1, 0, 0, 2, 0])
    np.testing.assert_array_equal(block.sum(axis=1), 1.0)


def test_piecewise_linear_encoding_over_quantile_bins(fitted):
    _, preprocessor = fitted
    piecewise = slots(preprocessor)[("num", "piecewise_linear")]
    edges = piecewise["edges"]
    assert len(edges) == BINS + 1 and edges == sorted(edges)
    middle_of_second_bin = (edges[1] + edges[2]) / 2
    split = split_of(num=[edges[0], edges[-1], middle_of_second_bin, edges[0] - 100.0],
                     code=[1] * 4, city=["a"] * 4)
    out = transform(preprocessor, split)
    block = out[:, piecewise["offset"]:piecewise["offset"] + BINS]
    np.testing.assert_allclose(block[0], [0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(block[1], [1, 1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(block[2], [1, 0.5, 0, 0], atol=1e-6)
    np.testing.assert_allclose(block[3], [0, 0, 0, 0], atol=1e-6)


def test_integer_column_with_many_values_stays_numeric():
    split = make_split()
    preprocessor = fit_preprocessor(statistics_of(split, COLUMNS, BINS), COLUMNS, max_categories=2)
    transforms = {(s["feature"], s["transform"]) for s in preprocessor.layout()}
    assert ("code", "zscore") in transforms and ("code", "one_hot") not in transforms


def test_constant_and_all_missing_columns_do_not_divide_by_zero():
    split = split_of(num=[np.nan] * 6, code=[2.5] * 6, city=["a"] * 6)
    preprocessor = fit_preprocessor(statistics_of(split, COLUMNS, BINS), COLUMNS, min_count=1)
    out = transform(preprocessor, split)
    assert np.all(np.isfinite(out))


def test_config_round_trip_gives_identical_outputs(fitted):
    split, preprocessor = fitted
    expected = transform(preprocessor, split)
    clone = FeaturePreprocessor.from_config(preprocessor.get_config())
    np.testing.assert_array_equal(transform(clone, split), expected)
    assert clone.layout() == preprocessor.layout()


def test_json_round_trip_gives_identical_outputs(fitted, tmp_path):
    """What export writes (preprocessor.json) and load_model reads back."""
    split, preprocessor = fitted
    path = str(tmp_path / "preprocessor.json")
    fileio.write_json(path, preprocessor.get_config())
    clone = FeaturePreprocessor.from_config(fileio.read_json(path))
    np.testing.assert_array_equal(transform(clone, split), transform(preprocessor, split))


def test_transform_of_an_empty_split():
    _, preprocessor = make_split(), fit_preprocessor(statistics_of(make_split(), COLUMNS, BINS), COLUMNS)
    out = transform(preprocessor, split_of([], [], []))
    assert out.shape == (0, preprocessor.output_dim)


def test_missing_text_is_its_own_category_when_common():
    split = split_of(num=[1.0] * 12, code=[1] * 12, city=["a"] * 6 + [""] * 6)
    preprocessor = fit_preprocessor(statistics_of(split, COLUMNS, BINS), COLUMNS, min_count=5)
    city = slots(preprocessor)[("city", "one_hot")]
    assert city["vocabulary"] == ["<out of vocabulary>", "", "a"]  # ties by name
    out = transform(preprocessor, split_of([1.0, 1.0], [1, 1], ["", "zzz"]))
    block = out[:, city["offset"]:city["offset"] + city["width"]]
    np.testing.assert_array_equal(block.argmax(axis=1), [1, 0])  # missing, unknown
