"""Shared fixtures of the unit tests: tiny synthetic data sets and small model configs.

`import modules` comes first: it selects tf_keras (TF_USE_LEGACY_KERAS=1) before TensorFlow
is imported anywhere in the test process.
"""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import modules  # noqa: F401  (must precede tensorflow)

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from modules.learning import training
from modules.models.hyperparameters import ModelConfig
from modules.reading import data, splits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end-to-end pipeline tests (slow)")
    # pytest-xdist's --dist loadfile hands out files in collection order (below: the slowest
    # first), not reordered by their number of tests, which would put the few-test pipeline
    # runs last: one worker ran the 6-minute Kubeflow dry run alone at the end.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


# The test files that run whole pipelines, the slowest first (minutes, 2 workers on 2 cores):
# handed out first, so that the short unit-test files fill in the end and both workers finish
# together (longest processing time first). test_e2e.py makes the shared baseline (conftest
# `baseline`); the file after it needs none, so the other worker does not wait for it.
SLOW_FILES = ("test_e2e.py", "test_e2e_public_csv.py", "test_reliability.py",
              "test_kubeflow_dry_run.py", "test_cluster_services.py", "test_cluster_uris.py",
              "test_multi_worker.py")


@pytest.fixture(scope="session", autouse=True)
def system_temp_inside_pytests_folder(tmp_path_factory):
    """What the test processes themselves put in the system temp folder goes under pytest's
    base temp folder instead (which pytest prunes to the last three sessions), not into /tmp:
    Beam's TestPipeline leaves its empty beam-pipeline-temp folder behind when a transform
    fails while the pipeline is built (test_csv_example_gen's refused CSVs), one per CI
    run. The pipeline runs the tests start get a TMPDIR of their own (tests/pipeline_runs.py)."""
    previous = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("system_temp"))
    yield
    tempfile.tempdir = previous


# -- one whole-pipeline run shared by the end-to-end tests ----------------------------------
@pytest.fixture(scope="session")
def baseline(pytestconfig):
    """local_runner.py --quick on the odd taxi sample (2,500 rows), as test_e2e's first test
    checks it, with every split read logged (tests/split_spy). One run for the whole session:
    pytest-xdist workers share it (in their common temp folder; `make_baseline`). Tests that
    change its output work on `baseline.copy(...)`; test_e2e's rerun test runs in it (the
    cache is keyed on the output folder) under `baseline.locked(exclusive=True)`."""
    from pipeline_runs import make_baseline

    directory = os.path.join(_shared_folder(pytestconfig), "baseline")
    os.makedirs(directory, exist_ok=True)
    made = make_baseline(directory)
    assert made.result.returncode == 0, made.result.stdout[-3000:] + made.result.stderr[-3000:]
    return made


# -- synthetic data ---------------------------------------------------------------------------
def make_arrays(n: int = 600, d: int = 20, num_classes: int = 2, seed: int = 0,
                noise: float = 0.5):
    """A learnable classification problem: labels from a noisy linear function of x."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    if num_classes == 2:
        w = rng.normal(size=d)
        y = (x @ w + noise * rng.normal(size=n) > 0).astype(np.int64)
    else:
        w = rng.normal(size=(d, num_classes))
        y = (x @ w + noise * rng.normal(size=(n, num_classes))).argmax(axis=1).astype(np.int64)
    return x, y


def make_prepared(n: int = 600, d: int = 20, num_classes: int = 2, seed: int = 0,
                  eval_fraction: float = 0.2) -> training.PreparedData:
    """PreparedData whose matrices are already 'preprocessed' (standard normal features).

    No FeaturePreprocessor is attached: tests that need one (export, preprocessing) build it.
    """
    x, y = make_arrays(n, d, num_classes, seed)
    cut = int(n * (1 - eval_fraction))
    columns = [data.FeatureColumn(f"f{i}", data.NUMERIC, schema_pb2.FLOAT) for i in range(d)]
    label = data.FeatureColumn("label", data.TEXT, schema_pb2.BYTES)
    return training.PreparedData(
        splits.Split.from_arrays(x[:cut], {"label": y[:cut]}),
        splits.Split.from_arrays(x[cut:], {"label": y[cut:]}),
        [str(c) for c in range(num_classes)], columns, label, None,
        {"train_rows": cut, "validation_rows": n - cut, "dropped_missing_label": 0,
         "dropped_unseen_class": 0})


def with_features(prepared: training.PreparedData, x_train, x_eval) -> training.PreparedData:
    """`prepared` with other feature matrices, the same labels."""
    return dataclasses.replace(
        prepared, train=splits.Split.from_arrays(x_train, {"label": labels_of(prepared.train)}),
        held_out=splits.Split.from_arrays(x_eval, {"label": labels_of(prepared.held_out)}))


def features_of(split: splits.Split) -> np.ndarray:
    """The feature matrix of an in-memory split."""
    return split.arrays()[0]


def labels_of(split: splits.Split) -> np.ndarray:
    """The class ids of an in-memory split."""
    return split.arrays()[1]["label"]


def examples_of(split: data.Split, columns, label: str = "label") -> list:
    """Serialized tf.Examples of an in-memory raw split, as CsvExampleGen writes them: a
    missing value (NaN, "") is an absent feature; INT columns as integers."""
    serialized = []
    for i in range(len(split)):
        feature = {}
        for column in columns:
            value = split.features[column.name][i]
            if column.kind == data.TEXT:
                if value:
                    feature[column.name] = tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[str(value).encode()]))
            elif not np.isnan(value):
                feature[column.name] = (
                    tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
                    if column.schema_type == schema_pb2.INT
                    else tf.train.Feature(float_list=tf.train.FloatList(value=[value])))
        if split.labels[i]:
            feature[label] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[split.labels[i].encode()]))
        serialized.append(tf.train.Example(
            features=tf.train.Features(feature=feature)).SerializeToString())
    return serialized


def statistics_of(split: data.Split, columns, bins: int):
    """TFDV's statistics of an in-memory raw split (StatisticsGen's generators, run in
    process), with `bins` quantile buckets."""
    from tensorflow_data_validation.statistics import stats_impl
    from tfx_bsl.coders import example_coder

    from modules.reading import preprocessing

    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(
        examples_of(split, columns))
    return stats_impl.generate_statistics_in_memory(
        batch, preprocessing.statistics_options(bins)).datasets[0]


def write_statistics(uri: str, train_examples) -> str:
    """A statistics artifact at `uri` as StatisticsGen writes it (the train split's
    FeatureStats.pb, from these serialized tf.Examples); returns `uri`."""
    from tensorflow_data_validation.statistics import stats_impl
    from tfx_bsl.coders import example_coder

    from modules import fileio
    from modules.reading import preprocessing

    statistics = stats_impl.generate_statistics_in_memory(
        example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(list(train_examples)),
        preprocessing.statistics_options())
    fileio.write_bytes(os.path.join(uri, "Split-train", "FeatureStats.pb"),
                       statistics.SerializeToString())
    return uri


def small_config(**overrides) -> ModelConfig:
    """A small, fast, deterministic model: 1 x 16 DenseBlock, no cross, no dropout."""
    values = dict(num_layers=1, units=16, activation="relu", dropout=0.0, batch_norm=True,
                  cross_rank=0, learning_rate=1e-2, batch_size=64, epochs=3,
                  constant_epochs=10, decay_rate=0.8, early_stopping_patience=4)
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture(scope="session")
def prepared() -> training.PreparedData:
    """600 rows x 20 features, 2 classes, 480 train / 120 eval."""
    return make_prepared()


@pytest.fixture
def float32_policy():
    """Restores the global mixed-precision policy (float32) after the test."""
    before = tf.keras.mixed_precision.global_policy().name
    yield
    tf.keras.mixed_precision.set_global_policy(before)


# -- MirroredStrategy on 2 logical CPUs, in subprocesses --------------------------------------
# tf.config.set_logical_device_configuration must run before TensorFlow initializes its
# devices, which this test process has long done: each check runs as its own script. A failed
# distributed step can leave TensorFlow's collectives unusable for the rest of a process, so
# the training comparison and the pruning check do not share one.
_SCRIPT_HEADER = textwrap.dedent("""
    import json, sys
    import modules  # noqa: F401  (tf_keras)
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

    sys.path.insert(0, sys.argv[1])
    from conftest import make_prepared, small_config
    from modules.compression import pruning
    from modules.learning import training
    from modules.models.model import build_core
    from modules.settings import Training

    prepared = make_prepared()
    out = {"logical_cpus": len(tf.config.list_logical_devices("CPU"))}
""")

_SCRIPTS = {
    "mirrored_training": _SCRIPT_HEADER + textwrap.dedent("""
        def train(strategy, batch_size):
            config = small_config(batch_norm=False, batch_size=batch_size, epochs=4)
            result = training.train_model(
                lambda: build_core(20, 2, config, seed=0), prepared, config,
                Training(seed=0, strategy=strategy), early_stopping=False, verbose=False)
            return {"replicas": result.model.distribute_strategy.num_replicas_in_sync,
                    "epochs_trained": result.epochs_trained,
                    "val_auc": result.eval_metrics["val_auc"],
                    "val_loss": result.eval_metrics["val_loss"],
                    "val_accuracy": result.eval_metrics["val_accuracy"]}

        out["mirrored"] = train("mirrored", 64)   # 2 replicas x 64 = global batch 128
        out["none"] = train("none", 128)          # 1 replica x 128 = global batch 128
        print("RESULT " + json.dumps(out))
    """),
    "mirrored_pruning": _SCRIPT_HEADER + textwrap.dedent("""
        # Under LocalDagRunner every component shares one process: the Pruner runs after the
        # Trainer and the Distiller have trained under their own MirroredStrategy. So prune
        # twice: in a fresh process, then after another mirrored training.
        config = small_config(num_layers=2, units=32, batch_size=64, epochs=3)

        def prune():
            try:
                core = build_core(20, 2, config, seed=0)
                stripped, _ = pruning.prune(core, prepared, config, target_sparsity=0.5,
                                            epochs=3,
                                            run=Training(seed=0, strategy="mirrored"),
                                            verbose=False)
                return {"sparsity": [layer["sparsity"] for layer in
                                     pruning.sparsity_report(stripped)["layers"]]}
            except Exception as error:  # noqa: BLE001  (reported to the test)
                return {"error": f"{type(error).__name__}: {error}"[:3000]}

        out["fresh"] = prune()
        if "error" in out["fresh"]:  # a failed collective can poison the rest of the process
            out["after_training"] = {"error": "not run: pruning in a fresh process failed"}
        else:
            training.train_model(lambda: build_core(20, 2, config, seed=0), prepared, config,
                                 Training(strategy="mirrored"), epochs=1,
                                 early_stopping=False, verbose=False)
            out["after_training"] = prune()
        print("RESULT " + json.dumps(out))
    """),
}

# Each script takes ~30 s, mostly single-threaded tracing, so it starts in the background as
# soon as collection shows that a test needs it, and runs while the other tests do: once a
# session, by the first pytest-xdist worker to collect it; any worker reads its results.
_RUNS = {}  # name -> the process group of a script this worker started
SCRIPT_TIMEOUT = 400  # seconds


def _shared_folder(config) -> str:
    """A folder every pytest-xdist worker of this session sees (the parent of their temp
    folders), or this process's temp folder without xdist."""
    base = config._tmp_path_factory.getbasetemp()
    return str(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


def _script_folder(name, config) -> str:
    return os.path.join(_shared_folder(config), f"script-{name}")


def _start_script(name, config):
    """Starts script `name` once for the session: the first worker to get here starts it,
    in its folder of the shared one where it leaves its output and, at the end, its exit
    status (`returncode`) for whichever worker reads them (`_script_results`)."""
    folder = _script_folder(name, config)
    try:
        os.makedirs(folder)
    except FileExistsError:
        return  # started by another worker
    script = os.path.join(folder, "script.py")
    with open(script, "w") as f:
        f.write(_SCRIPTS[name])
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2")
    status = os.path.join(folder, "returncode")
    with open(os.path.join(folder, "stdout.txt"), "w") as stdout, \
            open(os.path.join(folder, "stderr.txt"), "w") as stderr:
        _RUNS[name] = subprocess.Popen(
            ["sh", "-c", '"$@"; echo $? > "$0.tmp" && mv "$0.tmp" "$0"', status,
             sys.executable, script, os.path.dirname(__file__)],
            cwd=REPO, env=env, stdout=stdout, stderr=stderr, start_new_session=True)


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: else as found
    if config.option.collectonly:
        return
    for name in _SCRIPTS:
        if any(f"{name}_results" in getattr(item, "fixturenames", ()) for item in items):
            _start_script(name, config)


def pytest_unconfigure(config):
    for process in _RUNS.values():  # the scripts this worker started; another may read them
        try:
            process.wait(timeout=SCRIPT_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the shell and the script
            process.wait()


def _script_results(name, config):
    _start_script(name, config)
    folder = _script_folder(name, config)
    deadline = time.time() + SCRIPT_TIMEOUT
    while not os.path.exists(os.path.join(folder, "returncode")) and time.time() < deadline:
        time.sleep(0.5)
    returncode = _read(os.path.join(folder, "returncode")).strip() or "(still running)"
    stdout, stderr = (_read(os.path.join(folder, f)) for f in ("stdout.txt", "stderr.txt"))
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert returncode == "0" and lines, (
        f"{name} script failed (rc {returncode}):\n{stdout[-3000:]}\n{stderr[-5000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


@pytest.fixture(scope="session")
def mirrored_training_results(pytestconfig):
    """Train the same model with strategy mirrored (2 logical CPUs) and none."""
    return _script_results("mirrored_training", pytestconfig)


@pytest.fixture(scope="session")
def mirrored_pruning_results(pytestconfig):
    """pruning.prune(run=Training(strategy="mirrored")) on 2 logical CPUs: sparsity per weight,
    or error."""
    return _script_results("mirrored_pruning", pytestconfig)
