"""Fault injection: interruption, odd input, regressions and concurrent runs never lose work
or reach serving. Whole-pipeline runs on small data with --quick."""
import fcntl
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from csv_samples import small_taxi_csv, taxi_rows, write_csv
from test_e2e import latest_states, quick_args, run_cli, versions

pytestmark = pytest.mark.e2e
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def summary(output):
    return json.load(open(os.path.join(output, "report", "summary.json")))


def complete_executions_have_outputs(output):
    import modules  # noqa: F401
    from pipeline import metadata
    from ml_metadata.proto import metadata_store_pb2

    store = metadata.open_store(os.path.join(output, "metadata.sqlite"))
    for execution in store.get_executions():
        if execution.last_known_state != metadata_store_pb2.Execution.COMPLETE:
            continue
        record = metadata.execution_record(store, execution)
        for artifacts in record.outputs.values():
            for artifact in artifacts:
                assert os.path.exists(artifact.uri), (record.component_id, artifact.uri)
    return True


def test_killed_training_resumes_from_its_checkpoint(tmp_path):
    """SIGKILL while the Trainer trains; the rerun reuses every finished component, continues
    training from the last checkpoint, and nothing of the killed run reaches serving."""
    output = tmp_path / "out"
    args = ["--output", str(output), "--quick", "--tuner", "none", "--epochs", "40"]
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "local_runner.py"), *args],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 600
    checkpoints = []
    while time.time() < deadline and process.poll() is None:
        checkpoints = glob.glob(str(output / "work" / "trainer" / "*" / "ckpt-3.index"))
        if checkpoints:
            break
        time.sleep(0.2)
    assert checkpoints, "the Trainer never wrote its third checkpoint"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not versions(str(output))

    result = run_cli(*args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    states = latest_states(str(output))
    for component in ("CsvExampleGen", "StatisticsGen", "SchemaGen", "DataValidator"):
        assert states[component] == "cached"
    assert states["Trainer"] == "complete"
    model_run = max(glob.glob(str(output / "pipeline_root" / "Trainer" / "model_run" / "*")),
                    key=lambda path: int(os.path.basename(path)))  # the rerun's execution
    epochs = [json.loads(line)["epoch"] for line in open(os.path.join(model_run,
                                                                       "metrics.jsonl"))]
    assert epochs[0] >= 4, f"training restarted from zero: epochs {epochs}"
    assert complete_executions_have_outputs(str(output))
    assert len(versions(str(output))) == 1


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    return small_taxi_csv(str(tmp_path_factory.mktemp("reliability")), rows=2500)


def test_worse_candidate_is_not_pushed_and_says_why(small_csv, tmp_path):
    output = tmp_path / "out"
    first = run_cli(*quick_args(small_csv, output, "--tuner", "none"))
    assert first.returncode == 0, first.stderr[-3000:]
    [version] = versions(str(output))
    before = sorted(os.listdir(version))
    worse = run_cli(*quick_args(small_csv, output, "--tuner", "none", "--student-units", "1",
                                "--sparsity", "0.95"), "--min-auc", "0", "--max-auc-drop", "1")
    assert worse.returncode == 0, worse.stderr[-3000:]
    report = summary(str(output))
    assert report["blessed"] is False and report["pushed_to"] is None
    assert any(r.startswith("FAILED") and "worse" in r for r in report["reasons"])
    assert versions(str(output)) == [version] and sorted(os.listdir(version)) == before
    assert "not blessed" in worse.stdout


def test_second_run_on_the_same_output_is_refused(small_csv, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    with open(output / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("pid 12345")
        lock.flush()
        result = run_cli(*quick_args(small_csv, output))
    assert result.returncode == 2
    [line] = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert "another run" in line and str(output) in line
    assert not (output / "metadata.sqlite").exists()


def test_no_cache_rerun_with_the_same_seed_reproduces_the_metrics(small_csv, tmp_path):
    """Tolerance: 0.002 ROC AUC per candidate (CPU thread scheduling may reorder float sums)."""
    output = tmp_path / "out"
    args = quick_args(small_csv, output, "--tuner", "none", "--seed", "7")
    assert run_cli(*args).returncode == 0
    first = summary(str(output))["candidates"]
    rerun = run_cli(*args, "--no-cache")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert set(latest_states(str(output)).values()) == {"complete"}
    second = summary(str(output))["candidates"]
    for name in first:
        assert abs(first[name]["auc"] - second[name]["auc"]) <= 0.002, name


def test_odd_but_valid_input_is_handled_and_counted(tmp_path):
    """Empty fields are missing values, non-ASCII categories are categories, rows without a
    label are dropped and counted in the report."""
    header, rows = taxi_rows(2500)
    company, fare, label = header.index("company"), header.index("fare"), header.index(
        "big_tipper")
    for i, row in enumerate(rows):
        if i % 7 == 0:
            row[company] = "Taxi Élite Ünïcode 出租车"
        if i % 11 == 0:
            row[fare] = ""
    for row in rows[:20]:
        row[label] = ""
    csv = write_csv(str(tmp_path / "odd.csv"), header, rows)
    output = tmp_path / "out"
    result = run_cli(*quick_args(csv, output, "--tuner", "none"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = summary(str(output))
    assert report["rows"]["dropped_missing_label"] == 20
    assert report["rows"]["train_rows"] + report["rows"]["eval_rows"] == 2480
    contracts = glob.glob(str(output / "serving" / "*" / "contract.json"))
    vocabulary = [slot for slot in json.load(open(contracts[0]))["features"]
                  if slot["feature"] == "company"][0]["vocabulary"]
    assert "Taxi Élite Ünïcode 出租车" in vocabulary
