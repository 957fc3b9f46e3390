"""modules.verdict.intervals: bootstrap metrics equal classification_metrics, pairing, seeding and
the
coverage of the 95% intervals."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from modules.verdict import evaluation, intervals


def _binary(rows, shift=1.0, seed=0, decimals=None):
    """Labels and two-class probabilities whose logit is shift * (2y - 1) + N(0, 1):
    population accuracy Phi(shift), ROC AUC Phi(sqrt(2) shift)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    p1 = 1.0 / (1.0 + np.exp(-(shift * (2 * labels - 1) + rng.normal(size=rows))))
    if decimals is not None:  # ties in the scores
        p1 = np.round(p1, decimals)
    return labels, np.stack([1 - p1, p1], axis=1)


def _multiclass(rows, classes=4, seed=0, weights=None, decimals=1):
    rng = np.random.default_rng(seed)
    labels = rng.choice(classes, size=rows, p=weights)
    logits = rng.normal(size=(rows, classes)) + 1.5 * np.eye(classes)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # Rounded: ties, and zeros that the clipping to 1e-7 lifts.
    return labels, np.round(probabilities, decimals).astype(np.float32)


def _phi(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _assert_match(labels, probabilities):
    expected = evaluation.classification_metrics(labels, probabilities)
    got = intervals.point_metrics(labels, probabilities)
    for metric in intervals.METRICS:
        if math.isnan(expected[metric]):
            assert math.isnan(got[metric]), metric
        else:
            assert got[metric] == pytest.approx(expected[metric], rel=1e-9, abs=1e-12), metric


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_point_estimates_equal_classification_metrics_binary_with_ties(dtype):
    labels, probabilities = _binary(500, decimals=1)
    probabilities[:7] = [1.0, 0.0]  # clipped to 1e-7 in the log loss
    _assert_match(labels, probabilities.astype(dtype))


def test_point_estimates_equal_classification_metrics_multiclass():
    _assert_match(*_multiclass(400))
    labels, probabilities = _multiclass(400, weights=[0.4, 0.3, 0.3, 0.0])  # class 3 absent
    _assert_match(labels, probabilities)
    labels, probabilities = _multiclass(50, weights=[0.5, 0.5, 0.0, 0.0])  # AUC undefined
    _assert_match(labels, probabilities)
    cis, _ = intervals.bootstrap(labels, {"m": probabilities}, resamples=50)
    assert all(math.isnan(x) for x in cis["m"]["auc"])
    assert not any(math.isnan(x) for x in cis["m"]["accuracy"])


def _rare_binary(seed):
    """40 rows, about 2 positives: some resamples draw none."""
    labels, probabilities = _binary(40, seed=seed, decimals=1)
    labels[4:] = 0
    return labels, probabilities


@pytest.mark.parametrize("make", [_rare_binary,
                                  lambda seed: _multiclass(40, weights=[0.45, 0.3, 0.2, 0.05],
                                                           seed=seed)])
def test_each_resample_is_classification_metrics_of_its_drawn_rows(make):
    """Resample 0 of `seed` is rows default_rng(seed).integers(0, n, n): its metrics are those
    of classification_metrics on those rows, also where a class was not drawn (small, skewed
    data: the 4-class resamples renormalize over the classes drawn)."""
    missing = 0
    for seed in range(30):
        labels, probabilities = make(seed)
        rows = np.random.default_rng(seed).integers(0, len(labels), len(labels))
        drawn_labels = labels[rows]
        missing += len(np.unique(drawn_labels)) < len(np.unique(labels))
        expected = evaluation.classification_metrics(drawn_labels, probabilities[rows]) \
            if len(np.unique(drawn_labels)) > 1 else None
        cis, _ = intervals.bootstrap(labels, {"m": probabilities}, seed=seed, resamples=1)
        for metric in intervals.METRICS:
            low, high = cis["m"][metric]
            if expected is None and metric == "auc":
                assert math.isnan(low) and math.isnan(high)
                continue
            if expected is None:
                continue
            if math.isnan(expected[metric]):
                assert math.isnan(low) and math.isnan(high), metric
            else:
                assert low == pytest.approx(expected[metric], rel=1e-9), (seed, metric)
                assert high == low
    assert missing > 0  # resamples missing a class: NaN or renormalized AUC


def test_weighted_auc_equals_sklearn_with_sample_weight():
    labels, probabilities = _binary(300, decimals=2)
    counts = np.bincount(np.random.default_rng(5).integers(0, 300, 300), minlength=300)
    model = intervals._Model(labels, probabilities)
    padded = np.r_[counts, 0].astype(np.int32)[None, :]
    got = model.auc(padded, np.ones((1, 2), bool))[0]
    assert got == pytest.approx(skm.roc_auc_score(labels, probabilities[:, 1],
                                                  sample_weight=counts), rel=1e-12)


def test_same_seed_same_output_other_seed_differs(monkeypatch):
    labels, probabilities = _binary(200)
    _, other = _binary(200, shift=0.5, seed=1)
    models = {"a": probabilities, "b": other}
    first = intervals.bootstrap(labels, models, [("a", "b")], seed=3, resamples=200)
    again = intervals.bootstrap(labels, models, [("a", "b")], seed=3, resamples=200)
    assert first == again
    assert intervals.bootstrap(labels, models, [("a", "b")], seed=4, resamples=200) != first
    # Each model's interval is the same whatever other models share the call.
    alone, _ = intervals.bootstrap(labels, {"a": probabilities}, seed=3, resamples=200)
    assert alone["a"] == first[0]["a"]
    # ... and whatever the chunks the resamples are counted in.
    monkeypatch.setattr(intervals, "_CHUNK_COUNTS", 7 * 200)
    assert intervals.bootstrap(labels, models, [("a", "b")], seed=3, resamples=200) == first


def test_model_against_itself_differs_by_zero():
    labels, probabilities = _binary(150, decimals=1)
    _, differences = intervals.bootstrap(labels, {"a": probabilities}, [("a", "a")],
                                         resamples=100)
    for metric in intervals.METRICS:
        assert differences[("a", "a")][metric] == {"estimate": 0.0, "low": 0.0, "high": 0.0}


def test_one_more_error_in_41_rows_is_not_a_significant_drop():
    labels = np.array([0, 1] * 20 + [1])
    first = np.eye(2)[labels] * 0.8 + 0.1  # right on every row
    second = first.copy()
    second[0] = [0.3, 0.7]  # one more error
    _, differences = intervals.bootstrap(labels, {"a": first, "b": second}, [("a", "b")])
    drop = differences[("a", "b")]["accuracy"]
    assert drop["estimate"] == pytest.approx(1 / 41)
    assert drop["low"] <= 0.0 <= drop["high"]


def test_clear_gap_excludes_zero_and_intervals_hold_their_estimates():
    labels, good = _binary(600, shift=1.5)
    _, poor = _binary(600, shift=0.2, seed=9)  # scores unrelated to these labels
    cis, differences = intervals.bootstrap(labels, {"good": good, "poor": poor},
                                           [("good", "poor")], resamples=300)
    for metric in ("accuracy", "auc"):
        assert differences[("good", "poor")][metric]["low"] > 0.0
    assert differences[("good", "poor")]["log_loss"]["high"] < 0.0
    for name, probabilities in (("good", good), ("poor", poor)):
        estimates = intervals.point_metrics(labels, probabilities)
        for metric in intervals.METRICS:
            low, high = cis[name][metric]
            assert low <= estimates[metric] <= high, (name, metric)
    for difference in differences[("good", "poor")].values():
        assert difference["low"] <= difference["estimate"] <= difference["high"]


def test_accuracy_interval_covers_the_population_accuracy():
    shift, trials = 1.0, 200
    accuracy, auc = _phi(shift), _phi(math.sqrt(2.0) * shift)
    covered = {"accuracy": 0, "auc": 0}
    for trial in range(trials):
        labels, probabilities = _binary(300, shift=shift, seed=1000 + trial)
        cis, _ = intervals.bootstrap(labels, {"m": probabilities}, seed=trial, resamples=300)
        covered["accuracy"] += cis["m"]["accuracy"][0] <= accuracy <= cis["m"]["accuracy"][1]
        covered["auc"] += cis["m"]["auc"][0] <= auc <= cis["m"]["auc"][1]
    assert 0.88 <= covered["accuracy"] / trials <= 0.99
    assert 0.88 <= covered["auc"] / trials <= 0.99


def test_unknown_pair_and_wrong_shapes_are_refused():
    labels, probabilities = _binary(20)
    with pytest.raises(KeyError):
        intervals.bootstrap(labels, {"a": probabilities}, [("a", "b")], resamples=10)
    with pytest.raises(ValueError):
        intervals.bootstrap(labels, {"a": probabilities[:10]}, resamples=10)
