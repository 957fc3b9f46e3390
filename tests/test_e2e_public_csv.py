"""End-to-end runs of the whole pipeline (--quick) on small public CSVs other than the taxi
data: R's write.csv output and a multi-class text label. Neither needs the shared baseline, so
pytest-xdist can run this file while the other worker makes it (conftest.baseline). Their
checks concern the data's reading, the deployed int8 model and the distillation's outcome:
they run with LEAN settings (no Tuner, one distillation setting, int8 only)."""
import json
import os

import pytest

from csv_samples import r_style_csv, sklearn_csv
from pipeline_runs import LEAN, run_cli, summary, versions

pytestmark = pytest.mark.e2e


def test_r_exported_public_csv_gets_a_sound_deployed_model(tmp_path):
    """scikit-learn's breast cancer set as R's write.csv writes it (569 rows, CRLF, quoted
    text, NA in numeric columns, in a text column and in 3 labels): the run reads the
    markers as missing values, drops and counts the unlabeled rows, and the teacher is
    accurate (0.67 while batch normalization served stale statistics) with the deployed
    model within 0.02 of it."""
    csv, label = r_style_csv("breast_cancer", str(tmp_path))
    output = tmp_path / "out"
    result = run_cli("--data", csv, "--label", label, "--output", str(output), "--quick",
                     *LEAN)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = summary(str(output))
    teacher = report["candidates"]["teacher"]
    deployed = report["candidates"][report["deployable"]]
    assert teacher["accuracy"] >= 0.9, teacher
    assert deployed["accuracy"] >= teacher["accuracy"] - 0.02, (deployed, teacher)
    assert report["rows"]["dropped_missing_label"] == 3
    assert report["missing_values"]["site"] == 189 and report["missing_values"][label] == 3
    assert sum(report["missing_values"].values()) > 200  # ~2% of 30 x 569 numeric cells too
    assert any("class frequencies" in reason for reason in report["reasons"])
    assert report["distillation"]["winner"] in ("distilled", "scratch")
    for line in ("Missing values", "Student size search", "Pruning"):
        assert line in result.stdout


def test_multi_class_string_label(tmp_path):
    """A text label with three classes (scikit-learn's wine set, 2% of the cells empty):
    macro metrics, every candidate, a pushed model whose contract lists the classes."""
    csv, label = sklearn_csv("wine", str(tmp_path))
    output = tmp_path / "out"
    result = run_cli("--data", csv, "--label", label, "--output", str(output), "--quick",
                     *LEAN, "--min-auc", "0.5", "--max-auc-drop", "0.2",
                     "--max-accuracy-drop", "0.2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = summary(str(output))
    assert 0.9 < report["candidates"]["int8"]["auc"] <= 1.0
    assert any(r.startswith("ok: macro ROC AUC 0.") for r in report["reasons"])
    [version] = versions(str(output))
    contract = json.load(open(os.path.join(version, "contract.json")))
    assert contract["output"]["classes"] == ["class_0", "class_1", "class_2"]
    vector = json.load(open(os.path.join(version, "vector", "contract.json")))
    assert vector["output"]["shape"][-1] == len(vector["classes"]) == 3
