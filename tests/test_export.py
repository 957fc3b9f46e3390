"""modules.models.export: the Model artifact (SavedModel signatures, core.keras, JSON files)."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from conftest import examples_of, statistics_of
from modules.models import export
from modules.models.hyperparameters import ModelConfig
from modules.models.model import build_core
from modules.reading import data
from modules.reading.preprocessing import fit_preprocessor, transform

COLUMNS = [data.FeatureColumn("num", data.NUMERIC, schema_pb2.FLOAT),
           data.FeatureColumn("code", data.NUMERIC, schema_pb2.INT),
           data.FeatureColumn("city", data.TEXT, schema_pb2.BYTES)]
LABEL = data.FeatureColumn("label", data.TEXT, schema_pb2.BYTES)
CLASSES = ["no", "yes"]


def make_split(n=60, seed=0):
    rng = np.random.default_rng(seed)
    num = rng.normal(10.0, 3.0, size=n)
    num[::7] = np.nan
    code = rng.choice([1.0, 2.0, 5.0], size=n)
    code[::11] = np.nan
    city = rng.choice(np.array(["lyon", "paris", "nice", ""], dtype=object), size=n)
    return data.Split({"num": num, "code": code, "city": city},
                      rng.choice(np.array(CLASSES, dtype=object), size=n))


def to_examples(split):
    """Serialized tf.Examples of the raw features; missing values are absent features."""
    return tf.constant(examples_of(split, COLUMNS))


def raw_tensors(split):
    return {"num": tf.constant(split.features["num"], tf.float64),
            "code": tf.constant(split.features["code"], tf.float64),
            "city": tf.constant(split.features["city"].astype(str).tolist(), tf.string)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    train = make_split()
    preprocessor = fit_preprocessor(statistics_of(train, COLUMNS, 4), COLUMNS, min_count=2)
    config = ModelConfig(num_layers=1, units=8, cross_rank=2, dropout=0.0)
    core = build_core(preprocessor.output_dim, 2, config, seed=0)
    x = transform(preprocessor, train)
    core(x, training=True)  # batch-norm statistics off their defaults
    uri = str(tmp_path_factory.mktemp("artifact"))
    serving_dir = export.export_model(uri, core, preprocessor, COLUMNS, LABEL, CLASSES,
                                      {"role": "test", "hyperparameters": config.to_dict()})
    test = make_split(n=25, seed=1)
    logits = core(transform(preprocessor, test), training=False).numpy()
    expected = tf.nn.softmax(logits).numpy()
    return uri, serving_dir, core, preprocessor, test, expected


def test_export_writes_the_artifact_layout(exported):
    uri, serving_dir, core, _, _, _ = exported
    assert serving_dir == os.path.join(uri, export.SERVING_DIR)
    assert os.path.exists(os.path.join(serving_dir, "saved_model.pb"))
    for name in (export.CORE_FILE, export.PREPROCESSOR_FILE, export.INFO_FILE):
        assert os.path.exists(os.path.join(uri, name)), name
    info = export.read_info(uri)
    assert info["role"] == "test"
    assert info["classes"] == CLASSES
    assert info["params"] == core.count_params()
    assert [c["name"] for c in info["columns"]] == ["num", "code", "city"]
    assert info["label"]["name"] == "label"


def test_load_model_round_trip(exported):
    uri, _, core, preprocessor, test, _ = exported
    loaded = export.load_model(uri)
    assert loaded.columns == COLUMNS
    assert loaded.label == LABEL
    assert loaded.classes == CLASSES
    assert loaded.info["hyperparameters"]["units"] == 8
    x = transform(preprocessor, test)
    np.testing.assert_array_equal(transform(loaded.preprocessor, test), x)
    np.testing.assert_allclose(loaded.core(x, training=False).numpy(),
                               core(x, training=False).numpy(), rtol=1e-6, atol=1e-6)


def test_serving_default_on_tf_examples_matches_core_of_preprocessor(exported):
    _, serving_dir, _, _, test, expected = exported
    serve = tf.saved_model.load(serving_dir).signatures["serving_default"]
    outputs = serve(examples=to_examples(test))
    assert {"logits", "probabilities", "class_ids", "classes", "score"} <= set(outputs)
    probabilities = outputs["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    np.testing.assert_allclose(outputs["score"].numpy(), expected[:, 1], atol=1e-6)
    np.testing.assert_array_equal(outputs["class_ids"].numpy(), expected.argmax(axis=1))
    names = [CLASSES[i].encode() for i in expected.argmax(axis=1)]
    assert list(outputs["classes"].numpy()) == names


def test_serving_raw_on_canonical_tensors_matches_serving_default(exported):
    _, serving_dir, _, _, test, expected = exported
    loaded = tf.saved_model.load(serving_dir)
    raw = loaded.signatures["serving_raw"](**raw_tensors(test))
    np.testing.assert_allclose(raw["probabilities"].numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(raw["score"].numpy(), expected[:, 1], atol=1e-6)
    from_examples = loaded.signatures["serving_default"](examples=to_examples(test))
    np.testing.assert_allclose(raw["probabilities"].numpy(),
                               from_examples["probabilities"].numpy(), atol=1e-7)


def test_loaded_model_serves_raw_rows_as_its_saved_model_does(exported):
    """`ExportedModel.serve_raw` (the conformance kit's reference, in process) gives the
    SavedModel's `serving_raw` outputs."""
    uri, serving_dir, _, _, test, _ = exported
    saved = tf.saved_model.load(serving_dir).signatures["serving_raw"](**raw_tensors(test))
    in_process = export.load_model(uri).serve_raw(raw_tensors(test))
    assert set(in_process) == set(saved)
    for name in ("logits", "probabilities", "score"):
        np.testing.assert_allclose(in_process[name].numpy(), saved[name].numpy(), atol=1e-7)
    np.testing.assert_array_equal(in_process["classes"].numpy(), saved["classes"].numpy())


def test_more_than_two_classes_have_no_score_output(exported):
    _, _, _, preprocessor, test, _ = exported
    core = build_core(preprocessor.output_dim, 3,
                      ModelConfig(num_layers=0, cross_rank=0), seed=0)
    module = export._ServingModule(preprocessor, core, COLUMNS, ["a", "b", "c"])
    outputs = module.outputs(raw_tensors(test))
    assert "score" not in outputs
    assert outputs["probabilities"].shape == (len(test), 3)
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_serving_reads_numbers_as_float64_as_training_does():
    """11-digit codes (taxi's census tracts) keep their digits when the layer is called, as in
    `encode` (training): Keras would cast a float32 layer's inputs to float32."""
    train = make_split()
    train.features["num"] = 17031081500.0 + 100.0 * np.arange(len(train.labels))
    preprocessor = fit_preprocessor(statistics_of(train, COLUMNS, 8), COLUMNS, min_count=2)
    raw = raw_tensors(train)
    called = preprocessor(raw).numpy()
    np.testing.assert_array_equal(called, preprocessor.expand(preprocessor.encode(raw)).numpy())
    loaded = type(preprocessor).from_config(preprocessor.get_config())
    np.testing.assert_array_equal(loaded(raw).numpy(), called)
