"""modules.blessing.decide: every criterion, the first baseline and the noise tolerance."""
import modules  # noqa: F401  (tf_keras before tensorflow)


from modules import blessing


def decide(candidate=0.85, teacher=0.87, baseline=0.84, min_auc=0.80, max_auc_drop=0.05,
           **kwargs):
    return blessing.decide(candidate, teacher, baseline, min_auc=min_auc,
                           max_auc_drop=max_auc_drop, **kwargs)


def test_blessed_when_every_criterion_holds():
    blessed, reasons = decide()
    assert blessed
    assert len(reasons) == 3 and all(r.startswith("ok: ") for r in reasons)


def test_below_min_auc_is_not_blessed():
    blessed, reasons = decide(candidate=0.79, teacher=0.80, baseline=None)
    assert not blessed
    assert reasons[0].startswith("FAILED: ") and "--min-auc 0.8000" in reasons[0]
    assert reasons[1].startswith("ok: ")


def test_min_auc_is_inclusive():
    assert decide(candidate=0.80, teacher=0.80, baseline=None)[0]


def test_too_large_drop_from_the_teacher_is_not_blessed():
    blessed, reasons = decide(candidate=0.85, teacher=0.95, baseline=None)
    assert not blessed
    assert reasons[1].startswith("FAILED: ") and "--max-auc-drop" in reasons[1]
    assert "+0.1000" in reasons[1]


def test_worse_than_last_blessed_model_is_not_blessed():
    blessed, reasons = decide(candidate=0.85, baseline=0.86)
    assert not blessed
    assert reasons[2].startswith("FAILED: ") and "worse" in reasons[2]


def test_first_run_has_no_baseline_and_says_so():
    blessed, reasons = decide(baseline=None)
    assert blessed
    assert reasons[2] == "ok: no previously blessed model: this is the first baseline"


def test_drop_within_noise_tolerance_of_baseline_is_not_a_regression():
    assert blessing.NOISE_TOLERANCE == 1e-3
    assert decide(candidate=0.85, baseline=0.8505)[0]
    assert not decide(candidate=0.85, baseline=0.852)[0]
    assert decide(candidate=0.85, baseline=0.852, noise_tolerance=0.01)[0]


def test_every_failed_criterion_is_reported():
    blessed, reasons = decide(candidate=0.5, teacher=0.9, baseline=0.8)
    assert not blessed
    assert [r.split(":")[0] for r in reasons] == ["FAILED"] * 3
