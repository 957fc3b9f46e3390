"""modules.blessing.decide: every criterion, the first baseline and the noise tolerance."""
import modules  # noqa: F401  (tf_keras before tensorflow)


import pytest

from modules import blessing


def decide(candidate=0.85, teacher=0.87, baseline=0.84, min_auc=0.80, max_auc_drop=0.05,
           accuracy=0.80, teacher_accuracy=0.805, majority=0.60, max_accuracy_drop=0.01,
           num_classes=2, **kwargs):
    return blessing.decide(
        {"auc": candidate, "accuracy": accuracy}, {"auc": teacher, "accuracy": teacher_accuracy},
        None if baseline is None else {"auc": baseline, "accuracy": 0.8},
        majority_accuracy=majority, num_classes=num_classes, min_auc=min_auc,
        max_auc_drop=max_auc_drop, max_accuracy_drop=max_accuracy_drop, **kwargs)


def test_blessed_when_every_criterion_holds():
    blessed, reasons = decide()
    assert blessed
    assert len(reasons) == 5 and all(r.startswith("ok: ") for r in reasons)


def test_below_min_auc_is_not_blessed():
    blessed, reasons = decide(candidate=0.79, teacher=0.80, baseline=None)
    assert not blessed
    assert reasons[0].startswith("FAILED: ") and "--min-auc 0.8000" in reasons[0]
    assert all(r.startswith("ok: ") for r in reasons[1:])


def test_min_auc_is_inclusive():
    assert decide(candidate=0.80, teacher=0.80, baseline=None)[0]


def test_too_large_auc_drop_from_the_teacher_is_not_blessed():
    blessed, reasons = decide(candidate=0.85, teacher=0.95, baseline=None)
    assert not blessed
    assert reasons[1].startswith("FAILED: ") and "--max-auc-drop" in reasons[1]
    assert "+0.1000" in reasons[1]


def test_too_large_accuracy_drop_is_not_blessed_whatever_the_auc():
    """The breast-cancer case: AUC within budget, accuracy far below the teacher's."""
    blessed, reasons = decide(candidate=0.99, teacher=0.99, accuracy=0.70,
                              teacher_accuracy=0.97, baseline=None)
    assert not blessed
    assert reasons[2].startswith("FAILED: accuracy drop from the teacher +0.2700 > "
                                 "--max-accuracy-drop 0.0100")
    assert decide(accuracy=0.795, teacher_accuracy=0.805)[0]  # exactly the budget: inclusive


def test_accuracy_at_or_below_the_majority_rate_is_never_blessed():
    """A model no better than always predicting the commonest class, with a fine AUC."""
    blessed, reasons = decide(candidate=0.99, teacher=0.99, accuracy=0.60,
                              teacher_accuracy=0.60, majority=0.60, baseline=None)
    assert not blessed
    assert reasons[3].startswith("FAILED: accuracy 0.6000 <= the majority-class rate 0.6000")
    assert sum(r.startswith("FAILED") for r in reasons) == 1


def test_more_than_two_classes_name_macro_roc_auc():
    _, reasons = decide(num_classes=3)
    assert reasons[0].startswith("ok: macro ROC AUC 0.8500 >= --min-auc")
    assert "macro ROC AUC drop" in reasons[1]
    _, reasons = decide(num_classes=2)
    assert reasons[0].startswith("ok: ROC AUC 0.8500")


def test_worse_than_last_blessed_model_is_not_blessed():
    blessed, reasons = decide(candidate=0.85, baseline=0.86)
    assert not blessed
    assert reasons[4].startswith("FAILED: ") and "worse" in reasons[4]


def test_first_run_has_no_baseline_and_says_so():
    blessed, reasons = decide(baseline=None)
    assert blessed
    assert reasons[4] == "ok: no previously blessed model: this is the first baseline"


def test_drop_within_noise_tolerance_of_baseline_is_not_a_regression():
    assert blessing.NOISE_TOLERANCE == 1e-3
    assert decide(candidate=0.85, baseline=0.8505)[0]
    assert not decide(candidate=0.85, baseline=0.852)[0]
    assert decide(candidate=0.85, baseline=0.852, noise_tolerance=0.01)[0]


def test_every_failed_criterion_is_reported():
    blessed, reasons = decide(candidate=0.5, teacher=0.9, baseline=0.8, accuracy=0.5,
                              teacher_accuracy=0.9)
    assert not blessed
    assert [r.split(":")[0] for r in reasons] == ["FAILED"] * 5


def test_majority_rate_is_the_training_majority_scored_on_eval():
    # rows per class: train [1, 3] -> class 1; eval [3, 1] -> 1 of 4 right
    assert blessing.majority_rate([1, 3], [3, 1]) == (1, 0.25)
    assert blessing.majority_rate([2, 0, 2], [1, 0, 1]) == (0, 0.5)  # ties: lowest class id


def test_budget_left_is_the_share_of_the_tighter_budget():
    teacher = {"auc": 0.95, "accuracy": 0.90}
    assert blessing.budget_left(teacher, teacher, 0.005, 0.01) == pytest.approx(1.0)
    # AUC uses 40% of its budget, accuracy 50% of its: 0.5 left on the tighter one.
    assert blessing.budget_left({"auc": 0.948, "accuracy": 0.895}, teacher, 0.005,
                                0.01) == pytest.approx(0.5)
    assert blessing.budget_left({"auc": 0.96, "accuracy": 0.88}, teacher, 0.005,
                                0.01) == pytest.approx(-1.0)
    assert blessing.budget_left({"auc": 0.95, "accuracy": 0.9}, teacher, 0.0, 0.0) == 1.0
