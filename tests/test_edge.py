"""The deployable raw-in TFLite model (modules.compression.raw_tflite), its TFLite Micro check,
its conformance kit, and the reference consumer without TensorFlow (modules.edge)."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pipeline_runs import (ROOT, consumer_in_process, logit_step, run_consumer,
                           write_test_rows_csv)
from test_export import CLASSES, COLUMNS, LABEL, make_split
from conftest import statistics_of
from modules import edge
from modules.compression import conformance, quantization, raw_tflite
from modules.models import export
from modules.models.hyperparameters import ModelConfig
from modules.models.model import build_core
from modules.reading.preprocessing import fit_preprocessor, transform


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A Model artifact on num (float, NaN), code (integer codes 1..5) and city (text), with
    a FeatureCross and a hidden layer; its raw-in int8 and float16 TFLite models."""
    train = make_split(n=400)
    preprocessor = fit_preprocessor(statistics_of(train, COLUMNS, 4), COLUMNS, min_count=2)
    config = ModelConfig(num_layers=1, units=8, cross_rank=2, dropout=0.0, activation="relu")
    core = build_core(preprocessor.output_dim, 2, config, seed=0)
    core(transform(preprocessor, train), training=True)  # batch-norm statistics moved
    uri = str(tmp_path_factory.mktemp("artifact"))
    export.export_model(uri, core, preprocessor, COLUMNS, LABEL, CLASSES, {"role": "test"})
    inputs = raw_tflite.raw_inputs(preprocessor, CLASSES)
    raw_train = {n: train.features[n] for n in inputs.columns}
    # calibrated as the Quantizer does: training rows and the rows a device may send
    calibration = [np.concatenate(pair) for pair in zip(
        inputs.tensors(raw_train), inputs.tensors(rows_with_every_case()))]
    models = {name: raw_tflite.convert(core, preprocessor, inputs, name,
                                       quantization.representative_dataset(calibration))
              for name in ("int8", "float16")}
    return uri, core, preprocessor, inputs, models


def rows_with_every_case():
    """Test rows plus what devices send: NaN, an unseen city, out-of-range and non-listed
    integer codes, values far outside the training range, a missing city."""
    test = make_split(n=60, seed=1)
    columns = {n: list(test.features[n]) for n in ("num", "code", "city")}
    extra = [(np.nan, np.nan, ""), (1e9, 5.0, "atlantis"), (-1e9, 3.0, "paris"),
             (10.0, 99.0, "nice"), (10.0, -4.0, "lyon")]
    for num, code, city in extra:
        columns["num"].append(num)
        columns["code"].append(code)
        columns["city"].append(city)
    return {n: np.array(v, dtype=object if n == "city" else np.float64)
            for n, v in columns.items()}


def test_inputs_follow_the_preprocessing(model):
    _, _, _, inputs, _ = model
    assert inputs.numbers == ["num", "code"] and inputs.ids == ["city"]
    assert inputs.vocabularies["city"][:1] and "paris" in inputs.vocabularies["city"]
    tensors = inputs.tensors({"num": ["1.5", "", "NA"], "code": [2, 5, np.nan],
                              "city": [b"paris", "nowhere", ""]})
    np.testing.assert_array_equal(tensors[0][:, 0], [1.5, np.nan, np.nan])
    assert tensors[1][0, 0] == inputs.vocabularies["city"].index("paris") + 1
    assert tensors[1][1, 0] == 0  # unseen
    assert tensors[0].dtype == np.float32 and tensors[1].dtype == np.int32
    with pytest.raises(ValueError, match="column num: 'abc' is not a number"):
        inputs.tensors({"num": ["abc"], "code": [1], "city": ["x"]})


def test_in_graph_preprocessing_equals_the_exported_preprocessor(model):
    """Slot for slot, on every case a device can send (float32 against float64)."""
    _, _, preprocessor, inputs, _ = model
    rows = rows_with_every_case()
    expected = preprocessor({"num": tf.constant(rows["num"]), "code": tf.constant(rows["code"]),
                             "city": tf.constant(rows["city"].astype(str).tolist())}).numpy()
    tensors = inputs.tensors(rows)
    got = raw_tflite.preprocess(preprocessor, *map(tf.constant, tensors), inputs.offsets).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["int8", "float16"])
def test_raw_in_model_gives_the_serving_probabilities(model, mode):
    uri, core, preprocessor, inputs, models = model
    rows = rows_with_every_case()
    loaded = tf.saved_model.load(os.path.join(uri, export.SERVING_DIR))
    expected = loaded.signatures["serving_raw"](
        num=tf.constant(rows["num"]), code=tf.constant(rows["code"]),
        city=tf.constant(rows["city"].astype(str).tolist()))["probabilities"].numpy()
    got = edge.RawModel(models[mode], inputs, tf.lite.Interpreter).probabilities(rows)
    # every row, missing and far-out values included, within the conformance kit's tolerance
    assert np.abs(got - expected).max() <= conformance.TOLERANCE


def test_int8_model_quantizes_the_network_only_with_int16_activations(model):
    """One QUANTIZE where the preprocessed vector is whole, int8 weights, int16 activations
    in the network, one DEQUANTIZE before the float softmax."""
    _, _, _, _, models = model
    ops = raw_tflite.operators(models["int8"])
    assert ops.count("QUANTIZE") == 1 and ops.count("DEQUANTIZE") == 1
    interpreter = tf.lite.Interpreter(model_content=models["int8"])
    details = interpreter._get_ops_details()
    tensors = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    layers = [op for op in details if op["op_name"] == "FULLY_CONNECTED"]
    assert len(layers) >= 2  # the hidden layer and the logits
    for op in layers:
        data, weights = op["inputs"][:2]
        assert tensors[data] == np.int16 and tensors[weights] == np.int8
        assert tensors[op["outputs"][0]] == np.int16
    [softmax] = [op for op in details if op["op_name"] == "SOFTMAX"]
    assert tensors[softmax["inputs"][0]] == np.float32


def test_int8_model_uses_tflite_micro_builtins_and_runs_there(model):
    """The operator codes read from the flatbuffer are all in TFLite Micro's op resolver, and
    the `tflite-micro` interpreter gives the TFLite interpreter's probabilities."""
    _, _, _, inputs, models = model
    content = models["int8"]
    ops = raw_tflite.operators(content)
    assert set(ops) <= raw_tflite.TFLITE_MICRO_OPS, set(ops) - raw_tflite.TFLITE_MICRO_OPS
    assert "FULLY_CONNECTED" in ops and "ONE_HOT" not in ops
    tensors = inputs.tensors(rows_with_every_case())
    lite = edge.RawModel(content, inputs, tf.lite.Interpreter).invoke(tensors)
    check = raw_tflite.micro_check(content, tensors, lite)
    assert check["runs"] and 1000 < check["arena_bytes"] < 1 << 20
    # every row: the int16 kernels of the two runtimes round alike but for a few 1e-5
    assert check["max_abs_difference"] <= 1e-4


def write_model_folder(folder, content, inputs):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, edge.MODEL_FILE), "wb") as f:
        f.write(content)
    with open(os.path.join(folder, edge.CONTRACT_FILE), "w") as f:
        json.dump(inputs.contract(), f)
    with open(os.path.join(folder, edge.VOCABULARY_FILE), "w") as f:
        json.dump(inputs.vocabularies, f)


def test_consumer_without_tensorflow_reproduces_the_interpreter(model, tmp_path):
    _, _, _, inputs, models = model
    write_model_folder(tmp_path / "model", models["int8"], inputs)
    rows = rows_with_every_case()
    with open(tmp_path / "rows.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["city", "ignored", "num", "code"])
        for city, num, code in zip(rows["city"], rows["num"], rows["code"]):
            writer.writerow([city, "x", "" if np.isnan(num) else repr(num),
                             "NA" if np.isnan(code) else int(code)])
    expected = edge.RawModel(models["int8"], inputs, tf.lite.Interpreter).probabilities(rows)
    # the consumer's own reading of the CSV, on the Evaluator's interpreter: the same numbers
    same = consumer_in_process(tmp_path / "model", tmp_path / "rows.csv")
    assert same.shape == expected.shape and np.abs(same - expected).max() <= 1e-6
    # without TensorFlow, on LiteRT: its int16 kernels round some logits the other way
    classes, probabilities = run_consumer(tmp_path / "model", tmp_path / "rows.csv")
    assert classes == CLASSES
    assert np.abs(probabilities - expected).max() <= logit_step(models["int8"])


def test_consumer_names_a_missing_column(model, tmp_path):
    _, _, _, inputs, models = model
    write_model_folder(tmp_path / "model", models["int8"], inputs)
    (tmp_path / "rows.csv").write_text("num,city\n1.0,paris\n")
    result = subprocess.run([sys.executable, "-m", "modules.edge", "predict", "--model",
                             str(tmp_path / "model"), "--csv", str(tmp_path / "rows.csv")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'rows.csv'}: no column code in the header; the model reads "
        f"num, code, city")


@pytest.mark.e2e
def test_pushed_kit_and_test_rows_through_the_consumer(baseline, tmp_path):
    """On the shared baseline's pushed version: the consumer (no TensorFlow) reproduces the
    Evaluator's predictions on every test row, and the kit's rows as the Quantizer measured
    them against `serving_raw`."""
    [version] = glob.glob(os.path.join(baseline.output, "serving", "*"))
    contract = json.load(open(os.path.join(version, "contract.json")))
    micro = contract["tflite_micro"]
    assert micro["runs"] and not micro["outside_tflite_micro"] and micro["arena_bytes"] > 0
    assert micro["max_abs_difference"] <= 1e-4  # from the Evaluator's on the kit's rows
    card = json.load(open(os.path.join(version, "model_card.json")))
    assert card["tflite_micro"]["arena_bytes"] == micro["arena_bytes"]

    step = logit_step(open(os.path.join(version, edge.MODEL_FILE), "rb").read())
    golden = os.path.join(version, "golden_rows.csv")
    classes, got = run_consumer(version, golden)
    with open(os.path.join(version, "golden_probabilities.csv")) as f:
        lines = list(csv.reader(f))
    assert lines[0] == classes == contract["output"]["classes"]
    expected = np.array(lines[1:], np.float64)
    kit = contract["conformance"]
    assert len(expected) == len(kit["cases"]) >= len(classes) + 4
    same = np.abs(consumer_in_process(version, golden) - expected).max()
    assert abs(same - kit["max_abs_difference"]) <= 1e-6
    assert same <= conformance.TOLERANCE  # the kit's rows as serving_raw gives them
    assert abs(np.abs(got - expected).max() - kit["max_abs_difference"]) <= step

    # every test row, written as CSV text from the test split's examples
    evaluator = write_test_rows_csv(baseline.output, version, tmp_path / "test_rows.csv")
    same = consumer_in_process(version, tmp_path / "test_rows.csv")
    assert len(evaluator) > 300 and same.shape == (len(evaluator), len(classes))
    assert np.abs(same - evaluator).max() <= 1e-6
    _, consumer = run_consumer(version, tmp_path / "test_rows.csv")
    assert np.abs(consumer - evaluator).max() <= step


def test_numbers_beyond_float32_digits_enter_centred_and_keep_them():
    """11-digit codes (taxi's census tracts) cannot be float32 inputs as they are: the
    contract gives them an offset, subtracted in float64 before the cast."""
    train = make_split(n=200)
    train.features["num"] = 17031081500.0 + 100.0 * np.arange(200)
    preprocessor = fit_preprocessor(statistics_of(train, COLUMNS, 8), COLUMNS, min_count=2)
    inputs = raw_tflite.raw_inputs(preprocessor, CLASSES)
    assert set(inputs.offsets) == {"num"} and abs(inputs.offsets["num"] - 17031091450) < 2000
    assert edge.RawInputs.from_contract(inputs.contract(), inputs.vocabularies) == inputs
    rows = {n: train.features[n] for n in inputs.columns}
    expected = preprocessor({"num": tf.constant(rows["num"]), "code": tf.constant(rows["code"]),
                             "city": tf.constant(rows["city"].astype(str).tolist())}).numpy()
    got = raw_tflite.preprocess(preprocessor, *map(tf.constant, inputs.tensors(rows)),
                                inputs.offsets).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("steps", [None, 3])
def test_bins_of_several_features_equal_or_unequal_in_number(steps):
    """Several numeric features: with as many bins each, the bins are computed by
    broadcasting (no gather index in the model); with fewer bins for a feature of few values
    (`steps`), by gathering each bin's column. Both give the exported preprocessor's vector."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    from modules.reading import data

    rng = np.random.default_rng(3)
    columns = [data.FeatureColumn(name, data.NUMERIC, schema_pb2.FLOAT)
               for name in ("a", "b", "c")]
    features = {"a": rng.normal(10.0, 3.0, 300), "b": rng.exponential(2.0, 300),
                "c": (rng.integers(0, steps, 300).astype(np.float64) if steps
                      else rng.uniform(-5.0, 5.0, 300))}
    features["a"][::9] = np.nan
    train = data.Split(features, rng.choice(np.array(CLASSES, dtype=object), size=300))
    preprocessor = fit_preprocessor(statistics_of(train, columns, 8), columns, min_count=2)
    widths = {len(s["edges"]) for s in preprocessor.numeric}
    assert (len(widths) == 1) == (steps is None), widths
    inputs = raw_tflite.raw_inputs(preprocessor, CLASSES)
    rows = {n: np.concatenate([train.features[n][:50], [np.nan, 1e9, -1e9]]) for n in "abc"}
    expected = preprocessor({n: tf.constant(rows[n]) for n in "abc"}).numpy()
    got = raw_tflite.preprocess(preprocessor, tf.constant(inputs.tensors(rows)[0]),
                                None).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_quantization_aware_model_converts_raw_in_with_tflite_micro_ops(model):
    """The QAT modes' folded, fake-quantized network behind the same raw-in preprocessing:
    TFLite Micro's ops, and the QAT Keras model's probabilities."""
    _, _, preprocessor, inputs, _ = model
    config = ModelConfig(num_layers=1, units=8, cross_rank=0, dropout=0.0, activation="relu")
    core = build_core(preprocessor.output_dim, 2, config, seed=0)  # a student: no cross layer
    train = make_split(n=400)
    x = transform(preprocessor, train)
    core(x, training=True)
    aware = quantization.quantize_aware(core, preserve_sparsity=False)
    aware(x, training=True)  # the fake-quant ranges observed, as fine-tuning does
    rows = {n: train.features[n] for n in inputs.columns}
    content = raw_tflite.convert(aware, preprocessor, inputs, "qat",
                                 quantization.representative_dataset(inputs.tensors(rows)))
    assert set(raw_tflite.operators(content)) <= raw_tflite.TFLITE_MICRO_OPS
    got = edge.RawModel(content, inputs, tf.lite.Interpreter).probabilities(rows)
    expected = tf.nn.softmax(aware(x, training=False)).numpy()
    assert np.abs(got - expected).max() <= 0.01
