"""Executes a compiled pipeline.json on this machine the way the Kubeflow Pipelines v2
backend runs it: a check of what a cluster would run, not a second orchestrator.

For each task, in dependency order (`dependentTasks`), as KFP builds and runs it (written
from TFX's tfx/orchestration/kubeflow/v2/container/kubeflow_v2_run_executor.py and
file_based_example_gen/driver.py, which read what is built here, and from KFP's own local
runner, sdk/python/kfp/local/executor_input_utils.py, which builds it as the backend does):
- an `ExecutorInput` (kfp.pipeline_spec.pipeline_spec_pb2) is built from the task spec:
  constant parameters (`runtimeValue.constant`) into `inputs.parameterValues`; input
  artifacts from the producing task's executor output (uri and metadata, e.g. split_names)
  with the type schema of the component's input definition; one output artifact per output
  definition at `<task root>/<output key>` with empty metadata, and
  `outputs.outputFile` `<task root>/executor_output.json`; integer parameters as integers;
- the executor's container (and its `lifecycle.preCacheCheck` driver first, as
  CsvExampleGen's has) runs its `command` + `args` with `{{$}}` replaced by that JSON, in a
  subprocess with the environment the Dockerfile sets; this venv's Python stands in for the
  image's;
- the `ExecutorOutput` it writes (TFX's kubeflow_v2_run_executor) is read back: its
  artifacts replace the task's outputs, as the launcher records them.
Resolver tasks are run by the backend itself, and the open-source backend cannot run them:
they are refused, naming the flag that compiles without them.
"""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from typing import Any, Dict, List, Optional

from kfp.pipeline_spec import pipeline_spec_pb2
from google.protobuf import json_format

from modules.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the Dockerfile's runtime stage sets (PATH aside: this venv's Python is used).
IMAGE_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


class DryRunError(UserError):
    """The compiled pipeline cannot run as the backend would run it."""


@dataclasses.dataclass
class TaskRun:
    name: str
    seconds: float
    outputs: Dict[str, List[Dict[str, Any]]]  # output key -> RuntimeArtifacts as JSON dicts
    log_path: str
    parameters: Dict[str, Any]  # the task's parameterValues (its execution properties)


def task_order(tasks: Dict[str, Any]) -> List[str]:
    """The tasks so that each comes after every task in its `dependentTasks`."""
    order: List[str] = []
    pending = dict(tasks)
    while pending:
        ready = sorted(name for name, task in pending.items()
                       if set(task.get("dependentTasks", [])) <= set(order))
        if not ready:
            raise DryRunError(f"tasks {', '.join(sorted(pending))} depend on each other")
        order += ready
        for name in ready:
            del pending[name]
    return order


def executor_input(task: Dict[str, Any], component: Dict[str, Any],
                   produced: Dict[str, TaskRun], task_root: str) -> Dict[str, Any]:
    """The ExecutorInput (as JSON) KFP's driver would give this task."""
    inputs = task.get("inputs", {})
    definitions = component.get("inputDefinitions", {}).get("artifacts", {})
    parameter_types = {key: spec.get("parameterType") for key, spec in
                       component.get("inputDefinitions", {}).get("parameters", {}).items()}
    parameter_values = {}
    for key, parameter in inputs.get("parameters", {}).items():
        if "runtimeValue" not in parameter:
            raise DryRunError(f"task {task['taskInfo']['name']}: parameter '{key}' is not a "
                              f"constant ({sorted(parameter)}); only constants are supported")
        value = parameter["runtimeValue"]["constant"]
        # JSON numbers arrive as floats; the backend hands integers as integers.
        parameter_values[key] = int(value) if parameter_types.get(key) == "NUMBER_INTEGER" \
            else value
    artifacts = {}
    for key, source in inputs.get("artifacts", {}).items():
        upstream = source["taskOutputArtifact"]
        produced_artifacts = produced[upstream["producerTask"]].outputs[
            upstream["outputArtifactKey"]]
        artifacts[key] = {"artifacts": [
            {**artifact, "type": definitions[key]["artifactType"]}
            for artifact in produced_artifacts]}
    outputs = {}
    for key, definition in component.get("outputDefinitions", {}).get("artifacts",
                                                                         {}).items():
        outputs[key] = {"artifacts": [{
            "name": f"{task_root}/{key}", "type": definition["artifactType"],
            "uri": os.path.join(task_root, key), "metadata": {}}]}
    message = {"inputs": {"parameterValues": parameter_values, "artifacts": artifacts},
               "outputs": {"artifacts": outputs,
                           "outputFile": os.path.join(task_root, "executor_output.json")}}
    json_format.ParseDict(message, pipeline_spec_pb2.ExecutorInput())  # as the backend checks
    return message


def _command(container: Dict[str, Any], invocation: str) -> List[str]:
    argv = [invocation if part == "{{$}}" else part
            for part in container["command"] + container.get("args", [])]
    unresolved = [part for part in argv if "{{$" in part]
    if unresolved:
        raise DryRunError(f"placeholder {unresolved[0][:60]} is not supported by the dry run")
    return [sys.executable if argv[0] in ("python", "python3") else argv[0], *argv[1:]]


def run_task(name: str, spec: Dict[str, Any], produced: Dict[str, TaskRun], run_root: str,
             env: Dict[str, str]) -> TaskRun:
    task = spec["root"]["dag"]["tasks"][name]
    component = spec["components"][task["componentRef"]["name"]]
    executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
    if "container" not in executor:
        kind = next(iter(executor), "?")
        raise DryRunError(f"task {name} is a {kind} task, which the open-source Kubeflow "
                          f"Pipelines backend does not run; compile with "
                          f"--no-baseline-resolver")
    task_root = os.path.join(run_root, name)
    os.makedirs(task_root, exist_ok=True)
    invocation = executor_input(task, component, produced, task_root)
    container = executor["container"]
    steps = [container["lifecycle"]["preCacheCheck"]] if "preCacheCheck" in container.get(
        "lifecycle", {}) else []
    steps.append(container)
    log_path = os.path.join(task_root, "log.txt")
    temp = os.path.join(task_root, "tmp")  # the pod's own temp folder, gone with the pod
    os.makedirs(temp, exist_ok=True)
    started = time.time()
    try:
        with open(log_path, "w") as log:
            for step in steps:
                result = subprocess.run(_command(step, json.dumps(invocation)), cwd=task_root,
                                        env={**env, "TMPDIR": temp}, stdout=log,
                                        stderr=subprocess.STDOUT)
                if result.returncode != 0:
                    raise DryRunError(f"task {name} failed (exit {result.returncode}); its "
                                      f"log: {log_path}")
    finally:  # TFX stages a 49 MB copy of itself there at every Beam task
        shutil.rmtree(temp, ignore_errors=True)
    output = pipeline_spec_pb2.ExecutorOutput()
    with open(invocation["outputs"]["outputFile"]) as f:
        json_format.Parse(f.read(), output, ignore_unknown_fields=True)
    outputs = {key: value["artifacts"] for key, value in invocation["outputs"]["artifacts"].items()}
    for key, artifacts in output.artifacts.items():  # what the executor recorded wins
        artifact_type = outputs[key][0]["type"]  # the launcher keeps the task spec's type
        outputs[key] = [{**json_format.MessageToDict(a), "type": artifact_type}
                        for a in artifacts.artifacts]
    return TaskRun(name, time.time() - started, outputs, log_path,
                   invocation["inputs"]["parameterValues"])


def execute(pipeline_json: str, run_root: Optional[str] = None,
            echo=print) -> Dict[str, TaskRun]:
    """Runs every task of the compiled PipelineJob; returns what each produced."""
    with open(pipeline_json) as f:
        job = json.load(f)
    spec = job["pipelineSpec"]
    root = job.get("runtimeConfig", {}).get("gcsOutputDirectory") or spec["defaultPipelineRoot"]
    run_root = run_root or os.path.join(root, spec["pipelineInfo"]["name"],
                                        f"dry-run-{uuid.uuid4().hex[:8]}")
    env = {**os.environ, **IMAGE_ENV,
           "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    produced: Dict[str, TaskRun] = {}
    for name in task_order(spec["root"]["dag"]["tasks"]):
        echo(f"[{time.strftime('%H:%M:%S')}] {name} running")
        produced[name] = run_task(name, spec, produced, run_root, env)
        echo(f"[{time.strftime('%H:%M:%S')}] {name} complete in {produced[name].seconds:.1f} s")
    return produced


def execution_records(runs: Dict[str, TaskRun]):
    """pipeline.metadata.ExecutionRecord per task, its output artifacts parsed by TFX's own
    entrypoint code (properties such as split_names, custom properties such as
    pushed_destination), so pipeline.report summarizes a dry run as it does a local one."""
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils

    from pipeline import metadata

    records = []
    for name, run in runs.items():
        execution = metadata_store_pb2.Execution()
        for key, value in run.parameters.items():  # as the launcher records them in MLMD
            field = ("int_value" if isinstance(value, int) else
                     "double_value" if isinstance(value, float) else "string_value")
            setattr(execution.custom_properties[key], field, value)
        artifact_lists = {key: json_format.ParseDict({"artifacts": artifacts},
                                                     pipeline_spec_pb2.ArtifactList())
                          for key, artifacts in run.outputs.items()}
        parsed = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(artifact_lists, {})
        records.append(metadata.ExecutionRecord(
            name, "complete", run.seconds, execution, {},
            {key: [a.mlmd_artifact for a in artifacts] for key, artifacts in parsed.items()}))
    return records
