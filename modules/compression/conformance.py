"""The conformance kit pushed with the deployable model: golden rows as raw CSV text and the
probabilities the SavedModel's `serving_raw` signature gives them.

A device team runs its own integration on `golden_rows.csv` and compares with
`golden_probabilities.csv` (the reference consumer does it with `python -m modules.edge
predict`). The rows cover what breaks hand-written preprocessing: a validation row of every
class, every value missing, unseen categories, and values far above and below the training
range. The int8 model is not the float SavedModel: a conforming integration gives
probabilities within `TOLERANCE` of the kit's (the contract records the Quantizer's own
largest difference).
"""
import csv
import io
import math
import os
from typing import Dict, List

import numpy as np
import tensorflow as tf

from modules import edge, fileio
from modules.models import export
from modules.reading.preprocessing import FeaturePreprocessor
from modules.verdict import candidates

TOLERANCE = 0.01  # |probability difference| a conforming integration stays within
CASE = "case"  # the kit's first column: what the row tests (consumers ignore it)


def golden_rows(validation, inputs: edge.RawInputs,
                preprocessor: FeaturePreprocessor) -> Dict[str, List[str]]:
    """The kit's rows as CSV text, column by column ({CASE: [...], column: [...]}), from the
    first validation rows (`training.RawRows`) of each class."""
    first: Dict[int, Dict[str, object]] = {}
    for columns, targets in validation.blocks():
        for i, label in enumerate(targets["label"]):
            first.setdefault(int(label), {n: v[i] for n, v in columns.items()})
        if len(first) == len(inputs.classes):
            break
    rows = [(f"a validation row of class {inputs.classes[c]}", first[c]) for c in sorted(first)]
    base = rows[0][1]
    ranges = {s["name"]: (s["edges"][0], s["edges"][-1]) for s in preprocessor.numeric}
    codes = {s["name"]: int(s["vocabulary"][-1]) for s in preprocessor.categorical
             if s["source"] == "numeric"}
    rows.append(("every value missing", {n: float("nan") if n in inputs.numbers else b""
                                         for n in inputs.columns}))
    rows.append(("categories never seen in training", {
        **base, **{n: codes[n] + 1000 for n in codes},
        **{n: "<never seen in training>".encode() for n in inputs.ids}}))
    for case, sign in (("far above", 1), ("far below", -1)):
        far = {n: (high if sign > 0 else low) + sign * 1000 * (high - low + 1)
               for n, (low, high) in ranges.items()}
        rows.append((f"numbers {case} the training range", {**base, **far}))
    text = {CASE: [case for case, _ in rows]}
    for name in inputs.columns:
        text[name] = [_csv_value(row[name]) for _, row in rows]
    return text


def _csv_value(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    value = float(value)
    if math.isnan(value):
        return ""
    return str(int(value)) if value.is_integer() and abs(value) < 2 ** 53 else repr(value)


def serving_raw(source: export.ExportedModel, columns: Dict[str, List[str]],
                inputs: edge.RawInputs) -> np.ndarray:
    """The `serving_raw` probabilities of `source` (the model the TFLite files were converted
    from) for rows given as CSV text: its preprocessor and core in this process, the very
    computation its SavedModel's signature holds (identical figures on attrition's kit, in
    0.14 s against 2.2 s for loading the SavedModel, once per mode)."""
    canonical = {n: tf.constant(edge.numbers_of(columns[n], n)) for n in inputs.numbers}
    canonical.update({n: tf.constant([edge.category(v) for v in columns[n]])
                      for n in inputs.ids})
    return source.serve_raw(canonical)["probabilities"].numpy()


def write_kit(folder: str, golden: Dict[str, List[str]], model: edge.RawModel,
              source: export.ExportedModel) -> Dict[str, object]:
    """Writes the kit's two files to `folder`; returns the contract's description of it."""
    expected = serving_raw(source, golden, model.inputs)
    got = model.probabilities(golden)
    difference = float(np.max(np.abs(got - expected)))
    _write_csv(os.path.join(folder, candidates.GOLDEN_ROWS_FILE), golden)
    _write_csv(os.path.join(folder, candidates.GOLDEN_PROBABILITIES_FILE),
               {name: [repr(float(p)) for p in expected[:, j]]
                for j, name in enumerate(model.inputs.classes)})
    return {"rows": candidates.GOLDEN_ROWS_FILE,
            "probabilities": candidates.GOLDEN_PROBABILITIES_FILE,
            "cases": golden[CASE], "tolerance": TOLERANCE,
            "max_abs_difference": difference}


def _write_csv(path: str, columns: Dict[str, List[str]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(zip(*columns.values()))
    fileio.write_text(path, out.getvalue())
