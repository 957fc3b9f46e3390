"""Whether the deployable candidate may be pushed, with a reason for every criterion."""
from typing import Dict, List, Optional, Tuple

# Reruns with the same seed can differ in the last digits of the AUC; a drop this small
# against the last blessed model is noise, not a regression.
NOISE_TOLERANCE = 1e-3
_EPSILON = 1e-9  # float rounding: 0.90 - 0.85 is 0.05000000000000004


def auc_name(num_classes: int) -> str:
    """What "AUC" means in the metrics: one-vs-rest macro average beyond two classes."""
    return "ROC AUC" if num_classes <= 2 else "macro ROC AUC"


def majority_rate(train_counts, eval_counts) -> Tuple[int, float]:
    """(class, accuracy on eval) of always predicting the training split's commonest class,
    from the rows per class of each split: the accuracy any useful model must beat."""
    train_counts, eval_counts = list(train_counts), list(eval_counts)
    majority = max(range(len(train_counts)), key=lambda k: (train_counts[k], -k))
    total = sum(eval_counts)
    return majority, (eval_counts[majority] / total if total else 0.0)


def budget_left(metrics: Dict[str, float], teacher: Dict[str, float], max_auc_drop: float,
                max_accuracy_drop: float) -> float:
    """The share of the blessing budget a model leaves on its tighter criterion: 1 when it
    matches the teacher's accuracy and AUC, 0 at the edge of the budget, negative beyond.
    The compression steps use it to stay within the budget the Evaluator will apply."""
    def share(drop, budget):
        if budget > 0:
            return (budget - drop) / budget
        return 1.0 if drop <= 0 else float("-inf")

    return float(min(share(teacher["auc"] - metrics["auc"], max_auc_drop),
                     share(teacher["accuracy"] - metrics["accuracy"], max_accuracy_drop)))


def decide(candidate: Dict[str, float], teacher: Dict[str, float],
           baseline: Optional[Dict[str, float]], *, majority_accuracy: float,
           num_classes: int, min_auc: float, max_auc_drop: float, max_accuracy_drop: float,
           noise_tolerance: float = NOISE_TOLERANCE) -> Tuple[bool, List[str]]:
    """(blessed, reasons): blessed only if every criterion holds. `candidate`, `teacher` and
    `baseline` hold "auc" and "accuracy" on the same eval split.

    (a) AUC >= min_auc; (b) teacher AUC - AUC <= max_auc_drop; (c) teacher accuracy -
    accuracy <= max_accuracy_drop; (d) accuracy > the majority-class rate, whatever the AUC;
    (e) AUC >= the last blessed model's AUC - noise_tolerance, when one exists.
    """
    auc, accuracy = candidate["auc"], candidate["accuracy"]
    name = auc_name(num_classes)
    auc_drop = teacher["auc"] - auc
    accuracy_drop = teacher["accuracy"] - accuracy
    checks = [
        (auc >= min_auc - _EPSILON,
         f"{name} {auc:.4f} {'>=' if auc >= min_auc - _EPSILON else '<'} --min-auc {min_auc:.4f}"),
        (auc_drop <= max_auc_drop + _EPSILON,
         f"{name} drop from the teacher {auc_drop:+.4f} "
         f"{'<=' if auc_drop <= max_auc_drop + _EPSILON else '>'} --max-auc-drop "
         f"{max_auc_drop:.4f}"),
        (accuracy_drop <= max_accuracy_drop + _EPSILON,
         f"accuracy drop from the teacher {accuracy_drop:+.4f} "
         f"{'<=' if accuracy_drop <= max_accuracy_drop + _EPSILON else '>'} "
         f"--max-accuracy-drop {max_accuracy_drop:.4f}"),
        (accuracy > majority_accuracy + _EPSILON,
         f"accuracy {accuracy:.4f} "
         f"{'>' if accuracy > majority_accuracy + _EPSILON else '<='} the majority-class rate "
         f"{majority_accuracy:.4f} (always predicting the commonest training class)"),
    ]
    if baseline is None:
        checks.append((True, "no previously blessed model: this is the first baseline"))
    else:
        ok = auc >= baseline["auc"] - noise_tolerance
        checks.append((ok, f"{name} {auc:.4f} vs last blessed model's {baseline['auc']:.4f} "
                           f"on this eval split: {'not worse' if ok else 'worse'}"
                           f" (tolerance {noise_tolerance})"))
    return all(ok for ok, _ in checks), [("ok: " if ok else "FAILED: ") + text
                                         for ok, text in checks]
