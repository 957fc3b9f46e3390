"""Whether the deployable candidate may be pushed, with a reason for every criterion.

Every figure the verdict rests on is measured on the test split, which no step selects on,
and every comparison is paired: both models scored on the same rows, and the 95% interval of
their difference bootstrapped over those rows (`modules.verdict.intervals`). The criteria:

- useful: the candidate's log loss is below that of the trivial model, which predicts the
  training class frequencies for every row, beyond noise (the interval of the improvement
  lies above 0). A proper score, so it holds for any class balance: with 5% positives no
  model beats the majority class on accuracy, yet one that ranks risk is useful.
- close to the teacher: the drops in accuracy and ROC AUC from the teacher are within
  `--max-accuracy-drop` / `--max-auc-drop` unless the whole interval of a drop lies above its
  budget. So noise never refuses a model that may be as good (41 test rows, one more error:
  a drop of 2.4 points whose interval reaches 0), and a loss beyond the budget on enough rows
  is refused (a 5.7-point loss on 360 rows: interval 3-8 points). When the interval is wider
  than the budget, the verdict says the test split is too small to tell.
- not worse than the last blessed model: the same paired comparison, where the interval of
  its lead in accuracy or AUC must not lie wholly above NOISE_TOLERANCE.
- `--min-auc`: an absolute floor, only when given.

The compression steps aim at the same rule on the validation split: `budget_left` is the share
of a budget, widened by the noise of the drop's interval, that a candidate leaves.
"""
import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from modules.settings import Blessing
from modules.verdict import intervals

# Reruns with the same seed can differ in the last digits; a lead of the last blessed model
# whose interval stays below this is not a regression.
NOISE_TOLERANCE = 1e-3
# Resamples of the paired intervals that steer the searches (students, sparsities): several
# per step, on validation; the Evaluator's verdict uses intervals.RESAMPLES.
SEARCH_RESAMPLES = 300
_EPSILON = 1e-9  # float rounding: 0.90 - 0.85 is 0.05000000000000004


def auc_name(num_classes: int) -> str:
    """What "AUC" means in the metrics: one-vs-rest macro average beyond two classes."""
    return "ROC AUC" if num_classes <= 2 else "macro ROC AUC"


def majority_rate(train_counts, test_counts) -> Tuple[int, float]:
    """(class, accuracy on test) of always predicting the training split's commonest class,
    from the rows per class of each split (for the report: no longer a criterion)."""
    train_counts, test_counts = list(train_counts), list(test_counts)
    majority = max(range(len(train_counts)), key=lambda k: (train_counts[k], -k))
    total = sum(test_counts)
    return majority, (test_counts[majority] / total if total else 0.0)


def trivial_probabilities(train_counts: Sequence[int], rows: int) -> np.ndarray:
    """The trivial model's probabilities for `rows` rows: the training class frequencies."""
    counts = np.asarray(train_counts, np.float64)
    return np.tile(counts / counts.sum(), (rows, 1))


@dataclasses.dataclass(frozen=True)
class Difference:
    """A paired difference of one metric between two models on the same rows: its estimate
    on all rows and its 95% interval."""
    estimate: float
    low: float
    high: float

    def text(self, digits: int = 4) -> str:
        return (f"{self.estimate:+.{digits}f} (95% CI {self.low:+.{digits}f} to "
                f"{self.high:+.{digits}f})")


def paired_differences(labels: np.ndarray, first: np.ndarray, second: np.ndarray, *,
                       seed: int, resamples: int = intervals.RESAMPLES
                       ) -> Dict[str, Difference]:
    """metric(first) - metric(second) for accuracy, AUC and log loss, with paired bootstrap
    intervals; `first` and `second` are probabilities on the rows of `labels`."""
    _, differences = intervals.bootstrap(labels, {"first": first, "second": second},
                                         [("first", "second")], seed=seed, resamples=resamples)
    return {metric: Difference(**values)
            for metric, values in differences[("first", "second")].items()}


def drops_from(teacher, candidate, *, seed: int,
               resamples: int = SEARCH_RESAMPLES) -> Dict[str, Difference]:
    """Teacher minus candidate in accuracy, AUC and log loss, paired on the same rows: both
    are `modules.verdict.evaluation.Scores` (labels and probabilities) of one split."""
    if not np.array_equal(teacher.labels, candidate.labels):
        raise ValueError("the teacher and the candidate were scored on different rows")
    return paired_differences(teacher.labels, teacher.probabilities, candidate.probabilities,
                              seed=seed, resamples=resamples)


def budget_left(drops: Mapping[str, Difference], budget: Blessing) -> float:
    """The share of the blessing budget a model leaves on its tighter criterion, from its
    drops from the teacher (teacher minus model, "accuracy" and "auc"): 1 when it matches
    the teacher, 0 where the Evaluator's rule would start refusing it, negative beyond.

    The Evaluator refuses a drop only when its interval's low end exceeds the budget, so the
    budget a step aims at is widened by the drop's noise (estimate - low): a share of
    (budget + noise). Without noise this is (budget - drop) / budget."""
    def share(drop: Difference, budget: float) -> float:
        allowed = budget + max(0.0, drop.estimate - drop.low)
        if allowed > 0:
            return (allowed - drop.estimate) / allowed
        return 1.0 if drop.estimate <= 0 else float("-inf")

    return float(min(share(drops["auc"], budget.max_auc_drop),
                     share(drops["accuracy"], budget.max_accuracy_drop)))


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What the verdict on one candidate rests on, all on the same test rows."""
    metrics: Mapping[str, float]  # the candidate's "accuracy", "auc", "log_loss"
    vs_teacher: Mapping[str, Difference]  # teacher minus candidate: "accuracy", "auc"
    vs_trivial: Difference  # the trivial model's log loss minus the candidate's
    trivial_log_loss: float
    rows: int  # test rows
    vs_baseline: Optional[Mapping[str, Difference]] = None  # last blessed minus candidate


def evidence(labels: np.ndarray, candidate: np.ndarray, teacher: np.ndarray,
             train_counts: Sequence[int], *, metrics: Mapping[str, float], seed: int,
             baseline: Optional[np.ndarray] = None,
             resamples: int = intervals.RESAMPLES) -> Evidence:
    """The `Evidence` on a candidate from the class probabilities of it, the teacher and
    (optionally) the last blessed model on the same test rows (`labels`), with the training
    split's rows per class for the trivial model; `metrics` are the candidate's on those
    rows. Every difference is paired: one bootstrap, the same resampled rows for all."""
    models = {"candidate": candidate, "teacher": teacher,
              "trivial": trivial_probabilities(train_counts, len(labels))}
    if baseline is not None:
        models["baseline"] = baseline
    _, differences = intervals.bootstrap(
        labels, models, evidence_pairs("candidate", baseline is not None), seed=seed,
        resamples=resamples)
    return evidence_from(differences, "candidate", metrics=metrics, rows=len(labels),
                         with_baseline=baseline is not None)


def evidence_pairs(candidate: str, with_baseline: bool) -> List[Tuple[str, str]]:
    """The pairs of `intervals.bootstrap` that `evidence_from` reads: the teacher, the
    trivial model ("trivial") and, optionally, the last blessed model ("baseline"), each
    against `candidate`."""
    return [("teacher", candidate), ("trivial", candidate),
            *([("baseline", candidate)] if with_baseline else [])]


def evidence_from(differences: Mapping[Tuple[str, str], Mapping[str, Mapping[str, float]]],
                  candidate: str, *, metrics: Mapping[str, float], rows: int,
                  with_baseline: bool) -> Evidence:
    """The `Evidence` on `candidate` from a bootstrap's paired differences that hold
    `evidence_pairs(candidate, with_baseline)`: a caller that bootstraps every candidate
    at once (the Evaluator) judges the deployable one from the same resamples."""
    def paired(first: str, metric: str) -> Difference:
        return Difference(**differences[(first, candidate)][metric])

    gain = paired("trivial", "log_loss")
    return Evidence(
        metrics=dict(metrics), vs_teacher={m: paired("teacher", m) for m in ("accuracy", "auc")},
        vs_trivial=gain, trivial_log_loss=metrics["log_loss"] + gain.estimate, rows=rows,
        vs_baseline=({m: paired("baseline", m) for m in ("accuracy", "auc")}
                     if with_baseline else None))


def _within_budget(what: str, drop: Difference, budget: float, flag: str,
                   rows: int) -> Tuple[bool, str]:
    """The rule for one drop from the teacher, and its line of the verdict."""
    small = (f"; the test split ({rows} rows) is small: the interval is wider than the "
             f"budget" if drop.high - drop.low > 2 * budget else "")
    if drop.estimate <= budget + _EPSILON:
        return True, f"{what} drop from the teacher {drop.text()} <= {flag} {budget:.4f}{small}"
    if drop.low <= budget + _EPSILON:
        return True, (f"{what} drop from the teacher {drop.text()} exceeds {flag} "
                      f"{budget:.4f}, but not beyond noise (its interval reaches the budget)"
                      f"{small}; more test rows would tell")
    return False, (f"{what} drop from the teacher {drop.text()} > {flag} {budget:.4f} beyond "
                   f"noise (the whole interval is above it)")


def decide(evidence: Evidence, budget: Blessing, *, num_classes: int,
           noise_tolerance: float = NOISE_TOLERANCE) -> Tuple[bool, List[str]]:
    """(blessed, reasons): blessed only if every criterion holds (see the module docstring)
    with the thresholds of `budget` (--min-auc, --max-auc-drop, --max-accuracy-drop); one
    reason per criterion, "ok: ..." or "FAILED: ..."."""
    min_auc = budget.min_auc
    name = auc_name(num_classes)
    metrics, gain = evidence.metrics, evidence.vs_trivial
    useful = gain.low > 0
    checks = [(useful, (
        f"log loss {metrics['log_loss']:.4f} vs {evidence.trivial_log_loss:.4f} for "
        f"predicting the training class frequencies: improvement {gain.text()}"
        + ("" if useful else ", not above 0 beyond noise: the model is not shown to know "
                             "more than the class balance")))]
    if min_auc is not None:
        ok = metrics["auc"] >= min_auc - _EPSILON
        checks.append((ok, f"{name} {metrics['auc']:.4f} {'>=' if ok else '<'} --min-auc "
                           f"{min_auc:.4f}"))
    checks.append(_within_budget(name, evidence.vs_teacher["auc"], budget.max_auc_drop,
                                 "--max-auc-drop", evidence.rows))
    checks.append(_within_budget("accuracy", evidence.vs_teacher["accuracy"],
                                 budget.max_accuracy_drop, "--max-accuracy-drop",
                                 evidence.rows))
    if evidence.vs_baseline is None:
        checks.append((True, "no previously blessed model: this is the first baseline"))
    else:
        worse = [what for what, key in ((name, "auc"), ("accuracy", "accuracy"))
                 if evidence.vs_baseline[key].low > noise_tolerance]
        lead = ", ".join(f"{what} {evidence.vs_baseline[key].text()}" for what, key in
                         ((name, "auc"), ("accuracy", "accuracy")))
        checks.append((not worse, f"last blessed model minus this one on these test rows: "
                                  f"{lead}: " + (f"worse beyond noise in {', '.join(worse)}"
                                                 if worse else "not worse beyond noise")))
    return all(ok for ok, _ in checks), [("ok: " if ok else "FAILED: ") + text
                                         for ok, text in checks]
