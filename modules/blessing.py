"""Whether the deployable candidate may be pushed, with a reason for every criterion."""
from typing import List, Optional, Tuple

# Reruns with the same seed can differ in the last digits of the AUC; a drop this small
# against the last blessed model is noise, not a regression.
NOISE_TOLERANCE = 1e-3
_EPSILON = 1e-9  # float rounding: 0.90 - 0.85 is 0.05000000000000004

def decide(candidate_auc: float, teacher_auc: float, baseline_auc: Optional[float], *,
           min_auc: float, max_auc_drop: float,
           noise_tolerance: float = NOISE_TOLERANCE) -> Tuple[bool, List[str]]:
    """(blessed, reasons): blessed only if every criterion holds.

    (a) candidate_auc >= min_auc; (b) teacher_auc - candidate_auc <= max_auc_drop;
    (c) candidate_auc >= baseline_auc - noise_tolerance, when a blessed baseline exists.
    """
    drop = teacher_auc - candidate_auc
    drop_ok = drop <= max_auc_drop + _EPSILON
    checks = [
        (candidate_auc >= min_auc,
         f"AUC {candidate_auc:.4f} {'>=' if candidate_auc >= min_auc else '<'} "
         f"--min-auc {min_auc:.4f}"),
        (drop_ok, f"AUC drop from the teacher {drop:+.4f} {'<=' if drop_ok else '>'} "
                  f"--max-auc-drop {max_auc_drop:.4f}"),
    ]
    if baseline_auc is None:
        checks.append((True, "no previously blessed model: this is the first baseline"))
    else:
        ok = candidate_auc >= baseline_auc - noise_tolerance
        checks.append((ok, f"AUC {candidate_auc:.4f} vs last blessed model's {baseline_auc:.4f} "
                           f"on this eval split: {'not worse' if ok else 'worse'}"
                           f" (tolerance {noise_tolerance})"))
    return all(ok for ok, _ in checks), [("ok: " if ok else "FAILED: ") + text
                                         for ok, text in checks]

