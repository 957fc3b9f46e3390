"""modules.verdict.blessing: the verdict's rule on the cases it must get right, from class
probabilities on test rows through the paired bootstrap to the reasons."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import numpy as np
import pytest
from scipy import special, stats

from modules.settings import Blessing
from modules.verdict import blessing
from modules.verdict.blessing import Difference


def judge(labels, candidate, teacher, train_counts, *, baseline=None, min_auc=None,
          max_auc_drop=0.005, max_accuracy_drop=0.01):
    """(blessed, reasons) as the Evaluator decides them, with the default budgets."""
    from modules.verdict.evaluation import classification_metrics

    evidence = blessing.evidence(labels, candidate, teacher, train_counts,
                                 metrics=classification_metrics(labels, candidate), seed=42,
                                 baseline=baseline)
    return blessing.decide(evidence, Blessing(min_auc=min_auc, max_auc_drop=max_auc_drop,
                                              max_accuracy_drop=max_accuracy_drop),
                           num_classes=candidate.shape[1])


def reason(reasons, text):
    [line] = [r for r in reasons if text in r]
    return line


def binary(p):
    p = np.asarray(p, np.float64)
    return np.stack([1 - p, p], axis=1)


def calibrated_scores(rows, positive_rate, auc, rng):
    """Labels and calibrated P(positive) of a model with ROC AUC `auc` (equal-variance
    normal scores: AUC = Phi(d / sqrt 2), log-odds linear in the score)."""
    labels = (rng.random(rows) < positive_rate).astype(np.int64)
    shift = np.sqrt(2) * stats.norm.ppf(auc)
    score = rng.normal(size=rows) + shift * labels
    log_odds = np.log(positive_rate / (1 - positive_rate)) + shift * score - shift ** 2 / 2
    return labels, special.expit(log_odds)


def test_equal_models_on_41_rows_with_one_extra_error_are_blessed_with_a_note():
    labels = np.array([0, 1] * 20 + [1])
    teacher = np.where(labels == 1, 0.8, 0.2)
    teacher[:3] = 1 - teacher[:3]  # the teacher's own three errors
    candidate = teacher.copy()
    candidate[10] = 1 - candidate[10]  # one more error: accuracy drop 1/41 = 2.4 points
    blessed, reasons = judge(labels, binary(candidate), binary(teacher), [500, 500])
    assert blessed, reasons
    line = reason(reasons, "accuracy drop")
    assert "+0.0244" in line and "not beyond noise" in line and "41 rows" in line, line


def test_a_real_loss_of_5_7_points_on_360_rows_of_10_classes_is_refused():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 36)
    teacher = np.full((360, 10), 0.3 / 9)
    right = rng.random(360) < 0.9
    predicted = np.where(right, labels, (labels + 1) % 10)
    teacher[np.arange(360), predicted] = 0.7
    candidate = teacher.copy()
    worse = rng.choice(np.flatnonzero(right), 21, replace=False)  # 21 / 360 = 5.8 points
    candidate[worse] = 0.3 / 9
    candidate[worse, (labels[worse] + 1) % 10] = 0.7
    blessed, reasons = judge(labels, candidate, teacher, [36] * 10)
    assert not blessed
    line = reason(reasons, "accuracy drop")
    assert line.startswith("FAILED: ") and "beyond noise" in line and "+0.0583" in line, line


def test_imbalanced_5_percent_auc_0_73_at_the_majority_rate_is_blessed():
    """The loan-default case: no model beats always predicting "no" on accuracy, yet one
    that ranks risk beats the class prior on log loss."""
    rng = np.random.default_rng(1)
    labels, p = calibrated_scores(1500, 0.05, 0.73, rng)
    candidate = np.clip(p + rng.normal(0, 0.002, p.shape), 1e-4, 1 - 1e-4)
    assert (binary(candidate).argmax(1) == 0).mean() > 0.99  # accuracy = the majority rate
    blessed, reasons = judge(labels, binary(candidate), binary(p), [950, 50])
    assert blessed, reasons
    assert reason(reasons, "class frequencies").startswith("ok: ")


def test_a_model_of_shuffled_labels_is_refused_as_useless():
    rng = np.random.default_rng(2)
    labels, p = calibrated_scores(800, 0.3, 0.85, rng)
    shuffled = rng.permutation(labels)  # the model learned nothing about these labels
    blessed, reasons = judge(shuffled, binary(p), binary(p), [700, 300])
    assert not blessed
    line = reason(reasons, "class frequencies")
    assert line.startswith("FAILED: ") and "not shown to know more" in line, line


def test_a_credit_like_model_with_auc_0_84_and_int8_within_budget_is_blessed():
    """No absolute floor by default: AUC 0.84 is what the data allows."""
    rng = np.random.default_rng(3)
    labels, p = calibrated_scores(900, 0.3, 0.84, rng)
    logits = special.logit(p)
    int8 = special.expit(np.round(logits * 16) / 16)  # logits on a 1/16 grid
    blessed, reasons = judge(labels, binary(int8), binary(p), [2100, 900])
    assert blessed, reasons
    assert not any("--min-auc" in r for r in reasons)
    blessed, reasons = judge(labels, binary(int8), binary(p), [2100, 900], min_auc=0.9)
    assert not blessed and reason(reasons, "--min-auc").startswith("FAILED: ")


def test_on_many_rows_a_real_loss_beyond_the_budget_is_refused():
    rng = np.random.default_rng(4)
    labels, p = calibrated_scores(20_000, 0.4, 0.9, rng)
    candidate = p.copy()
    right = (p > 0.5) == (labels == 1)
    worse = rng.choice(np.flatnonzero(right), 500, replace=False)  # 2.5 points
    candidate[worse] = 1 - candidate[worse]
    blessed, reasons = judge(labels, binary(candidate), binary(p), [6000, 4000])
    assert not blessed
    assert reason(reasons, "accuracy drop").startswith("FAILED: ")


def test_the_last_blessed_model_refuses_a_worse_candidate_only_beyond_noise():
    rng = np.random.default_rng(5)
    labels, p = calibrated_scores(3000, 0.3, 0.9, rng)
    same = judge(labels, binary(p), binary(p), [700, 300], baseline=binary(p),
                 max_auc_drop=0.5, max_accuracy_drop=0.5)
    assert same[0] and "not worse beyond noise" in same[1][-1]
    noisy = judge(labels, binary(np.clip(p + rng.normal(0, 0.01, p.shape), 0.001, 0.999)),
                  binary(p), [700, 300], baseline=binary(p), max_auc_drop=0.5,
                  max_accuracy_drop=0.5)
    assert noisy[0], noisy[1]
    weak = special.expit(special.logit(p) * 0.3 + rng.normal(0, 1.0, p.shape))
    refused = judge(labels, binary(weak), binary(p), [700, 300], baseline=binary(p),
                    max_auc_drop=0.5, max_accuracy_drop=0.5)
    assert not refused[0] and refused[1][-1].startswith("FAILED: ")
    assert "worse beyond noise" in refused[1][-1]


def test_the_first_run_has_no_baseline():
    rng = np.random.default_rng(6)
    labels, p = calibrated_scores(500, 0.5, 0.9, rng)
    blessed, reasons = judge(labels, binary(p), binary(p), [1, 1])
    assert blessed and reasons[-1] == "ok: no previously blessed model: this is the first baseline"


BUDGET = Blessing(max_auc_drop=0.005, max_accuracy_drop=0.01)


def test_budget_left_widens_the_budget_by_the_noise_of_the_drop():
    exact = {"auc": Difference(0.0025, 0.0025, 0.0025), "accuracy": Difference(0, 0, 0)}
    assert blessing.budget_left(exact, BUDGET) == pytest.approx(0.5)  # (b - d) / b
    # A drop of 0.02 whose interval reaches 0: the Evaluator would not refuse it (budget
    # 0.01 + noise 0.02), and it leaves a third of that.
    noisy = {"auc": Difference(0, 0, 0), "accuracy": Difference(0.02, 0.0, 0.04)}
    assert blessing.budget_left(noisy, BUDGET) == pytest.approx(1 / 3)
    beyond = {"auc": Difference(0, 0, 0), "accuracy": Difference(0.05, 0.03, 0.07)}
    assert blessing.budget_left(beyond, BUDGET) < 0  # refused: low end 0.03 > 0.01
    zero = {"auc": Difference(0, 0, 0), "accuracy": Difference(0.001, 0.001, 0.001)}
    no_budget = Blessing(max_auc_drop=0.0, max_accuracy_drop=0.0)
    assert blessing.budget_left(zero, no_budget) == float("-inf")


def test_budget_left_is_negative_exactly_where_the_evaluator_refuses():
    rng = np.random.default_rng(7)
    for _ in range(50):
        estimate = rng.uniform(-0.05, 0.1)
        low = estimate - rng.uniform(0, 0.05)
        drops = {"auc": Difference(0, 0, 0), "accuracy": Difference(estimate, low, estimate + 0.05)}
        refused = not blessing._within_budget("accuracy", drops["accuracy"], 0.01, "--x", 100)[0]
        assert (blessing.budget_left(drops, BUDGET) < 0) == refused


def test_majority_rate_uses_the_training_split_commonest_class():
    assert blessing.majority_rate([30, 70], [12, 8]) == (1, 0.4)
    assert blessing.majority_rate([50, 50], [3, 1]) == (0, 0.75)  # ties: the first class


def test_trivial_model_predicts_the_training_frequencies():
    np.testing.assert_allclose(blessing.trivial_probabilities([30, 10], 3),
                               [[0.75, 0.25]] * 3)


def test_evidence_from_a_bootstrap_of_every_candidate_is_the_deployables_own():
    """The Evaluator bootstraps every candidate at once and judges the deployable one from
    those resamples: the same evidence as a bootstrap of it alone."""
    from modules.verdict import intervals

    rng = np.random.default_rng(8)
    labels, p = calibrated_scores(600, 0.3, 0.85, rng)
    teacher, other = binary(p), binary(np.clip(p + rng.normal(0, 0.05, p.shape), 0.01, 0.99))
    candidate = binary(np.clip(p + rng.normal(0, 0.02, p.shape), 0.01, 0.99))
    metrics = {"accuracy": 0.8, "auc": 0.85, "log_loss": 0.4}
    alone = blessing.evidence(labels, candidate, teacher, [70, 30], metrics=metrics, seed=3,
                              baseline=other)
    models = {"teacher": teacher, "int8": candidate, "student": other, "baseline": other,
              "trivial": blessing.trivial_probabilities([70, 30], len(labels))}
    _, differences = intervals.bootstrap(
        labels, models, [("teacher", "student"), *blessing.evidence_pairs("int8", True)],
        seed=3)
    assert blessing.evidence_from(differences, "int8", metrics=metrics, rows=len(labels),
                                  with_baseline=True) == alone
