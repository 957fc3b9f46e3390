"""Artifacts at URIs, not local paths: what a Kubeflow run with a gs:// pipeline root needs.

Our executors go through modules.fileio (tf.io.gfile). `file:///abs/path` is a URI that only
tf.io.gfile understands: `open`, `os.makedirs` or `shutil` given one would fail or write into a
relative folder named `file:` in the working directory, so every test below also checks that
nothing appeared there. (`ram://`, TensorFlow's in-memory filesystem, covers the helpers; its
folder rename does not move the folder's files, so the chain uses file:// instead.)
"""
import modules  # noqa: F401  (tf_keras before tensorflow)

import json
import os

import keras_tuner
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import standard_artifacts

from components.artifacts import JsonReport
from components.baselines.executor import Executor as BaselinesExecutor
from components.distiller.executor import Executor as DistillerExecutor
from components.evaluator.executor import Executor as EvaluatorExecutor
from components.pruner.executor import Executor as PrunerExecutor
from components.pusher import executor as pusher
from components.quantizer.executor import Executor as QuantizerExecutor
from conftest import write_statistics
from pipeline_runs import PUSHED_FILES
from modules import fileio
from modules.learning import trainer
from modules.models import export
from modules.verdict import evaluation
from modules.settings import (Baselines, Blessing, Distillation, Pruning, Quantization,
                              RunSettings, Teacher, Training)
from pipeline.configs import LOCAL_BEAM_ARGS


@pytest.fixture
def in_empty_cwd(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield
    assert os.listdir(cwd) == [], "something wrote to a local path instead of the URI"


@pytest.mark.parametrize("scheme", ["ram://", "file://"])
def test_helpers_write_read_copy_and_remove_at_uris(scheme, tmp_path, in_empty_cwd):
    root = scheme + (str(tmp_path / "root") if scheme == "file://" else f"/{tmp_path.name}")
    fileio.write_json(os.path.join(root, "a", "b", "x.json"), {"v": 1})
    fileio.write_bytes(os.path.join(root, "a", "y.bin"), b"\x00\x01")
    assert fileio.read_json(os.path.join(root, "a", "b", "x.json")) == {"v": 1}
    assert fileio.glob(os.path.join(root, "a", "*", "x.json")) == [
        os.path.join(root, "a", "b", "x.json")]
    assert list(fileio.walk_files(os.path.join(root, "a"))) == ["y.bin", "b/x.json"]
    fileio.copytree(os.path.join(root, "a"), os.path.join(root, "copy"))
    assert fileio.read_bytes(os.path.join(root, "copy", "y.bin")) == b"\x00\x01"
    assert fileio.read_json(os.path.join(root, "copy", "b", "x.json")) == {"v": 1}
    with pytest.raises(FileExistsError):
        fileio.copytree(os.path.join(root, "a"), os.path.join(root, "copy"))
    sizes = evaluation.size_on_disk(os.path.join(root, "copy"))
    assert sizes["size_bytes"] == 2 + len(json.dumps({"v": 1}, indent=1))
    fileio.rmtree(os.path.join(root, "copy"))
    fileio.rmtree(os.path.join(root, "never-there"))
    assert not fileio.exists(os.path.join(root, "copy", "y.bin"))


def _example(fare, company, label):
    return tf.train.Example(features=tf.train.Features(feature={
        "fare": tf.train.Feature(float_list=tf.train.FloatList(value=[fare])),
        "company": tf.train.Feature(bytes_list=tf.train.BytesList(value=[company.encode()])),
        "tipped": tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()])),
    })).SerializeToString()


def _examples_artifact(uri, seed=0, statistics_uri=None):
    """An Examples artifact as CsvExampleGen writes it (gzipped tf.Examples per split);
    `tipped` follows `fare` with some noise, so a model can learn it. With `statistics_uri`,
    StatisticsGen's statistics of the train split are written there too."""
    rng = tf.random.Generator.from_seed(seed)
    for split, n in (("train", 600), ("validation", 300), ("test", 300)):
        fares = rng.uniform([n], 0, 10).numpy()
        noise = rng.normal([n], 0, 1.5).numpy()
        path = os.path.join(uri, f"Split-{split}", "data_tfrecord-00000-of-00001.gz")
        fileio.makedirs(os.path.dirname(path))
        records = [_example(float(fare), ["Flash", "Sun", "Blue"][i % 3],
                            "yes" if fare + e > 5 else "no")
                   for i, (fare, e) in enumerate(zip(fares, noise))]
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for record in records:
                writer.write(record)
        if split == "train" and statistics_uri:
            write_statistics(statistics_uri, records)
    artifact = standard_artifacts.Examples()
    artifact.uri = uri
    artifact.split_names = '["train", "validation", "test"]'
    artifact.id = 1
    return artifact


def _artifact(kind, uri, artifact_id):
    artifact = kind()
    artifact.uri = uri
    artifact.id = artifact_id
    return artifact


@pytest.mark.e2e
def test_training_and_compression_executors_work_on_uris(tmp_path, in_empty_cwd):
    """Trainer run_fn -> Distiller -> Pruner -> Quantizer -> Evaluator -> Pusher, every
    artifact, work folder and the serving folder at file:// URIs."""
    root = "file://" + str(tmp_path / "root")
    settings = RunSettings(label="tipped", training=Training(seed=0),
                           work_dir=os.path.join(root, "work"), verbose=False)
    run = {RunSettings.KEY: settings.to_json()}
    tuned = keras_tuner.HyperParameters()  # a small teacher, as the Tuner would pass it
    for name, value in (("num_layers", 2), ("units", 32), ("cross_rank", 0),
                        ("batch_size", 64)):
        tuned.Fixed(name, value)
    statistics_uri = os.path.join(root, "StatisticsGen", "statistics", "2")
    examples = _examples_artifact(os.path.join(root, "CsvExampleGen", "examples", "1"),
                                  statistics_uri=statistics_uri)
    schema = schema_pb2.Schema()
    for name, kind in (("fare", schema_pb2.FLOAT), ("company", schema_pb2.BYTES),
                       ("tipped", schema_pb2.BYTES)):
        schema.feature.add(name=name, type=kind)
    schema_path = os.path.join(root, "SchemaGen", "schema", "2", "schema.pbtxt")
    fileio.write_text(schema_path, str(schema))

    network = _artifact(standard_artifacts.Model, os.path.join(root, "Trainer", "model", "3"), 3)
    trainer.run_fn(FnArgs(
        train_files=[os.path.join(examples.uri, "Split-train", "*")],
        eval_files=[os.path.join(examples.uri, "Split-validation", "*")],
        schema_path=schema_path,
        serving_model_dir=os.path.join(network.uri, export.SERVING_DIR),
        model_run_dir=os.path.join(root, "Trainer", "model_run", "3"),
        custom_config={**run, Teacher.KEY: Teacher(epochs=2).to_json(),
                       trainer.STATISTICS_URI: statistics_uri},
        hyperparameters=tuned.get_config()))

    linear, trees, teacher = (_artifact(standard_artifacts.Model,
                                        os.path.join(root, "Baselines", name, "14"), i)
                              for i, name in ((14, "linear"), (15, "trees"), (16, "teacher")))
    BaselinesExecutor().Do(
        {"network": [network], "examples": [examples]},
        {"linear": [linear], "trees": [trees], "teacher": [teacher],
         "report": [_artifact(JsonReport, os.path.join(root, "Baselines", "report", "14"), 17)]},
        {**run, Baselines.KEY: Baselines(trees_sample_rows=500).to_json()})
    assert export.read_info(teacher.uri)["kind"] in ("linear", "network", "trees")

    student, scratch = (_artifact(standard_artifacts.Model,
                                  os.path.join(root, "Distiller", name, "4"), i)
                        for i, name in ((4, "student"), (5, "student_scratch")))
    metrics = [_artifact(JsonReport, os.path.join(root, "Distiller", "metrics", "4"), 6)]
    DistillerExecutor().Do(
        {"teacher": [teacher], "examples": [examples]},
        {"student": [student], "student_scratch": [scratch], "metrics": metrics},
        {**run, Distillation.KEY: Distillation(alpha=0.3, temperature=4.0, student_layers=0,
                                               epochs=2).to_json(),
         Blessing.KEY: Blessing().to_json()})

    pruned = _artifact(standard_artifacts.Model, os.path.join(root, "Pruner", "model", "7"), 7)
    sparsity = _artifact(JsonReport, os.path.join(root, "Pruner", "sparsity", "7"), 8)
    PrunerExecutor().Do(
        {"model": [student], "examples": [examples], "teacher": [teacher]},
        {"pruned_model": [pruned], "sparsity": [sparsity]},
        {**run, Pruning.KEY: Pruning(sparsity=0.5, epochs=2).to_json(),
         Blessing.KEY: Blessing(max_auc_drop=0.5, max_accuracy_drop=0.5).to_json()})

    quantized = _artifact(standard_artifacts.Model,
                          os.path.join(root, "Quantizer", "model", "9"), 9)
    QuantizerExecutor().Do(
        {"model": [pruned], "examples": [examples]},
        {"quantized_model": [quantized],
         "metrics": [_artifact(JsonReport, os.path.join(root, "Quantizer", "metrics", "9"), 10)]},
        {**run, Quantization.KEY: Quantization(modes=("int8",)).to_json()})

    evaluation_report = _artifact(JsonReport, os.path.join(root, "Evaluator", "evaluation", "11"),
                                  11)
    blessing = _artifact(standard_artifacts.ModelBlessing,
                         os.path.join(root, "Evaluator", "blessing", "11"), 12)
    # The pipeline's Beam arguments name the runner, as every run does (else Prism: configs)
    EvaluatorExecutor(BaseBeamExecutor.Context(beam_pipeline_args=list(LOCAL_BEAM_ARGS))).Do(
        {"teacher": [teacher], "network": [network], "trees": [trees], "linear": [linear],
         "student_scratch": [scratch], "student": [student],
         "pruned": [pruned], "quantized": [quantized], "examples": [examples]},
        {"evaluation": [evaluation_report], "blessing": [blessing]},
        {**run, "deploy_mode": "int8", Blessing.KEY: Blessing(
            min_auc=0.6, max_auc_drop=0.5, max_accuracy_drop=0.5,
            slice_features=("company",)).to_json()})
    report = fileio.read_json(os.path.join(evaluation_report.uri, "report.json"))
    assert report["blessed"], report["reasons"]
    assert report["candidates"]["int8"]["gzip_bytes"] > 0
    assert report["candidates"]["teacher"]["size_bytes"] > report["candidates"]["int8"][
        "size_bytes"]
    assert fileio.exists(os.path.join(blessing.uri, "BLESSED"))

    serving_dir = os.path.join(root, "serving")
    pushed = _artifact(standard_artifacts.PushedModel, os.path.join(root, "Pusher", "13"), 13)
    pusher.Executor().Do(
        {"quantized": [quantized], "pruned": [pruned], "teacher": [teacher],
         "examples": [examples], "blessing": [blessing], "evaluation": [evaluation_report]},
        {"pushed_model": [pushed]}, {"serving_dir": serving_dir, "deploy_mode": "int8"})
    version = pushed.get_string_custom_property("pushed_destination")
    assert version.startswith(serving_dir + "/")
    local = version[len("file://"):]
    assert sorted(os.listdir(local)) == PUSHED_FILES
    assert tf.saved_model.load(os.path.join(version, "saved_model")).signatures[
        "serving_default"] is not None
    assert not [n for n in os.listdir(os.path.dirname(local))
                if n.startswith(pusher.TEMP_PREFIX)]
