"""The run report: the terminal table and an HTML page that a real browser renders."""
import shutil
import subprocess

import pytest

from pipeline import report

CANDIDATE = {"auc": 0.95, "accuracy": 0.9, "precision": 0.7, "recall": 0.9, "log_loss": 0.23,
             "params": 5714, "size_bytes": 8064, "gzip_bytes": 2901, "latency_ms_p50": 0.012}


def summary():
    candidates = {name: dict(CANDIDATE, gzip_bytes=CANDIDATE["gzip_bytes"] * (i + 1))
                  for i, name in enumerate(("teacher", "student_scratch", "student", "pruned",
                                            "int8"))}
    return {
        "candidates": candidates, "deployable": "int8", "blessed": False,
        "reasons": ["ok: AUC 0.95 >= --min-auc 0.9", "FAILED: AUC <b>worse</b>"],
        "pushed_to": None, "timings_s": {"Trainer": 12.0, "Pusher": 0.0},
        "states": {"Trainer": "complete", "Pusher": "cached"}, "baseline": None,
        "slices": {"teacher": {"overall": {"examples": 3000, "auc": 0.95, "accuracy": 0.9},
                               "payment_type=Cash": {"examples": 10, "auc": None}}},
        "rows": {"train_rows": 12000, "validation_rows": 3000, "test_rows": 3000},
        "sparsity": None, "test_rows": 3000, "split": "test",
        "interval": {"level": 0.95, "resamples": 1000, "method": "percentile bootstrap"},
        "trivial_model": {"log_loss": 0.5401, "class_frequencies": [0.75, 0.25]},
        "histories": {"teacher": {"val_auc": [0.9, 0.95], "loss": [0.4, 0.3]}},
        "tuner_trials": [{"trial_id": "0", "score": 0.94, "epochs_trained": 1},
                         {"trial_id": "1", "score": 0.95, "epochs_trained": 3}],
    }


def test_terminal_table_lists_every_candidate_and_the_verdict():
    text = report.terminal_text(summary())
    for name in ("teacher", "student_scratch", "student", "pruned", "int8"):
        assert name in text
    assert "NOT blessed" in text and "Pushed to: nothing pushed" in text
    assert text.splitlines()[-1] == "Cached (not run again): Pusher"  # times: on the steps


def test_every_figure_shows_its_interval_and_drops_are_paired():
    data = summary()
    data["candidates"]["int8"].update(auc_ci=[0.941, 0.958], accuracy_ci=[0.889, 0.912],
                                      log_loss_ci=[0.21, 0.25], accuracy_drop=0.004,
                                      accuracy_drop_ci=[-0.003, 0.011], auc_drop=0.001,
                                      auc_drop_ci=[-0.002, 0.004])
    text = report.terminal_text(data)
    assert "0.9500 (0.941-0.958)" in text and "0.9000 (0.889-0.912)" in text
    assert "On the test split (3,000 rows" in text and "log loss 0.5401" in text
    assert "+0.0040 (-0.003-+0.011)" in text  # the paired drop, in the terminal too
    page = report.render_html(data)
    assert "+0.0040 (-0.003-+0.011)" in page and "Candidates (test split)" in page


def test_html_escapes_text_and_embeds_three_plots():
    page = report.render_html(summary())
    assert "<b>worse</b>" not in page and "&lt;b&gt;worse&lt;/b&gt;" in page
    assert page.count("data:image/png;base64") == 3


def test_html_renders_in_headless_chromium_without_errors(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium)")
    page = tmp_path / "index.html"
    page.write_text(report.render_html(summary()).replace(
        "</body>", "<script>window.onload=function(){var bad=[].filter.call("
        "document.images,function(i){return !(i.complete&&i.naturalWidth>0)});"
        "document.title='images:'+document.images.length+' broken:'+bad.length;}</script>"
        "</body>"))
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<title>images:3 broken:0</title>" in result.stdout, result.stdout[:500]
    assert "Run report" in result.stdout and "student_scratch" in result.stdout
    console_errors = [line for line in result.stderr.splitlines()
                      if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]
    assert not console_errors, console_errors


def test_column_report_has_a_line_per_role_and_flags_numbers_read_as_text():
    data = summary()
    data["columns"] = [
        {"name": "churned", "type": "string", "role": "label", "values": 90, "missing": 0,
         "min": None, "max": None, "distinct": 2},
        {"name": "income", "type": "float", "role": "numeric", "values": 88, "missing": 2,
         "min": 0.5, "max": 129000.0, "distinct": None},
        {"name": "plan", "type": "string", "role": "categorical", "values": 90, "missing": 0,
         "min": None, "max": None, "distinct": 3, "vocabulary": 3, "why": None},
        {"name": "zip", "type": "string", "role": "categorical", "values": 90, "missing": 0,
         "min": 1000.0, "max": 9999.0, "distinct": 60, "vocabulary": 12, "why": None,
         "flag": "read as text, but 85 of its 90 values are numbers"},
        {"name": "hour", "type": "int", "role": "categorical", "values": 90, "missing": 0,
         "min": 0.0, "max": 23.0, "distinct": 24, "vocabulary": 24, "why": "integer codes"},
        {"name": "customer", "type": "string", "role": "left out", "values": 90, "missing": 0,
         "min": None, "max": None, "distinct": 90, "why": "text with 90 different values"}]
    text = report.terminal_text(data)
    assert "  label: churned\n  numeric 1: income\n" in text
    assert "  categorical 3: plan (3 values), zip (60 values), hour (24 codes)\n" in text
    assert "  left out 1: customer (text with 90 different values)\n" in text
    assert "  flagged: zip read as text, but 85 of its 90 values are numbers" in text
    page = report.render_html(data)
    assert "<td>0.5 to 129000</td>" in page and "Columns (every row of the CSV)" in page
