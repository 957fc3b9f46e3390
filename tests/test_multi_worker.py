"""--strategy multi_worker for real: the Trainer's run_fn in two worker processes on localhost
(tests/multi_worker_task.py, each with its own TF_CONFIG, as a Kubeflow training job starts
its workers), against the same training in one process."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import json
import os
import socket
import subprocess
import sys
import time

import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.trainer.fn_args_utils import FnArgs

from conftest import REPO, examples_of, make_arrays, write_statistics
from modules import fileio
from modules.learning import trainer, training
from modules.models import export
from modules.reading import data
from modules.settings import RunSettings, Teacher, Training

TASK_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multi_worker_task.py")
TRAIN_ROWS, VALIDATION_ROWS, FEATURES = 1600, 800, 10
BATCH = 64  # per replica: two workers make global batches of 128, as one process with 128
EPOCHS = 6  # at most: early stopping (patience 1) ends the training before
TIMEOUT_S = 240


def write_inputs(root):
    """Examples (gzipped tf.Examples, as CsvExampleGen writes them), the schema and
    StatisticsGen's statistics of the train split, at `root`; the FnArgs fields they give."""
    x, y = make_arrays(TRAIN_ROWS + VALIDATION_ROWS, FEATURES, seed=0)
    columns = [data.FeatureColumn(f"f{i}", data.NUMERIC, schema_pb2.FLOAT)
               for i in range(FEATURES)]
    labels = np.array(["no", "yes"], dtype=object)[y]
    records = {}
    for split, rows in (("train", slice(0, TRAIN_ROWS)), ("eval", slice(TRAIN_ROWS, None))):
        records[split] = examples_of(data.Split({c.name: x[rows, i] for i, c in
                                                 enumerate(columns)}, labels[rows]), columns)
        path = os.path.join(root, "examples", f"Split-{split}", "data.gz")
        fileio.makedirs(os.path.dirname(path))
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for record in records[split]:
                writer.write(record)
    schema = schema_pb2.Schema()
    for column in columns:
        schema.feature.add(name=column.name, type=schema_pb2.FLOAT)
    schema.feature.add(name="label", type=schema_pb2.BYTES)
    schema_path = os.path.join(root, "schema", "schema.pbtxt")
    fileio.write_text(schema_path, str(schema))
    statistics_uri = write_statistics(os.path.join(root, "statistics"), records["train"])
    return records["eval"], {
        "train_files": [os.path.join(root, "examples", "Split-train", "*")],
        "eval_files": [os.path.join(root, "examples", "Split-eval", "*")],
        "schema_path": schema_path, "statistics_uri": statistics_uri}


def fn_args(inputs, strategy, batch_size, work_dir, output):
    """The Trainer's FnArgs (as a JSON-able dict): a small teacher with these settings, its
    Model artifact at `output`/model, its run logs at `output`/model_run."""
    tuned = keras_tuner.HyperParameters()
    for name, value in (("num_layers", 2), ("units", 32), ("cross_rank", 0), ("dropout", 0.0),
                        ("learning_rate", 3e-3), ("early_stopping_patience", 1),
                        ("batch_size", batch_size)):
        tuned.Fixed(name, value)
    settings = RunSettings(label="label", training=Training(seed=0, strategy=strategy),
                           work_dir=work_dir, verbose=False)
    return {"train_files": inputs["train_files"], "eval_files": inputs["eval_files"],
            "schema_path": inputs["schema_path"],
            "serving_model_dir": os.path.join(output, "model", export.SERVING_DIR),
            "model_run_dir": os.path.join(output, "model_run"),
            "hyperparameters": tuned.get_config(),
            "custom_config": {RunSettings.KEY: settings.to_json(),
                              Teacher.KEY: Teacher(epochs=EPOCHS).to_json(),
                              trainer.STATISTICS_URI: inputs["statistics_uri"]}}


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_workers(root, inputs):
    """Starts one task per worker of a two-worker cluster, each with its own destinations,
    work folder and TMPDIR (so that what each writes is told apart); waits for both
    (killing both if one fails or time runs out); returns their reports."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    tasks = []
    for index in range(2):
        folder = os.path.join(root, f"task{index}")
        os.makedirs(os.path.join(folder, "tmp"))
        with open(os.path.join(folder, "fn_args.json"), "w") as f:
            json.dump(fn_args(inputs, "multi_worker", BATCH, os.path.join(folder, "work"),
                              os.path.join(folder, "output")), f)
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2",
                   TMPDIR=os.path.join(folder, "tmp"),
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": index}}))
        log = open(os.path.join(folder, "log.txt"), "w")
        tasks.append((folder, log, subprocess.Popen(
            [sys.executable, TASK_SCRIPT, os.path.join(folder, "fn_args.json"),
             os.path.join(folder, "report.json")],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)))
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while any(p.poll() is None for _, _, p in tasks) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for _, _, p in tasks):
                break  # one failed: the other would wait for it forever
            time.sleep(0.5)
    finally:
        for _, log, process in tasks:
            if process.poll() is None:
                process.kill()
            process.wait()
            log.close()
    logs = "\n".join(f"--- task {i} (rc {p.returncode}):\n" + open(log.name).read()[-4000:]
                     for i, (_, log, p) in enumerate(tasks))
    assert all(p.returncode == 0 for _, _, p in tasks), logs
    reports = []
    for folder, _, _ in tasks:
        with open(os.path.join(folder, "report.json")) as f:
            reports.append(json.load(f))
    return reports


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, name), folder)
                  for d, _, names in os.walk(folder) for name in names)


@pytest.mark.e2e
def test_two_workers_train_as_one_process_and_only_the_chief_writes(tmp_path):
    """Two workers (1 replica each, per-replica batch 64) against one process (batch 128):
    the same global batches, steps, learning-rate schedule and initial weights, so the two
    trainings differ only by float summation order and by batch normalization's batch
    statistics (over 64 rows per replica instead of 128).

    Tolerance: one standard error of each metric on the 800 validation rows both models are
    scored on, a difference this data cannot tell from none: accuracy (near 0.9)
    sqrt(0.9 * 0.1 / 800) = 0.011, i.e. 8 rows; ROC AUC (near 0.98, 390 and 410 rows of the
    two classes; Hanley and McNeil) 0.005.
    """
    root = str(tmp_path)
    validation, inputs = write_inputs(os.path.join(root, "inputs"))
    started = time.monotonic()
    chief, worker = run_workers(root, inputs)
    workers_s = time.monotonic() - started
    single_output = os.path.join(root, "single")
    trainer.run_fn(FnArgs(**fn_args(inputs, "none", 2 * BATCH, os.path.join(root, "work"),
                                    single_output)))

    # Both workers took every step, together (one replica each, two in sync): as many steps
    # as one process with their global batch, not twice as many.
    single_info = export.read_info(os.path.join(single_output, "model"))
    assert chief["replicas"] == worker["replicas"] == 2
    epochs = single_info["epochs_trained"]
    assert chief["epochs_trained"] == worker["epochs_trained"] == epochs < EPOCHS
    assert chief["steps"] == worker["steps"] == epochs * training.budget(
        TRAIN_ROWS, 2 * BATCH, epoch_rows=None).steps_per_epoch
    # Their validation metrics are the cluster's, the same on both, so early stopping stops
    # both at the same epoch (else one would wait for the other in a collective forever) and
    # both keep the same best epoch.
    assert chief["history"]["val_loss"] == worker["history"]["val_loss"]
    assert chief["eval_metrics"] == worker["eval_metrics"]
    assert chief["best_epoch"] == worker["best_epoch"] == single_info["best_epoch"]

    # Only the chief wrote: its Model artifact and run logs, its checkpoints (removed once
    # the model is exported). The other worker saved too, but in temporary folders it
    # deleted: nothing at its destinations, no checkpoint in its work folder.
    chief_files = files_under(os.path.join(root, "task0", "output"))
    assert "model/Format-Serving/saved_model.pb" in chief_files
    assert "model/model_info.json" in chief_files and "model_run/metrics.jsonl" in chief_files
    assert files_under(os.path.join(root, "task1", "output")) == []
    assert files_under(os.path.join(root, "task1", "tmp")) == []
    for task in ("task0", "task1"):
        assert files_under(os.path.join(root, task, "work", "trainer")) == []

    # The chief's artifact holds the model trained: its serving signature scores the
    # validation rows as its recorded metrics say.
    info = export.read_info(os.path.join(root, "task0", "output", "model"))
    serving = tf.saved_model.load(os.path.join(root, "task0", "output", "model",
                                               export.SERVING_DIR))
    classes = serving.signatures["serving_default"](examples=tf.constant(validation))["classes"]
    labels = [tf.train.Example.FromString(r).features.feature["label"].bytes_list.value[0]
              for r in validation]
    assert np.mean(classes.numpy() == np.array(labels)) == pytest.approx(
        info["metrics"]["accuracy"], abs=1e-9)

    two, one = info["metrics"], single_info["metrics"]
    print(f"\ntwo workers: {workers_s:.0f} s, {chief['steps']} steps; accuracy "
          f"{two['accuracy']:.4f} vs one process {one['accuracy']:.4f}; AUC {two['auc']:.4f} vs "
          f"{one['auc']:.4f}")
    assert one["accuracy"] > 0.8, "the synthetic problem should be learnable"
    assert abs(two["accuracy"] - one["accuracy"]) <= 0.011
    assert abs(two["auc"] - one["auc"]) <= 0.005
