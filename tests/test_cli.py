"""Bad input on the command line: one line naming the file, column or flag, exit code 2, no
traceback, nothing written, in seconds (before TFX starts). The cases run in-process through
local_runner.main; one case and --help run as processes."""
import json
import os
import subprocess
import sys

import pytest

import local_runner
from csv_samples import taxi_rows, write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, os.path.join(ROOT, "local_runner.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def taxi(tmp_path_factory):
    header, rows = taxi_rows(300)
    return tmp_path_factory.mktemp("cli"), header, rows


def _bad_inputs(directory, header, rows):
    label = header.index("big_tipper")
    one_class = [r[:label] + ["0"] + r[label + 1:] for r in rows]
    short_row = rows[:10] + [rows[10][:-2]] + rows[11:]
    duplicated = header[:-1] + [header[0]]
    (directory / "empty.csv").write_text("")
    (directory / "nocsv").mkdir(exist_ok=True)
    schema = directory / "bad_schema.pbtxt"
    schema.write_text("this is { not a schema")
    space = directory / "empty_space.json"
    space.write_text(json.dumps({"units": 64, "num_layers": {"int": [2, 2]}}))
    latin = directory / "latin.csv"
    latin.write_bytes((",".join(header) + "\n" + ",".join(rows[0]).replace(
        rows[0][header.index("company")] or "x", "Café Tàxi") + "\n").encode("latin-1"))
    unclosed = directory / "unclosed.csv"
    unclosed.write_text(",".join(header) + "\n" + ",".join(rows[0]) + "\n\"open," * 3)
    fare = header.index("fare")
    text_in_numbers = [r[:fare] + (["about 12"] if i == 5 else [r[fare]]) + r[fare + 1:]
                       for i, r in enumerate(rows)]
    na_in_numbers = [r[:fare] + (["NA"] if i == 7 else [r[fare]]) + r[fare + 1:]
                     for i, r in enumerate(rows)]
    european = directory / "european.csv"  # ';' between fields, ',' as the decimal mark
    european.write_text("\n".join(";".join(
        field.replace(".", ",") if _is_float(field) else field for field in row)
        for row in [header] + rows) + "\n")
    with_id = directory / "with_id.csv"
    write_csv(str(with_id), ["id"] + header, [[str(i)] + r for i, r in enumerate(rows)])
    return {
        "decimal comma without --decimal": (["--data", str(european), "--delimiter", ";"],
                                            "are numbers with a decimal comma; pass --decimal ,"),
        "decimal point with --decimal ,": (["--data", write_csv(str(directory / "ok3.csv"),
                                                                header, rows),
                                            "--decimal", ","],
                                           "numbers with a decimal point while --decimal is ','"),
        "unknown decimal mark": (["--decimal", ";"], "--decimal ;"),
        "unknown keep column": (["--data", str(with_id), "--keep", "colour"], "--keep colour"),
        "label is an identifier": (["--data", str(with_id), "--label", "id"],
                                   "--label id: a different integer in every row"),
        "text in a numeric column": (["--data", write_csv(str(directory / "text.csv"), header,
                                                          text_in_numbers)],
                                     "line 7, column 'fare'"),
        "NA in a numeric column with --na-values=": (
            ["--data", write_csv(str(directory / "na.csv"), header, na_in_numbers),
             "--na-values="], "add it to --na-values"),
        "not UTF-8": (["--data", str(latin)], "not UTF-8"),
        "unclosed quote": (["--data", str(unclosed)], "cannot be read as CSV"),
        "wrong delimiter": (["--data", write_csv(str(directory / "ok2.csv"), header, rows),
                             "--delimiter", ";"], "no column 'big_tipper'"),
        "missing path": (["--data", str(directory / "nope.csv")], "nope.csv"),
        "folder without csv": (["--data", str(directory / "nocsv")], "no *.csv"),
        "empty csv": (["--data", str(directory / "empty.csv")], "empty"),
        "header only": (["--data", write_csv(str(directory / "header.csv"), header, [])],
                        "no data rows"),
        "no label column": (["--data", write_csv(str(directory / "nolabel.csv"),
                                                 header[:-1], [r[:-1] for r in rows])],
                            "big_tipper"),
        "unknown drop column": (["--data", write_csv(str(directory / "ok.csv"), header, rows),
                                 "--drop", "colour"], "--drop colour"),
        "single class": (["--data", write_csv(str(directory / "one.csv"), header, one_class)],
                         "at least two classes"),
        "wrong field count": (["--data", write_csv(str(directory / "short.csv"), header,
                                                   short_row)], "line 12"),
        "duplicate column": (["--data", write_csv(str(directory / "dup.csv"), duplicated, rows)],
                             "appears twice"),
        "unknown runner": (["--runner", "spark"], "--runner spark"),
        "unknown tuner": (["--tuner", "grid"], "--tuner grid"),
        "zero trials": (["--trials", "0"], "--trials 0"),
        "empty search space": (["--search-space", str(space)], "search space is empty"),
        "bad schema": (["--schema", str(schema)], "--schema"),
        "negative learning rate via epochs 0": (["--epochs", "0"], "epochs"),
        "unknown precision": (["--precision", "float8"], "precision"),
        "alpha out of range": (["--alpha", "1.5"], "alpha"),
        "non-positive temperature": (["--temperature", "0"], "temperature"),
        "sparsity out of range": (["--sparsity", "1.0"], "--sparsity"),
        "unknown quantization mode": (["--quantize", "int8,int4"], "int4"),
    }




def _is_float(field):
    try:
        float(field)
        return "." in field
    except ValueError:
        return False


CASES = ["decimal comma without --decimal", "decimal point with --decimal ,",
         "unknown decimal mark", "unknown keep column", "label is an identifier",
         "text in a numeric column", "NA in a numeric column with --na-values=",
         "not UTF-8", "unclosed quote", "wrong delimiter", "missing path",
         "folder without csv", "empty csv", "header only", "no label column",
         "unknown drop column", "single class", "wrong field count", "duplicate column",
         "unknown runner", "unknown tuner", "zero trials", "empty search space", "bad schema",
         "negative learning rate via epochs 0", "unknown precision", "alpha out of range",
         "non-positive temperature", "sparsity out of range", "unknown quantization mode"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_error_before_anything_is_written(taxi, case, capsys):
    """In-process: local_runner.main returns 2 having printed one line; nothing is written."""
    directory, header, rows = taxi
    args, expected = _bad_inputs(directory, header, rows)[case]
    output = directory / f"out-{case.replace(' ', '-')}"
    assert local_runner.main([*args, "--output", str(output)]) == 2
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], stderr[-2000:]
    assert not output.exists()


def test_bad_input_exits_2_with_one_line_and_no_traceback(taxi):
    """The same path as a user meets it: a process, its exit status and its stderr."""
    directory, header, rows = taxi
    args, expected = _bad_inputs(directory, header, rows)["wrong field count"]
    result = run_cli(*args, "--output", str(directory / "out-process"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0 and expected in result.stderr
    assert "Traceback" not in result.stderr


def test_help_documents_every_flag():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--data", "--label", "--drop", "--output", "--runner", "--beam-arg",
                 "--schema", "--quick", "--no-cache", "--seed", "--tuner", "--trials",
                 "--explain", "--alpha", "--sparsity", "--quantize", "--max-accuracy-drop"):
        assert flag in result.stdout


def test_missing_value_markers_pass_the_check_by_default(taxi, tmp_path):
    """R's NA, SQL's NULL and a spreadsheet's #N/A in numeric, text and label columns are
    missing values, not errors; rows whose label is a marker count as unlabeled."""
    from pipeline.inputs import check_csv

    directory, header, rows = taxi
    fare, company, label = (header.index(c) for c in ("fare", "company", "big_tipper"))
    marked = [list(r) for r in rows]
    marked[3][fare], marked[4][company], marked[5][label] = "NA", "NULL", "#N/A"
    source = check_csv(write_csv(str(tmp_path / "marked.csv"), header, marked),
                       "big_tipper")
    assert source.rows == len(rows) and source.rows_without_label >= 1


def test_european_csv_passes_with_decimal_and_an_id_column_is_left_out_with_a_note(
        taxi, tmp_path, capsys):
    """The notes a user sees before the run; --keep uses the column anyway."""
    directory, header, rows = taxi
    args = ["--data", str(directory / "with_id.csv"), "--drop", "tips,id"]
    _bad_inputs(directory, header, rows)  # writes the files
    config = local_runner.build_config(local_runner.parse_args(args))
    assert "id" not in config.drop  # left out already: dropping it is no error downstream
    note = capsys.readouterr().err.strip()
    assert note == (f"note: {directory / 'with_id.csv'}: column 'id' is left out: a different "
                    f"integer in every row, in a dense range: row numbers; --keep id to use it")
    local_runner.build_config(local_runner.parse_args(args + ["--keep", "id"]))
    assert capsys.readouterr().err == ""
    config = local_runner.build_config(local_runner.parse_args(
        ["--data", str(directory / "european.csv"), "--delimiter", ";", "--decimal", ","]))
    assert config.csv.decimal == ","


def test_no_cache_flag_turns_the_pipelines_cache_off(taxi):
    """--no-cache reaches the pipeline (test_prepare_and_pipeline: its enable_cache); that a
    run without the cache reproduces the metrics is test_kubeflow_dry_run's comparison."""
    directory, header, rows = taxi
    args = ["--data", write_csv(str(directory / "plain.csv"), header, rows), "--drop", "tips"]
    assert local_runner.build_config(local_runner.parse_args(args)).enable_cache is True
    assert local_runner.build_config(
        local_runner.parse_args(args + ["--no-cache"])).enable_cache is False


def test_r_row_names_column_is_accepted_and_not_a_feature(taxi, tmp_path):
    from pipeline.inputs import check_csv

    _, header, rows = taxi
    path = write_csv(str(tmp_path / "rownames.csv"), [""] + header,
                     [[str(i + 1)] + row for i, row in enumerate(rows)])
    source = check_csv(path, "big_tipper", ("tips",))
    assert list(source.left_out) == [""] and source.rows == len(rows)


def test_the_terminal_gets_our_lines_component_steps_and_errors_and_nothing_else():
    import io
    import logging

    from modules.learning import console

    stream = io.StringIO()
    handler = local_runner.TerminalLog(stream)

    def emit(name, level, message, **extra):
        record = logging.LogRecord(name, level, __file__, 1, message, (), None)
        record.__dict__.update(extra)
        handler.emit(record)

    emit("components.pruner.executor", logging.INFO, "pruner: sparsity 0.80")
    emit("components.evaluator.executor", logging.INFO, "evaluator: BLESSED; ...",
         **console.LOG_ONLY)  # said again by the report at the end: the log only
    emit("absl", logging.INFO, "Component Trainer is running.")
    emit("absl", logging.INFO, "Component Trainer is finished.")
    emit("absl", logging.INFO, "Running driver for Trainer")  # TFX's chatter
    emit("absl", logging.WARNING, "tf_record_iterator is deprecated")
    emit("apache_beam", logging.ERROR, "worker failed")
    emit("apache_beam", logging.ERROR, "worker failed")  # each distinct error once
    emit("modules.learning.loop", logging.WARNING, "NaN loss at step 3")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "pruner: sparsity 0.80"
    assert lines[1].endswith("] Trainer running") and "] Trainer finished in " in lines[2]
    assert lines[3:] == ["error [apache_beam]: worker failed", "warning: NaN loss at step 3"]


def test_the_run_log_never_holds_a_mysql_password():
    """TFX logs ML Metadata's connection config, password included."""
    import io
    import logging

    terminal, log_file = io.StringIO(), io.StringIO()
    local_runner.configure_logging(terminal, log_file)
    try:
        logging.getLogger("absl").info('Using connection config:\n mysql {\n  user: "tfx"\n'
                                       '  password: "pa\\"ss"\n}')
        logging.getLogger("modules.x").info("database %s", "mysql://tfx:pa55@db:3306/mlmd")
    finally:
        logging.getLogger().handlers[:] = []
    text = log_file.getvalue() + terminal.getvalue()
    assert "pa55" not in text and 'pa\\"ss' not in text
    assert 'password: "***"' in text and "mysql://tfx:***@db:3306/mlmd" in text
