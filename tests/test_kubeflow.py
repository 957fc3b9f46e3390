"""kubeflow_runner.py: the same DAG compiled for Kubeflow Pipelines, checked the way the cluster
reads it (PipelineJob / PipelineSpec protos, kfp's YAML loader, the container entrypoint's own
flag parser). Compiles once per module; nothing runs in a cluster here."""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kubeflow_runner  # noqa: E402
from modules.settings import Pruning, RunSettings, Teacher, Training, Tuning
from pipeline import configs  # noqa: E402

IMAGE = "some.registry/tfx-compress:test"
PIPELINE_ROOT = "gs://some-bucket/tfx-compress"
DATA_ROOT = "gs://some-bucket/data"
BEAM_ARGS = ["--runner=DataflowRunner", "--project=some-project", "--region=europe-west1",
             "--temp_location=gs://some-bucket/tmp"]
RESOLVER = "latest_blessed_model_resolver"
# Our components (the folders under components/), by node id.
CUSTOM = {"DataValidator", "Tuner", "Distiller", "Pruner", "Quantizer", "Evaluator", "Pusher"}


def _argv(output_dir):
    return (["--image", IMAGE, "--pipeline-root", PIPELINE_ROOT, "--data-root", DATA_ROOT,
             "--output-dir", str(output_dir), "--strategy", "mirrored", "--tuner", "random",
             "--trials", "3", "--quick", "--seed", "7"]
            + [f"--beam-arg={a}" for a in BEAM_ARGS])


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kubeflow")
    try:
        assert kubeflow_runner.main(_argv(out)) == 0
    except ValueError as e:
        if "Invalid custom artifact type name" not in str(e):
            raise
        pytest.fail(f"{e}: KubeflowV2 needs a custom artifact TYPE_NAME that is an importable "
                    f"'module.Class' path, e.g. components.artifacts.JsonReport.TYPE_NAME = "
                    f"'components.JsonReport' with components/__init__.py exporting JsonReport")
    job = json.loads((out / "pipeline.json").read_text())
    config = kubeflow_runner.build_config(kubeflow_runner.parse_args(_argv(out)))
    return {"dir": out, "job": job, "spec": job["pipelineSpec"], "config": config}


def _tasks(spec):
    return spec["root"]["dag"]["tasks"]


def _executor(spec, task_name):
    label = spec["components"][_tasks(spec)[task_name]["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]


def _node_id(task_name):
    """The resolver node compiles to two tasks, <id>-model-blessing-resolver and
    <id>-model-resolver; every other node to one task named by its id."""
    return RESOLVER if task_name.startswith(RESOLVER + "-") else task_name


def _container_flags(container):
    """What the container's entrypoint parses: (its own flags, the Beam arguments)."""
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

    args = [a.replace("{{$}}", "{}") for a in container["args"]]
    return kubeflow_v2_run_executor._parse_flags(args)


def test_pipeline_json_is_a_valid_pipeline_job(compiled):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    job = json_format.ParseDict(compiled["job"], pipeline_spec_pb2.PipelineJob(),
                                ignore_unknown_fields=False)
    spec = json_format.ParseDict(compiled["spec"], pipeline_spec_pb2.PipelineSpec(),
                                 ignore_unknown_fields=False)
    assert spec.pipeline_info.name == configs.PIPELINE_NAME
    assert spec.schema_version == "2.1.0"
    assert job.runtime_config.gcs_output_directory == PIPELINE_ROOT
    assert spec.default_pipeline_root == PIPELINE_ROOT  # what pipeline.yaml carries


def test_pipeline_yaml_loads_in_kfp_and_matches_the_json(compiled):
    from kfp import components

    component = components.load_component_from_file(str(compiled["dir"] / "pipeline.yaml"))
    assert component.name == configs.PIPELINE_NAME
    with open(compiled["dir"] / "pipeline.yaml") as f:
        assert yaml.safe_load(f) == compiled["spec"]


def test_every_local_component_is_a_task_with_the_same_upstream_edges(compiled):
    from pipeline.pipeline import create_components

    local = {}
    for node in create_components(compiled["config"]):
        upstream = {n.id for n in node.upstream_nodes}  # add_upstream_node edges
        upstream |= {getattr(channel, "producer_component_id", None)
                     for channel in node.inputs.values()} - {None}  # data edges
        local[node.id] = upstream

    tasks = _tasks(compiled["spec"])
    remote = {}
    for name, task in tasks.items():
        upstream = set(task.get("dependentTasks", []))
        for artifact in task.get("inputs", {}).get("artifacts", {}).values():
            if "taskOutputArtifact" in artifact:
                upstream.add(artifact["taskOutputArtifact"]["producerTask"])
        remote.setdefault(_node_id(name), set()).update(_node_id(t) for t in upstream)
    remote[RESOLVER].discard(RESOLVER)  # its model resolver reads its blessing resolver

    assert set(remote) == set(local)
    assert remote == local
    # The ordering-only edges (no data flows) are explicit in dependentTasks too.
    for name in ("Tuner", "Trainer"):
        assert "DataValidator" in tasks[name]["dependentTasks"]


def test_every_container_runs_the_image_with_the_tfx_entrypoint(compiled):
    spec = compiled["spec"]
    containers = {name: _executor(spec, name).get("container") for name in _tasks(spec)}
    assert {n for n, c in containers.items() if c is None} == {
        f"{RESOLVER}-model-blessing-resolver", f"{RESOLVER}-model-resolver"}
    for name, container in containers.items():
        if container is None:
            continue
        assert container["image"] == IMAGE, name
        assert container["command"] == [
            "python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
        importlib.import_module(container["command"][2])
    driver = containers["CsvExampleGen"]["lifecycle"]["preCacheCheck"]
    assert driver["command"][:2] == ["python", "-m"]
    importlib.import_module(driver["command"][2])


def test_executors_resolve_to_importable_classes(compiled):
    from tfx.dsl.components.base.base_executor import BaseExecutor
    from tfx.utils import import_utils

    from pipeline.pipeline import create_components

    local = {node.id: node for node in create_components(compiled["config"])}
    spec = compiled["spec"]
    for name in _tasks(spec):
        container = _executor(spec, name).get("container")
        if container is None:
            continue
        flags, _ = _container_flags(container)
        executor = import_utils.import_class_by_path(flags.executor_class_path)  # as the pod does
        assert issubclass(executor, BaseExecutor), name
        assert executor is local[name].executor_spec.executor_class, name
        if name in CUSTOM:
            assert flags.executor_class_path.startswith("components."), flags.executor_class_path


def test_artifact_types_resolve_to_importable_classes(compiled):
    """The container rebuilds each artifact's Python type from its schema title."""
    from tfx.orchestration.kubeflow.v2 import compiler_utils
    from tfx.types.artifact import Artifact
    from tfx.utils import import_utils

    titles = set()
    for component in compiled["spec"]["components"].values():
        for section in ("inputDefinitions", "outputDefinitions"):
            for artifact in component.get(section, {}).get("artifacts", {}).values():
                schema = artifact["artifactType"]
                titles.add(schema.get("schemaTitle")
                           or yaml.safe_load(schema["instanceSchema"])["title"])
    assert any(not t.startswith("tfx.") for t in titles)  # our JsonReport
    for title in titles:
        cls = import_utils.import_class_by_path(
            compiler_utils.TITLE_TO_CLASS_PATH.get(title, title))
        assert issubclass(cls, Artifact), title
        if not title.startswith("tfx."):
            assert cls.TYPE_NAME == title  # the type recorded in ML Metadata stays the same


def test_beam_arguments_reach_the_beam_powered_components(compiled):
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.utils import import_utils

    expected = list(configs.DEFAULT_BEAM_ARGS) + BEAM_ARGS
    spec = compiled["spec"]
    beam_powered = set()
    for name in _tasks(spec):
        container = _executor(spec, name).get("container")
        if container is None:
            continue
        flags, beam_args = _container_flags(container)
        assert beam_args == expected, name  # handed to the executor as beam_pipeline_args
        if issubclass(import_utils.import_class_by_path(flags.executor_class_path),
                      BaseBeamExecutor):
            beam_powered.add(name)
    assert {"CsvExampleGen", "StatisticsGen", "Evaluator"} <= beam_powered
    driver = _executor(spec, "CsvExampleGen")["container"]["lifecycle"]["preCacheCheck"]
    assert driver["args"][-len(expected):] == expected
    options = PipelineOptions(expected).get_all_options()
    assert options["runner"] == "DataflowRunner"
    assert options["temp_location"] == "gs://some-bucket/tmp"


def test_configuration_reaches_the_components(compiled):
    tasks = _tasks(compiled["spec"])

    def parameter(task, name):
        return tasks[task]["inputs"]["parameters"][name]["runtimeValue"]["constant"]

    trainer_config = json.loads(parameter("Trainer", "custom_config"))
    settings = RunSettings.from_json(trainer_config[RunSettings.KEY])
    assert settings.work_dir == PIPELINE_ROOT + "/work"  # under the pipeline root
    assert settings.training == Training(seed=7, strategy="mirrored")
    assert settings.label == configs.DEFAULT_LABEL and settings.drop == ()
    assert Teacher.from_json(trainer_config[Teacher.KEY]).epochs == 3  # --quick
    tuning = Tuning.from_json(json.loads(parameter("Tuner", "custom_config"))[Tuning.KEY])
    assert tuning.tuner == "random" and tuning.trials == 3
    assert Pruning.from_json(parameter("Pruner", Pruning.KEY)) == Pruning(epochs=4)
    assert RunSettings.from_json(parameter("Evaluator", RunSettings.KEY)) == settings
    assert parameter("Pusher", "serving_dir") == PIPELINE_ROOT + "/serving"
    assert parameter("CsvExampleGen", "input_base") == DATA_ROOT
    assert compiled["config"].metadata is None  # the cluster's ML Metadata


def test_no_baseline_resolver_compiles_without_resolver_executors(compiled, tmp_path):
    """The open-source Kubeflow Pipelines backend rejects resolver executors ('resolver
    executors not implemented'); Vertex AI Pipelines runs them."""
    executors = compiled["spec"]["deploymentSpec"]["executors"].values()
    assert [e for e in executors if "resolver" in e]  # the default keeps the baseline
    assert kubeflow_runner.main(_argv(tmp_path) + ["--no-baseline-resolver"]) == 0
    spec = json.loads((tmp_path / "pipeline.json").read_text())["pipelineSpec"]
    assert not [e for e in spec["deploymentSpec"]["executors"].values() if "resolver" in e]
    assert "Evaluator" in spec["root"]["dag"]["tasks"]


@pytest.mark.parametrize("change, flag", [
    ({"--image": None}, "--image"),
    ({"--image": "Not An Image"}, "--image"),
    ({"--pipeline-root": "runs/relative"}, "--pipeline-root"),
    ({"--pipeline-root": "minio://bucket/root"}, "--pipeline-root"),
    ({"--data-root": "http://example.com/data"}, "--data-root"),
    ({"--serving-dir": "serving"}, "--serving-dir"),
    ({"--strategy": "ring"}, "--strategy"),
    ({"--tuner": "grid"}, "--tuner"),
    ({"--trials": "0"}, "--trials"),
    ({"--trials": "many"}, "--trials"),
    ({"--seed": "x"}, "--seed"),
    ({"--drop": configs.DEFAULT_LABEL}, "--drop"),
    ({"--beam-arg": "runner=DataflowRunner"}, "--beam-arg"),
    ({"--bogus": "1"}, "--bogus"),
])
def test_bad_flags_exit_2_with_one_line(change, flag, capsys, tmp_path):
    flags = {"--image": IMAGE, "--pipeline-root": PIPELINE_ROOT, "--data-root": DATA_ROOT,
             "--output-dir": str(tmp_path)}
    flags.update(change)
    argv = [a for k, v in flags.items() if v is not None for a in (k, v)]
    assert kubeflow_runner.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and flag in err, err
    assert not os.listdir(tmp_path)  # nothing compiled


def test_bad_flag_from_the_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "kubeflow_runner.py"), "--pipeline-root", "gs://b/r"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the following arguments are required: --image"]


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        kubeflow_runner.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--image", "--pipeline-root", "--data-root", "--label", "--drop",
                 "--output-dir", "--serving-dir", "--beam-arg", "--strategy", "--tuner",
                 "--trials", "--quick", "--seed"):
        assert flag in text
