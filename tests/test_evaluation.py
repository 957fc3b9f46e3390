"""modules.verdict.evaluation: metrics, size on disk and latency of a candidate."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import gzip
import os

import numpy as np
import pytest
from sklearn import metrics as skm

from modules.models.hyperparameters import ModelConfig
from modules.models.model import build_core
from modules.verdict import evaluation


def test_binary_classification_metrics_match_sklearn():
    labels = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    p1 = np.array([0.1, 0.6, 0.8, 0.4, 0.9, 0.2, 0.7, 0.3])
    probabilities = np.stack([1 - p1, p1], axis=1)
    result = evaluation.classification_metrics(labels, probabilities)
    predictions = (p1 > 0.5).astype(int)
    assert result["auc"] == pytest.approx(skm.roc_auc_score(labels, p1))
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, predictions))
    assert result["precision"] == pytest.approx(skm.precision_score(labels, predictions))
    assert result["recall"] == pytest.approx(skm.recall_score(labels, predictions))
    assert result["log_loss"] == pytest.approx(skm.log_loss(labels, p1))
    assert result["accuracy"] == pytest.approx(0.75)


def test_multiclass_metrics_match_sklearn_macro_averages():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2] * 10)
    logits = rng.normal(size=(30, 3)) + 1.5 * np.eye(3)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    result = evaluation.classification_metrics(labels, probabilities)
    predictions = probabilities.argmax(axis=1)
    assert result["auc"] == pytest.approx(
        skm.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, predictions))
    assert result["precision"] == pytest.approx(
        skm.precision_score(labels, predictions, average="macro"))
    assert result["recall"] == pytest.approx(
        skm.recall_score(labels, predictions, average="macro"))
    assert result["log_loss"] == pytest.approx(skm.log_loss(labels, probabilities), rel=1e-6)


def test_log_loss_survives_zero_probabilities():
    labels = np.array([0, 1])
    probabilities = np.array([[1.0, 0.0], [1.0, 0.0]])  # confidently wrong on the second
    result = evaluation.classification_metrics(labels, probabilities)
    assert np.isfinite(result["log_loss"]) and result["log_loss"] > 5


def test_size_on_disk_of_a_file(tmp_path):
    content = b"abc" * 1000
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    size = evaluation.size_on_disk(str(path))
    assert size["size_bytes"] == len(content)
    assert size["gzip_bytes"] == len(gzip.compress(content, 9))
    assert size["gzip_bytes"] < size["size_bytes"]


def test_size_on_disk_of_a_folder_counts_every_file(tmp_path):
    folder = tmp_path / "saved_model"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(os.urandom(500))
    (folder / "variables" / "variables.data").write_bytes(b"\0" * 3000)
    size = evaluation.size_on_disk(str(folder))
    assert size["size_bytes"] == 3500
    assert 0 < size["gzip_bytes"] < 3500


def test_latency_reports_p50_not_above_p90_and_calls_warmup_plus_repeats():
    calls = []
    result = evaluation.latency_ms(lambda: calls.append(sum(range(200))), warmup=5,
                                   repeats=40)
    assert len(calls) == 45
    assert 0 < result["latency_ms_p50"] <= result["latency_ms_p90"]


def test_keras_predictor_gives_probabilities_and_a_single_example_call():
    core = build_core(6, 3, ModelConfig(num_layers=1, units=4, cross_rank=0), seed=0)
    predict, single = evaluation.keras_predictor(core)
    x = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    probabilities = predict(x)
    assert probabilities.shape == (10, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(single(x[3])()[0], probabilities[3], rtol=1e-5)


def test_nonzero_params_counts_nonzero_weights():
    assert evaluation.nonzero_params([np.array([0.0, 1.0, 2.0]), np.zeros((2, 2))]) == 2


def test_tfma_slices_the_models_scores_written_next_to_raw_examples(tmp_path):
    """The Evaluator's TFMA path for any two-class label ("no"/"yes" here): each model's
    probability of the second class is written into the raw examples with the class id, and
    TFMA computes the metrics of each model overall and per slice of a raw feature."""
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import schema_pb2

    from modules.reading import data
    from modules.verdict import sliced_metrics
    from pipeline.configs import DEFAULT_BEAM_ARGS

    rng = np.random.default_rng(0)
    labels = rng.choice(["no", "yes"], 400)
    colors = np.where(np.arange(400) < 100, "red", "blue")
    with tf.io.TFRecordWriter(str(tmp_path / "eval.gz"), "GZIP") as writer:
        for label, color in zip(labels, colors):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "color": tf.train.Feature(bytes_list=tf.train.BytesList(value=[color.encode()])),
                "label": tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()])),
            })).SerializeToString())
    label = data.FeatureColumn("label", data.TEXT, schema_pb2.BYTES)

    def scores(serialized, class_ids):
        assert len(serialized.numpy()) == len(class_ids)
        return {sliced_metrics.LABEL_KEY: class_ids.astype(np.float32),
                sliced_metrics.prediction_key("right"): 0.1 + 0.8 * class_ids,
                sliced_metrics.prediction_key("wrong"): 0.9 - 0.8 * class_ids}

    scored = str(tmp_path / "scored.gz")
    assert data.write_labeled_examples([str(tmp_path / "eval.gz")], label, ["no", "yes"],
                                       scored, added=scores) == 400
    assert sliced_metrics.supported(["no", "yes"]) and not sliced_metrics.supported(["a", "b", "c"])
    result = sliced_metrics.sliced_metrics(["right", "wrong"], scored, ["color"],
                                           str(tmp_path / "tfma"), list(DEFAULT_BEAM_ARGS))
    assert set(result) == {"right", "wrong"}
    right, wrong = result["right"], result["wrong"]
    assert set(right) == {"overall", "color=red", "color=blue"}
    assert right["overall"]["examples"] == 400 and right["color=red"]["examples"] == 100
    assert right["overall"]["auc"] == pytest.approx(1.0, abs=1e-3)
    assert right["color=red"]["accuracy"] == pytest.approx(1.0)
    assert wrong["overall"]["accuracy"] == pytest.approx(0.0)
    assert wrong["color=blue"]["auc"] == pytest.approx(0.0, abs=1e-3)
