"""modules.compression.pruning: magnitude pruning of our custom layers, fine-tuned with the loop."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from conftest import features_of, labels_of, small_config
from modules.compression import pruning
from modules.models.layers import DenseBlock, FeatureCross
from modules.models.model import build_core
from modules.settings import Blessing, Training
from modules.verdict import blessing, evaluation

TARGET = 0.5


@pytest.fixture(scope="module")
def pruned(prepared):
    config = small_config(num_layers=2, units=32, cross_rank=4, epochs=3)
    core = build_core(20, 2, config, seed=0)
    before = [w.copy() for w in core.get_weights()]
    stripped, result = pruning.prune(core, prepared, config, target_sparsity=TARGET, epochs=3,
                                     run=Training(seed=0), verbose=False)
    return core, before, stripped, result


def test_prune_reaches_target_sparsity_on_custom_layers(pruned):
    _, _, stripped, _ = pruned
    report = pruning.sparsity_report(stripped)
    weights = {(layer["layer"], layer["weight"]) for layer in report["layers"]}
    # DenseBlock kernels and FeatureCross factors are pruned.
    assert {("block_0", "kernel"), ("block_1", "kernel"), ("cross", "down"),
            ("cross", "up")} <= weights
    for layer in report["layers"]:
        assert abs(layer["sparsity"] - TARGET) <= 0.02, layer
    assert abs(report["pruned_weights_sparsity"] - TARGET) <= 0.02


def test_logits_layer_and_biases_are_not_pruned(pruned):
    _, _, stripped, _ = pruned
    logits_kernel = stripped.get_layer("logits").kernel.numpy()
    assert np.mean(logits_kernel == 0) < 0.1
    assert np.mean(stripped.get_layer("block_0").bias.numpy() == 0) < 0.5


def test_stripped_model_has_no_wrappers_and_predicts_like_the_pruned_model(pruned, prepared):
    _, _, stripped, result = pruned
    assert any(isinstance(layer, pruning_wrapper.PruneLowMagnitude)
               for layer in result.model.layers)
    assert not any(isinstance(layer, pruning_wrapper.PruneLowMagnitude)
                   for layer in stripped.layers)
    assert isinstance(stripped.get_layer("block_0"), DenseBlock)
    assert isinstance(stripped.get_layer("cross"), FeatureCross)
    x = features_of(prepared.held_out)
    np.testing.assert_allclose(stripped(x, training=False).numpy(),
                               result.model(x, training=False).numpy(), atol=1e-5)


def test_prune_does_not_modify_the_input_model(pruned):
    core, before, _, _ = pruned
    for original, now in zip(before, core.get_weights()):
        np.testing.assert_array_equal(original, now)


def test_pruned_model_still_classifies(pruned):
    _, _, _, result = pruned
    assert result.eval_metrics["val_auc"] > 0.8
    assert result.epochs_trained == 3  # no early stopping while pruning


def test_pruning_schedule_ramps_to_target_within_two_thirds_of_fine_tuning():
    schedule = pruning.pruning_schedule(0.8, steps_per_epoch=9, epochs=3)
    end_step = schedule.get_config()["config"]["end_step"]
    assert end_step == 18
    _, sparsity = schedule(tf.constant(end_step, tf.int64))
    assert float(sparsity) == pytest.approx(0.8)
    _, start = schedule(tf.constant(0, tf.int64))
    assert float(start) == pytest.approx(0.0)


def test_prune_under_mirrored_strategy_reaches_target_sparsity(mirrored_pruning_results):
    """prune(run=Training(strategy="mirrored")) on 2 logical CPUs must work like the default
    strategy,
    which reaches the target exactly on these kernels (320 of 640 and 512 of 1024 weights):
    the schedule's ramp must end within the steps that actually run (2 replicas halve them).
    """
    assert mirrored_pruning_results["logical_cpus"] == 2
    fresh = mirrored_pruning_results["fresh"]
    assert "error" not in fresh, fresh.get("error")
    assert len(fresh["sparsity"]) == 2
    for sparsity in fresh["sparsity"]:
        assert abs(sparsity - TARGET) <= 0.005


def test_prune_under_mirrored_strategy_after_another_mirrored_training(
        mirrored_pruning_results):
    """Under LocalDagRunner the Pruner shares its process with components that trained
    under MirroredStrategy before it; pruning must still work there."""
    after = mirrored_pruning_results["after_training"]
    assert "error" not in after, after.get("error")
    for sparsity in after["sparsity"]:
        assert abs(sparsity - TARGET) <= 0.005


def test_within_budget_keeps_the_target_sparsity_when_it_fits(prepared):
    core = build_core(20, 2, small_config(units=32), seed=0)
    labels = labels_of(prepared.held_out)
    # A "teacher" that is always wrong: any model is better.
    wrong = evaluation.Scores(labels, np.eye(2)[1 - labels])
    outcome = pruning.prune_within_budget(core, prepared, small_config(units=32),
                                          target_sparsity=0.8, teacher=wrong,
                                          budget=Blessing(max_auc_drop=0.01,
                                                          max_accuracy_drop=0.01),
                                          epochs=2, run=Training(seed=0), verbose=False)
    assert [a.sparsity for a in outcome.attempts] == [0.8]
    assert outcome.chosen.sparsity == 0.8 and outcome.result is not None
    assert pruning.sparsity_report(outcome.model)["pruned_weights_sparsity"] == pytest.approx(
        0.8, abs=0.02)


class _Scripted:
    def __init__(self, accuracy):
        self.accuracy = accuracy


def _prune_scripted(prepared, monkeypatch, accuracy_by_sparsity, dense):
    """prune_within_budget against a teacher of accuracy 0.90 (AUC 0.95), where prune()
    returns a stand-in model whose validation accuracy is scripted per sparsity, measured
    without noise; returns the outcome and the sparsities prune() was asked for."""
    tried = []

    def fake_prune(core, prepared, config, *, target_sparsity, **kwargs):
        tried.append(target_sparsity)
        return _Scripted(accuracy_by_sparsity[target_sparsity]), f"result {target_sparsity}"

    core = build_core(20, 2, small_config(), seed=0)

    def scores(model, split):
        accuracy = (0.90 if model == "teacher" else dense if model is core
                    else model.accuracy)
        return type("Scores", (), {"accuracy": accuracy,
                                   "metrics": lambda self: {"auc": 0.95, "accuracy": accuracy,
                                                            "log_loss": 0.1}})()

    def exact_drops(teacher, candidate, seed):
        drop = teacher.accuracy - candidate.accuracy
        return {"auc": blessing.Difference(0, 0, 0),
                "accuracy": blessing.Difference(drop, drop, drop)}

    monkeypatch.setattr(pruning, "prune", fake_prune)
    monkeypatch.setattr(evaluation, "keras_scores", scores)
    monkeypatch.setattr(blessing, "drops_from", exact_drops)
    outcome = pruning.prune_within_budget(
        core, prepared, small_config(), target_sparsity=0.8,
        teacher=scores("teacher", None), run=Training(seed=0),
        budget=Blessing(max_auc_drop=0.005, max_accuracy_drop=0.01))
    return outcome, tried, core


def test_within_budget_steps_down_until_a_sparsity_fits(prepared, monkeypatch):
    outcome, tried, core = _prune_scripted(prepared, monkeypatch,
                                     {0.8: 0.80, 0.6: 0.88, 0.4: 0.90, 0.2: 0.90}, dense=0.90)
    assert tried == [0.8, 0.6, 0.4]
    assert [a.budget_left for a in outcome.attempts] == pytest.approx([-9.0, -1.0, 1.0])
    assert outcome.chosen.sparsity == 0.4 and outcome.result == "result 0.4"


def test_within_budget_keeps_the_model_dense_when_no_sparsity_fits(prepared, monkeypatch):
    outcome, tried, core = _prune_scripted(prepared, monkeypatch,
                                     {0.8: 0.80, 0.6: 0.85, 0.4: 0.86, 0.2: 0.87}, dense=0.88)
    assert tried == [0.8, 0.6, 0.4, 0.2]
    assert [a.sparsity for a in outcome.attempts] == [0.8, 0.6, 0.4, 0.2, 0.0]
    assert outcome.chosen.sparsity == 0.0
    assert outcome.model is core and outcome.result is None  # untouched, not fine-tuned


def test_a_linear_student_is_kept_dense(prepared):
    """No hidden layer: the logits layer is all it has, and it is not pruned."""
    core = build_core(20, 2, small_config(num_layers=0, cross_rank=0), seed=0)
    labels = labels_of(prepared.held_out)
    outcome = pruning.prune_within_budget(
        core, prepared, small_config(), target_sparsity=0.8,
        teacher=evaluation.Scores(labels, np.eye(2)[labels]), epochs=1, verbose=False,
        run=Training(seed=0), budget=Blessing(max_auc_drop=0.01, max_accuracy_drop=0.01))
    assert [a.sparsity for a in outcome.attempts] == [0.0]
    assert outcome.model is core and outcome.result is None


def test_when_no_sparsity_fits_equal_shares_go_to_the_lower_validation_log_loss(
        prepared, monkeypatch):
    """Every sparsity leaves the same share (a few dozen validation rows), but the dense
    model is far better calibrated: it is kept."""
    losses = {0.8: 0.16, 0.6: 0.15, 0.4: 0.11, 0.2: 0.15, "dense": 0.04}

    def scores(model, split):
        key = "dense" if model is core else model
        return type("Scores", (), {"metrics": lambda self: {
            "auc": 1.0, "accuracy": 0.96, "log_loss": losses.get(key, 0.1)}})()

    core = build_core(20, 2, small_config(), seed=0)
    monkeypatch.setattr(pruning, "prune", lambda core, prepared, config, *, target_sparsity,
                        **kwargs: (target_sparsity, None))
    monkeypatch.setattr(evaluation, "keras_scores", scores)
    monkeypatch.setattr(blessing, "drops_from", lambda teacher, candidate, seed: {
        "auc": blessing.Difference(0, 0, 0), "accuracy": blessing.Difference(0.008, 0.008,
                                                                               0.008)})
    outcome = pruning.prune_within_budget(
        core, prepared, small_config(), target_sparsity=0.8, teacher=None, run=Training(seed=0),
        budget=Blessing(max_auc_drop=0.005, max_accuracy_drop=0.01))
    assert len(outcome.attempts) == 5 and outcome.chosen.sparsity == 0.0
    assert outcome.model is core
