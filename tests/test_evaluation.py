"""modules.evaluation: metrics, size on disk and latency of a candidate."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import gzip
import os

import numpy as np
import pytest
from sklearn import metrics as skm

from modules import evaluation
from modules.model import ModelConfig, build_core


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
