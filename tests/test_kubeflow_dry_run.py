"""kubeflow_runner.py --dry-run: the compiled pipeline.json executed task by task as the
Kubeflow Pipelines v2 backend runs it (container command, ExecutorInput, executor output)."""
import json
import os
import re
import subprocess
import sys

import pytest

from pipeline_runs import PUSHED_FILES, ROOT, summary, versions

pytestmark = pytest.mark.e2e
IMAGE = "registry.example.com/tfx-compress:test"


def _files(folder):
    """Relative paths under `folder`; TensorBoard event files are named by time and host, and
    the trees' files (YDF's model in TF Decision Forests' assets) by a random model id."""
    names = set()
    for directory, _, files in os.walk(folder):
        for name in files:
            path = os.path.relpath(os.path.join(directory, name), folder)
            path = re.sub(r"events\.out\.tfevents\..*", "events.out.tfevents.*", path)
            names.add(re.sub(r"assets/[0-9a-f]{8}_", "assets/<model id>_", path))
    return names


@pytest.fixture(scope="module")
def dry_run(baseline, tmp_path_factory):
    """The baseline's data and flags, compiled and dry-run."""
    directory = tmp_path_factory.mktemp("dry_run")
    args = ["--image", IMAGE, "--pipeline-root", str(directory / "root"),
            "--data-root", os.path.dirname(baseline.csv), "--output-dir", str(directory / "spec"),
            "--dry-run", str(directory / "run"), "--drop", "tips",
            "--quick", "--tuner", "random", "--trials", "1", "--min-auc", "0.6",
            "--max-auc-drop", "0.05"]
    temp = directory / "system_temp"  # the dry run's system temp folder: left empty
    temp.mkdir()
    result = subprocess.run([sys.executable, os.path.join(ROOT, "kubeflow_runner.py"), *args],
                            capture_output=True, text=True, timeout=1500, cwd=ROOT,
                            env={**os.environ, "TMPDIR": str(temp)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert os.listdir(temp) == []
    return directory, result


def test_every_task_completes_and_a_model_is_pushed(dry_run):
    directory, result = dry_run
    spec = json.load(open(directory / "spec" / "pipeline.json"))["pipelineSpec"]
    for task in spec["root"]["dag"]["tasks"]:
        assert f"{task} complete in" in result.stdout, task
        assert (directory / "run" / task / "executor_output.json").is_file(), task
    [version] = versions(str(directory / "root"))
    assert sorted(os.listdir(version)) == PUSHED_FILES
    assert f"Pushed to: {version}" in result.stdout and "candidate" in result.stdout
    # The column report reads the run's label from the Evaluator's execution properties,
    # which the dry run records as KFP's launcher does.
    assert "  label: big_tipper" in result.stdout and "left out 2: trip_id (text with" in result.stdout


def test_each_component_writes_the_same_files_as_a_local_run(dry_run, baseline):
    directory, _ = dry_run
    local_root = os.path.join(baseline.output, "pipeline_root")
    compared = 0
    for task in sorted(os.listdir(directory / "run")):
        for key in sorted(os.listdir(directory / "run" / task)):
            dry = directory / "run" / task / key
            local = os.path.join(local_root, task, key)
            if not dry.is_dir() or not os.path.isdir(local):
                continue  # the task's log and executor output; the local run's extra keys
            execution = min(os.listdir(local), key=int)  # the baseline's first execution
            assert _files(dry) == _files(os.path.join(local, execution)), (task, key)
            compared += 1
    assert compared >= 15  # every output of every component


def test_a_run_without_the_cache_reproduces_the_local_runs_metrics(dry_run, baseline):
    """The same data, flags and seed, every component run afresh in its own process: every
    candidate scores as in the local run. Tolerance: 0.002 ROC AUC per candidate (CPU
    thread scheduling may reorder float sums)."""
    with baseline.locked():
        local = summary(baseline.output)["candidates"]
    directory, _ = dry_run
    dry = json.load(open(directory / "run" / "Evaluator" / "evaluation" / "report.json"))
    dry = dry["candidates"]
    assert set(dry) == set(local)
    for name in local:
        assert abs(local[name]["auc"] - dry[name]["auc"]) <= 0.002, name


def test_the_dry_run_compiles_without_the_resolver_the_open_source_backend_cannot_run(
        dry_run):
    directory, result = dry_run
    spec = json.load(open(directory / "spec" / "pipeline.json"))["pipelineSpec"]
    assert all("container" in e for e in spec["deploymentSpec"]["executors"].values())
    assert "note: --dry-run compiles without the baseline resolver" in result.stderr


def test_a_task_the_backend_runs_itself_is_refused_with_the_flag_to_use(tmp_path):
    from pipeline import kubeflow_dry_run

    spec = {"root": {"dag": {"tasks": {"resolver": {
                "componentRef": {"name": "r"}, "taskInfo": {"name": "resolver"}}}}},
            "components": {"r": {"executorLabel": "r_executor"}},
            "deploymentSpec": {"executors": {"r_executor": {"resolver": {}}}}}
    with pytest.raises(kubeflow_dry_run.DryRunError, match="--no-baseline-resolver"):
        kubeflow_dry_run.run_task("resolver", spec, {}, str(tmp_path), {})


def test_a_dry_run_of_the_default_data_drops_tips_like_the_image_run(tmp_path):
    """Without --data-root the dry run reads the taxi CSV the image carries, and like a
    cluster run it leaves out `tips`, which determines the label."""
    import kubeflow_runner

    args = kubeflow_runner.parse_args(["--image", IMAGE, "--pipeline-root",
                                       str(tmp_path / "root"), "--dry-run",
                                       str(tmp_path / "run")])
    config = kubeflow_runner.build_config(args)
    assert config.drop == ("tips",) and os.path.isdir(config.data_root)
