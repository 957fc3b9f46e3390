"""modules.learning.baselines: the linear model trained by our loop, and the choice of the
teacher."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import numpy as np
import pytest

from conftest import make_prepared
from modules.learning import baselines
from modules.settings import Training
from modules.verdict import evaluation


@pytest.fixture(scope="module")
def prepared():
    return make_prepared(n=800, d=10)


def test_linear_model_has_no_hidden_layer_and_learns_a_linear_problem(prepared):
    linear = baselines.train_linear(prepared, run=Training(seed=0))
    assert linear.l2 in baselines.L2_GRID
    assert [layer.name for layer in linear.core.layers] == ["logits"]  # logistic regression
    assert linear.core.count_params() == (10 + 1) * 2
    metrics = evaluation.keras_metrics(linear.core, prepared.held_out)
    assert metrics["accuracy"] > 0.85 and metrics["auc"] > 0.93, metrics
    assert linear.scores.metrics() == pytest.approx(metrics)  # the kept core's
    # Its own curve, as long as it trained (the report plots it with the other models')
    assert 1 <= linear.epochs_trained <= baselines.LINEAR_CONFIG.epochs
    assert len(linear.history["val_loss"]) == linear.epochs_trained


def test_linear_model_keeps_the_weight_decay_of_the_lowest_validation_log_loss(prepared,
                                                                               monkeypatch):
    seen = {}
    real = evaluation.keras_scores

    def scores(core, split):
        result = real(core, split)
        seen[core.name] = result.metrics()["log_loss"]
        return result

    monkeypatch.setattr(evaluation, "keras_scores", scores)
    l2 = baselines.train_linear(prepared, run=Training(seed=0)).l2
    assert set(seen) == {f"l2_{value:g}" for value in baselines.L2_GRID}
    assert seen[f"l2_{l2:g}"] == min(seen.values())


def scores(labels, p):
    return evaluation.Scores(labels, np.stack([1 - p, p], axis=1))


def test_a_more_complex_teacher_must_beat_the_linear_model_beyond_noise():
    rng = np.random.default_rng(0)
    labels = (rng.random(500) < 0.4).astype(np.int64)
    sharp = np.where(labels == 1, 0.8, 0.2)
    sharper = np.where(labels == 1, 0.85, 0.15)
    vague = np.where(labels == 1, 0.6, 0.4)
    noisy = np.clip(vague + rng.normal(0, 0.01, vague.shape), 0.01, 0.99)
    # Both beat the linear model beyond noise: the lower validation log loss of the two.
    both = baselines.choose_teacher({"linear": scores(labels, vague),
                                     "network": scores(labels, sharp),
                                     "trees": scores(labels, sharper)}, seed=0)
    assert both.kind == "trees"
    assert both.challenges["network"].low > 0 and both.challenges["trees"].low > 0
    # Neither beats it beyond noise: the linear model stays, whatever the point estimates.
    none = baselines.choose_teacher({"linear": scores(labels, vague),
                                     "network": scores(labels, noisy),
                                     "trees": scores(labels, vague)}, seed=0)
    assert none.kind == "linear" and "not better beyond noise" in none.reason()
    only = baselines.choose_teacher({"linear": scores(labels, vague),
                                     "network": scores(labels, sharp),
                                     "trees": scores(labels, noisy)}, seed=0)
    assert only.kind == "network" and "network better" in only.reason()
