"""As on a cluster: ML Metadata in MySQL (MariaDB here) and Beam's portable runner with SDK
worker processes. The tests start their own MariaDB server (tests/mysql_server.py) and Beam
job service with a worker pool (tests/beam_job_service.py).

One run on both, with BeamDagRunner, ML Metadata in MySQL (the password from the environment)
and every Beam job on PortableRunner spread over two SDK workers: every Beam-based
component's results must equal those of the in-process FnApiRunner (the shared baseline run,
same data): the examples, statistics, schema, anomalies and the Evaluator's TFMA metrics per
slice. The same run on LocalDagRunner is then found cached in MySQL, and --explain reads the
lineage back. A database that cannot be used stops a run with one line before anything is
written."""
import glob
import gzip
import json
import math
import os

import pytest
import tensorflow as tf
from google.protobuf import json_format, text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

import local_runner
from beam_job_service import portable_beam
from components.artifacts import REPORT_FILE
from mysql_server import MISSING, SERVER, mariadb
from pipeline_runs import (COMPONENTS, LEAN, latest_states, odd_taxi_csv, quick_args,
                           run_cli, summary, versions)

pytestmark = pytest.mark.skipif(not SERVER, reason=MISSING)
PASSWORD = "s3cret-Pw"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mariadb(str(tmp_path_factory.mktemp("mariadb"))) as server:
        server.sql("CREATE DATABASE mlmd; CREATE DATABASE other; "
                   f"CREATE USER 'tfx'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
                   "GRANT ALL ON mlmd.* TO 'tfx'@'127.0.0.1'; "
                   f"CREATE USER 'admin'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
                   "GRANT ALL ON *.* TO 'admin'@'127.0.0.1';")
        yield server


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    return odd_taxi_csv(str(tmp_path_factory.mktemp("mysql_data")))


def test_a_database_that_cannot_be_used_is_one_line_before_anything_is_written(
        server, csv, tmp_path, capsys):
    cases = {
        server.uri("tfx", "mlmd", "wrong"): "refused user 'tfx'; check the user and the password",
        server.uri("admin", "nowhere", PASSWORD): "has no database 'nowhere'; create it",
        server.uri("tfx", "other", PASSWORD): "user 'tfx' may not use database 'other'",
        server.uri("tfx", "nowhere", PASSWORD): "or it does not exist; check the name",
        f"mysql://tfx:{PASSWORD}@127.0.0.1:1/mlmd": "cannot reach 127.0.0.1:1",
        "mysql://127.0.0.1/mlmd": "name the user, host and database",
        str(tmp_path / "metadata.db"): "not a MySQL URI",
    }
    for uri, expected in cases.items():
        output = tmp_path / "out"
        assert local_runner.main(["--data", csv, "--drop", "tips", "--output", str(output),
                                  "--metadata", uri]) == 2, uri
        lines = capsys.readouterr().err.strip().splitlines()
        [line] = [l for l in lines if not l.startswith("note: ")]  # notes: the CSV's trip id
        assert line.startswith("error: --metadata ") and expected in line, line
        assert PASSWORD not in line and "wrong" not in line
        if "127.0.0.1" in uri:
            assert "127.0.0.1" in line  # the host it tried
        assert not output.exists()


def test_the_password_can_come_from_the_environment_and_its_absence_is_named(
        server, csv, tmp_path):
    """As a process, so MLMD's own C++ log on stderr would show: still one line."""
    result = run_cli("--data", csv, "--drop", "tips", "--output", str(tmp_path / "out"),
                     "--metadata", server.uri("tfx", "mlmd"), timeout=300,
                     env={"MLMD_MYSQL_PASSWORD": ""})
    assert result.returncode == 2
    [line] = [l for l in result.stderr.strip().splitlines() if not l.startswith("note: ")]
    assert "refused user 'tfx'" in line and "$MLMD_MYSQL_PASSWORD" in line, result.stderr


@pytest.fixture(scope="module")
def beam(tmp_path_factory):
    with portable_beam(str(tmp_path_factory.mktemp("portable_beam"))) as beam:
        yield beam


@pytest.fixture(scope="module")
def cluster_run(server, beam, baseline, tmp_path_factory):
    """The baseline's data through BeamDagRunner, MySQL and PortableRunner (2 workers)."""
    output = tmp_path_factory.mktemp("cluster") / "out"
    # LEAN: small settings where they do not matter here (the Beam steps and ML Metadata do).
    args = quick_args(baseline.csv, output, *LEAN, "--runner", "beam",
                      "--metadata", server.uri("tfx", "mlmd"),
                      *[f"--beam-arg={a}" for a in beam.beam_args(workers=2)])
    result = run_cli(*args, env={"MLMD_MYSQL_PASSWORD": PASSWORD})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return args, str(output), result, beam.jobs()


def _artifact(output, component, key):
    [path] = glob.glob(os.path.join(output, "pipeline_root", component, key, "*"))
    return path


def _records(examples_dir):
    """{split: sorted serialized examples}: worker processes may write them in any order."""
    out = {}
    for split_dir in sorted(glob.glob(os.path.join(examples_dir, "Split-*"))):
        files = sorted(glob.glob(os.path.join(split_dir, "*.gz")))
        out[os.path.basename(split_dir)] = sorted(
            r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    return out


def _statistics(statistics_dir):
    out = {}
    for path in sorted(glob.glob(os.path.join(statistics_dir, "Split-*", "FeatureStats.pb"))):
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        stats.ParseFromString(open(path, "rb").read())
        for dataset in stats.datasets:  # in the order the workers' results came in
            dataset.features.sort(key=lambda f: f.path.SerializeToString())
        out[os.path.basename(os.path.dirname(path))] = json_format.MessageToDict(stats)
    return out


def _sorted(schema):
    """`schema` with its features and domains by name: inferred in the statistics' order."""
    schema.feature.sort(key=lambda f: f.name)
    schema.string_domain.sort(key=lambda d: d.name)
    return schema


def _schema(output):
    schema = schema_pb2.Schema()
    text_format.Parse(open(os.path.join(_artifact(output, "SchemaGen", "schema"),
                                        "schema.pbtxt")).read(), schema)
    return _sorted(schema)


def _anomalies(output):
    out = {}
    for path in glob.glob(os.path.join(_artifact(output, "DataValidator", "anomalies"),
                                       "Split-*", "SchemaDiff.pb")):
        anomalies = anomalies_pb2.Anomalies.FromString(open(path, "rb").read())
        _sorted(anomalies.baseline)  # the schema it checked against
        out[os.path.basename(os.path.dirname(path))] = anomalies
    return out


def _close(a, b, path=""):
    """Equal, floats to 1e-9 relative (sums merged across workers in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


@pytest.mark.e2e
def test_every_component_ran_with_ml_metadata_in_mysql(cluster_run, server):
    _, output, _, _ = cluster_run
    states = latest_states(server.uri("tfx", "mlmd", PASSWORD))
    assert set(states.values()) == {"complete"} and COMPONENTS - {"Tuner"} == set(states)
    assert len(versions(output)) == 1 and summary(output)["blessed"]
    assert not os.path.exists(os.path.join(output, "metadata.sqlite"))


@pytest.mark.e2e
def test_every_beam_job_ran_on_the_portable_runner_with_two_workers(cluster_run):
    _, output, _, jobs = cluster_run
    # CsvExampleGen, StatisticsGen and the Evaluator's TFMA.
    assert len(jobs) >= 3 and {workers for _, workers in jobs} == {2}, jobs
    log = open(os.path.join(output, "logs", "run.log")).read()
    assert "PortableRunner" in log and "PrismRunner" not in log


@pytest.mark.e2e
def test_data_components_match_the_direct_runner(cluster_run, baseline):
    _, output, _, _ = cluster_run
    assert _records(_artifact(output, "CsvExampleGen", "examples")) == _records(
        _artifact(baseline.output, "CsvExampleGen", "examples"))
    _close(_statistics(_artifact(output, "StatisticsGen", "statistics")),
           _statistics(_artifact(baseline.output, "StatisticsGen", "statistics")))
    assert _schema(output) == _schema(baseline.output)
    assert _anomalies(output) == _anomalies(baseline.output) and _anomalies(output)


@pytest.mark.e2e
def test_evaluator_tfma_metrics_match_the_direct_runner(cluster_run, tmp_path):
    """The same scored test rows through TFMA on the in-process FnApiRunner."""
    from modules.verdict import sliced_metrics
    from pipeline.configs import DEFAULT_BEAM_ARGS

    _, output, _, _ = cluster_run
    evaluation = _artifact(output, "Evaluator", "evaluation")
    portable = json.load(open(os.path.join(evaluation, REPORT_FILE)))["slices"]
    assert portable and all(portable.values())
    scored = os.path.join(evaluation, "tfma", "scored_eval_examples.gz")
    with gzip.open(scored) as f:
        assert f.read(1)  # the sample the portable run scored
    slice_features = sorted({k.split("=")[0] for slices in portable.values()
                             for k in slices if k != "overall"})
    direct = sliced_metrics.sliced_metrics(list(portable), scored, slice_features,
                                           str(tmp_path / "tfma"), list(DEFAULT_BEAM_ARGS))
    _close(portable, direct)


@pytest.mark.e2e
def test_local_dag_runner_finds_the_run_cached_in_mysql_and_explains_it(cluster_run, server):
    """The password in the URI this time; it appears in no output or log."""
    args, output, first, _ = cluster_run
    database = server.uri("tfx", "mlmd", PASSWORD)
    args = [database if a == server.uri("tfx", "mlmd") else a for a in args]
    second = run_cli(*args[:args.index("--runner")], *args[args.index("--runner") + 2:])
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    states = latest_states(database)
    # The first run's model is the second's blessing baseline: the Evaluator and the Pusher
    # run again (and push nothing new); everything else comes from the cache.
    assert {c for c, s in states.items() if s != "cached"} <= {
        "latest_blessed_model_resolver", "Evaluator", "Pusher"}, states
    assert "Trainer" in states and len(versions(output)) == 1

    explained = run_cli("--explain", versions(output)[0], "--metadata", database)
    assert explained.returncode == 0, explained.stderr[-2000:]
    for text in ("CsvExampleGen", "Trainer", "Distiller", "Quantizer", "Pusher",
                 os.path.basename(args[args.index("--data") + 1])):
        assert text in explained.stdout
    logs = [first.stdout, first.stderr, second.stdout, second.stderr, explained.stdout,
            open(os.path.join(output, "logs", "run.log")).read()]
    assert not any(PASSWORD in text for text in logs)
