"""Running local_runner.py as a user does, and reading what a run left behind; the one
whole-pipeline baseline the end-to-end tests share (fixture `baseline` in conftest.py)."""
import contextlib
import csv
import dataclasses
import fcntl
import glob
import io
import json
import os
import shutil
import socket
import subprocess
import sys

from csv_samples import taxi_rows, write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPONENTS = {"CsvExampleGen", "StatisticsGen", "SchemaGen", "DataValidator", "Tuner",
              "Trainer", "Baselines", "Distiller", "Pruner", "Quantizer",
              "latest_blessed_model_resolver",
              "Evaluator", "Pusher"}
ODD_COMPANY = "Taxi Élite Ünïcode 出租车"
# Small settings for whole-pipeline runs whose checks do not depend on the tuner, on the
# distiller's alpha/temperature grid or on the quantization modes other than the deployed
# int8 model: no Tuner, one distillation setting (the grid's first, which the student size
# search uses anyway), int8 only.
LEAN = ("--tuner", "none", "--quantize", "int8", "--alpha", "0.3", "--temperature", "4")
# What a pushed version holds when the data has a text column (int8: the vector-in model too)
PUSHED_FILES = ["contract.json", "golden_probabilities.csv", "golden_rows.csv", "model.tflite",
                "model_card.json", "saved_model", "vector", "vocabulary.json"]


def run_cli(*args, timeout=900, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "local_runner.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=None if env is None else {**os.environ, **env})


def free_port() -> int:
    """A localhost TCP port nothing listens on now (for the servers the tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spying_on_split_reads(log_path):
    """Environment for run_cli that logs every split read to `log_path` (tests/split_spy)."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [
                os.path.join(ROOT, "tests", "split_spy"), os.environ.get("PYTHONPATH")])),
            "SPLIT_READS_LOG": str(log_path)}


def split_reads(log_path):
    """{component: the splits it read} from a log of spying_on_split_reads."""
    reads = {}
    with open(log_path) as log:
        for line in log:
            read = json.loads(line)
            reads.setdefault(read["component"], set()).update(read["splits"])
    return reads


def quick_args(csv, output, *extra):
    return ["--data", csv, "--drop", "tips", "--output", str(output), "--quick",
            "--tuner", "random", "--trials", "1", "--min-auc", "0.6", "--max-auc-drop", "0.05",
            *extra]


def latest_states(output):
    """{component: state} of the latest run in `output`'s ML Metadata (or a mysql:// URI)."""
    import modules  # noqa: F401
    from pipeline import metadata
    from pipeline.configs import PIPELINE_NAME

    store = metadata.open_store(str(output) if metadata.is_mysql(str(output))
                                else os.path.join(output, "metadata.sqlite"))
    return {r.component_id: r.state for r in metadata.latest_run(store, PIPELINE_NAME)}


def versions(output):
    return sorted(p for p in glob.glob(os.path.join(output, "serving", "*")) if os.path.isdir(p))


def summary(output):
    return json.load(open(os.path.join(output, "report", "summary.json")))


def make_baseline(directory):
    """The run behind conftest's `baseline` fixture, made once in `directory` for every
    pytest-xdist worker: the first to ask runs it, the others wait for it and read what it
    recorded. Returns a `Baseline`; the caller checks the return code (a failed run is
    recorded like one that worked)."""
    record = os.path.join(directory, "baseline.json")
    with open(os.path.join(directory, "make.lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not os.path.exists(record):
            csv = odd_taxi_csv(directory)
            output = os.path.join(directory, "out")
            reads = os.path.join(directory, "split_reads.jsonl")
            temp = os.path.join(directory, "system_temp")  # the run's system temp folder
            os.mkdir(temp)
            result = run_cli(*quick_args(csv, output),
                             env={**spying_on_split_reads(reads), "TMPDIR": temp})
            with open(record + ".tmp", "w") as f:
                json.dump({"csv": csv, "output": output, "split_reads_log": reads,
                           "system_temp": temp, "args": result.args,
                           "returncode": result.returncode, "stdout": result.stdout,
                           "stderr": result.stderr}, f)
            os.replace(record + ".tmp", record)
    with open(record) as f:
        made = json.load(f)
    result = subprocess.CompletedProcess(made.pop("args"), made.pop("returncode"),
                                         made.pop("stdout"), made.pop("stderr"))
    return Baseline(result=result, **made)


def odd_taxi_csv(directory, rows=2500):
    """The taxi sample with odd but valid input: a trip code (an identifier, left out), a
    non-ASCII company name, empty fares and 20 rows without a label."""
    header, data = taxi_rows(rows)
    header = ["trip_id"] + header
    data = [[f"T{i * 7919 % 100_000:05d}"] + row for i, row in enumerate(data)]
    company, fare, label = (header.index(c) for c in ("company", "fare", "big_tipper"))
    for i, row in enumerate(data):
        if i % 7 == 0:
            row[company] = ODD_COMPANY
        if i % 11 == 0:
            row[fare] = ""
    for row in data[:20]:
        row[label] = ""
    return write_csv(os.path.join(directory, "taxi_odd.csv"), header, data)


@dataclasses.dataclass(frozen=True)
class Baseline:
    csv: str
    output: str
    result: subprocess.CompletedProcess
    split_reads_log: str  # every split read of the run (spying_on_split_reads)
    system_temp: str  # the TMPDIR the run was given

    def copy(self, destination) -> str:
        """A copy of the run's output folder to continue from. Its ML Metadata still points
        at the baseline's artifacts, which stay in place: the copy reuses them, and what a
        new run writes lands in the copy."""
        with self.locked():
            shutil.copytree(self.output, str(destination))
        return str(destination)

    @contextlib.contextmanager
    def locked(self, exclusive=False):
        """Readers of the output folder (shared) and the one test that runs in it
        (`exclusive`: test_e2e's rerun) exclude each other across pytest-xdist workers."""
        with open(os.path.join(os.path.dirname(self.output), "output.lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield


# The reference consumer (python -m modules.edge predict) on a pushed version, as a device
# team runs it; the end-to-end tests and benchmarks/generality.py compare it with the
# Evaluator's interpreter.

def run_consumer(model_dir, csv_path):
    """`python -m modules.edge predict` in a process where TensorFlow cannot be imported:
    (classes, probabilities)."""
    import numpy as np

    code = ("import sys, runpy; sys.modules['tensorflow'] = None; "
            "sys.argv = ['modules.edge'] + sys.argv[1:]; "
            "runpy.run_module('modules.edge', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code, "predict", "--model", str(model_dir),
                             "--csv", str(csv_path)], capture_output=True, text=True, cwd=ROOT,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = list(csv.reader(result.stdout.splitlines()))
    return lines[0], np.array(lines[1:], np.float64)


def consumer_in_process(model_dir, csv_path):
    """`modules.edge.predict` with TensorFlow's TFLite interpreter, the Evaluator's."""
    import numpy as np
    import tensorflow as tf

    from modules import edge

    out = io.StringIO()
    edge.predict(edge.RawModel.from_folder(str(model_dir), tf.lite.Interpreter), str(csv_path),
                 out)
    return np.array(list(csv.reader(out.getvalue().splitlines()))[1:], np.float64)


def logit_step(content: bytes) -> float:
    """One step of the raw-in int8 model's int16 logits: LiteRT 2.3 rounds some int16 results
    one step away from TensorFlow 2.16's interpreter and TFLite Micro (which agree). A logit
    one step off moves a softmax probability by at most half a step; a hidden layer's step
    can move the logits further, but moved probabilities by less than half a logit step on
    every set of the generality benchmark."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=content)
    scales = {t["index"]: t["quantization"][0] for t in interpreter.get_tensor_details()}
    [dequantize] = [op for op in interpreter._get_ops_details() if op["op_name"] == "DEQUANTIZE"]
    return scales[dequantize["inputs"][0]]


def write_test_rows_csv(output, version, path):
    """Writes the run's test split to `path` as CSV text, in the columns `version`'s model
    reads; returns the Evaluator's probabilities of those rows (its interpreter, TensorFlow's
    TFLite, on the same values)."""
    import numpy as np
    import tensorflow as tf

    from modules import edge
    from modules.compression import conformance
    from modules.learning.training import RawRows
    from modules.models import export
    from modules.reading import data

    [pruned] = glob.glob(os.path.join(output, "pipeline_root", "Pruner", "pruned_model", "*"))
    info = export.read_info(pruned)
    [examples] = glob.glob(os.path.join(output, "pipeline_root", "CsvExampleGen", "examples",
                                        "*"))
    model = edge.RawModel.from_folder(version, tf.lite.Interpreter)
    label = data.FeatureColumn(**info["label"])
    columns = [data.FeatureColumn(**c) for c in info["columns"]
               if c["name"] in model.inputs.columns]
    rows = RawRows([os.path.join(examples, "Split-test", "*")], columns, label, info["classes"])
    evaluator = []
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(model.inputs.columns)
        for block, _ in rows.blocks():
            evaluator.append(model.probabilities(block))
            writer.writerows(zip(*[[conformance._csv_value(v) for v in block[n]]
                                   for n in model.inputs.columns]))
    return np.concatenate(evaluator)
