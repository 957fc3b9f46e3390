"""ML Metadata in MySQL (MariaDB here), as Kubeflow keeps it: `--metadata mysql://...` with
both local runners, caching and --explain against it, and a database that cannot be used
stopping the run with one line before anything is written. The tests start their own server
(tests/mysql_server.py)."""
import os

import pytest

import local_runner
from mysql_server import MISSING, SERVER, mariadb
from pipeline_runs import (COMPONENTS, latest_states, odd_taxi_csv, quick_args, run_cli,
                           summary, versions)

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


@pytest.mark.e2e
def test_both_runners_share_ml_metadata_in_mysql_with_caching_and_explain(
        server, csv, tmp_path):
    """BeamDagRunner runs every component with ML Metadata in MySQL (the password from the
    environment); LocalDagRunner then finds the same run cached (the password in the URI);
    --explain reads the lineage back. No SQLite file is made and the password is nowhere."""
    output = tmp_path / "out"
    first = run_cli(*quick_args(csv, output, "--runner", "beam", "--tuner", "none",
                                "--metadata", server.uri("tfx", "mlmd")),
                    env={"MLMD_MYSQL_PASSWORD": PASSWORD})
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    database = server.uri("tfx", "mlmd", PASSWORD)
    states = latest_states(database)
    assert set(states.values()) == {"complete"} and COMPONENTS - {"Tuner"} == set(states)
    assert len(versions(output)) == 1 and summary(output)["blessed"]
    assert not (output / "metadata.sqlite").exists()

    second = run_cli(*quick_args(csv, output, "--tuner", "none", "--metadata", database))
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    states = latest_states(database)
    # The first run's model is the second's blessing baseline: the Evaluator and the Pusher
    # run again (and push nothing new); everything else comes from the cache.
    assert {c for c, s in states.items() if s != "cached"} <= {
        "latest_blessed_model_resolver", "Evaluator", "Pusher"}, states
    assert "Trainer" in states and len(versions(output)) == 1

    explained = run_cli("--explain", versions(output)[0], "--metadata", database)
    assert explained.returncode == 0, explained.stderr[-2000:]
    for text in ("Trainer", "Distiller", "Quantizer", "Pusher", "best hyperparameters",
                 os.path.basename(csv)):
        assert text in explained.stdout
    logs = [first.stdout, first.stderr, second.stdout, second.stderr, explained.stdout,
            open(output / "logs" / "run.log").read()]
    assert not any(PASSWORD in text for text in logs)
