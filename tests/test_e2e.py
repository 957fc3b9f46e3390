"""End-to-end runs of the whole pipeline (--quick): the shared baseline on a sample of the
taxi data with odd but valid input, and reruns from it. Public CSVs other than the taxi
data: test_e2e_public_csv.py."""
import glob
import json
import os

import pytest

from csv_samples import taxi_rows, write_csv
from pipeline_runs import (COMPONENTS, ODD_COMPANY, PUSHED_FILES, latest_states, quick_args,
                           run_cli, summary, versions)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def first_run(baseline):
    return baseline.csv, baseline.output, baseline.result


def test_local_run_executes_every_component_and_pushes(first_run):
    _, output, result = first_run
    assert latest_states(output) == {c: "complete" for c in COMPONENTS}
    [version] = versions(output)
    assert sorted(os.listdir(version)) == PUSHED_FILES
    card = json.load(open(os.path.join(version, "model_card.json")))
    assert card["lineage"]["quantized_artifact_id"] > 0 and card["deploy_mode"] == "int8"
    assert "candidate" in result.stdout and f"Pushed to: {version}" in result.stdout


def test_a_run_leaves_nothing_in_the_system_temp_folder(baseline):
    """TFX stages a 49 MB copy of itself for Beam in a temp folder at every Beam component and
    never deletes it: the run keeps its temporary files in <output>/tmp and deletes them."""
    assert os.listdir(baseline.system_temp) == []
    assert "tmp" not in os.listdir(baseline.output)  # <output>/tmp lives as long as the run
    # ... and on the in-process Beam runner it does not build that copy at all.
    log = open(os.path.join(baseline.output, "logs", "run.log")).read()
    assert "Attempting to infer TFX Python dependency" not in log
    assert "Nonempty beam arg setup_file already includes dependency" in log


def test_report_files_match_the_schema(first_run):
    _, output, _ = first_run
    report = summary(output)
    assert {"teacher", "student_scratch", "student", "pruned", "int8"} <= set(report["candidates"])
    for metrics in report["candidates"].values():
        for key in ("auc", "accuracy", "params", "size_bytes", "gzip_bytes", "latency_ms_p50"):
            assert isinstance(metrics[key], (int, float)), key
    assert isinstance(report["blessed"], bool) and report["blessed"]
    assert all(isinstance(r, str) for r in report["reasons"])
    assert report["pushed_to"] == versions(output)[0]
    assert set(report["timings_s"]) == COMPONENTS
    html = open(os.path.join(output, "report", "index.html")).read()
    assert html.count("data:image/png;base64") == 3


# What the libraries print that a user does not need: it goes to <output>/logs/run.log.
NOISE = ("Search space summary", "Results summary", "Unable to register", "FutureWarning",
         "Ignored output_format", "absl::InitializeLog", "fully_quantize", "TF 2.0 is in beta",
         "RuntimeWarning", "tf_record_iterator", "retracing", "ETA:", "UserWarning")


def test_the_terminal_shows_steps_results_and_verdict_and_the_log_has_the_rest(first_run):
    _, output, result = first_run
    lines = result.stdout.splitlines()
    for noise in NOISE:
        assert noise not in result.stdout + result.stderr, noise
    # A --quick run: a start and an end line per component (24), per trial, epoch, student,
    # sparsity and mode, the table, the columns and the verdict (about 75; 170 before).
    assert len(lines) <= 80, len(lines)
    assert result.stderr.count("\n") <= 2  # the notes before the run
    for component in COMPONENTS - {"latest_blessed_model_resolver"}:
        assert any(line.endswith(f"] {component} running") for line in lines), component
        assert any(f"] {component} finished in " in line for line in lines), component
    assert any(line.startswith("trial ") for line in lines)
    assert any(line.startswith("epoch 1/") for line in lines)  # not a TTY: a line per epoch
    assert lines[-1].endswith(os.path.join(output, "logs", "run.log"))
    # Said once, at the end, not also while the step runs (the log has both).
    assert not any(line.startswith(("evaluator: BLESSED", "baselines: the teacher is",
                                    "distiller: student ", "Component times")) for line in lines)
    log = open(os.path.join(output, "logs", "run.log")).read()
    assert "Search space summary" in log and "Results summary" in log  # Keras Tuner's print()
    assert "fully_quantize" in log  # the TFLite converter's C++ log
    # Beam runs on the runner we name, never on Prism fetched from the internet.
    assert "PrismRunner" not in log and "FnApiRunner" in log


def test_only_the_evaluator_reads_the_test_split(baseline):
    """Everything that selects (tuner trials, early stopping, students, sparsities, QAT)
    reads train and validation; the verdict's test split is read by the Evaluator alone;
    statistics, schema and validation cover all three splits."""
    from pipeline_runs import split_reads

    reads = split_reads(baseline.split_reads_log)
    assert None not in reads, "a split read from outside any component's executor"
    assert reads["evaluator"] >= {"test"}
    for component in ("tuner", "trainer", "distiller", "pruner", "quantizer"):
        assert reads[component] == {"train", "validation"}, (component, reads[component])
    assert {c for c, splits in reads.items() if "test" in splits} == {"evaluator"}
    statistics = _only(os.path.join(baseline.output, "pipeline_root", "StatisticsGen",
                                    "statistics", "*"))
    assert sorted(os.listdir(statistics)) == ["Split-test", "Split-train", "Split-validation"]
    report = summary(baseline.output)
    assert report["split"] == "test" and report["test_rows"] == report["rows"]["test_rows"]
    for name, metrics in report["candidates"].items():
        for key in ("accuracy", "auc", "log_loss"):
            low, high = metrics[f"{key}_ci"]
            assert low <= metrics[key] <= high, (name, key)
        if name != "teacher":
            low, high = metrics["accuracy_drop_ci"]
            assert low <= metrics["accuracy_drop"] <= high
    assert "On the test split" in baseline.result.stdout


def test_odd_but_valid_input_is_handled_and_counted(first_run):
    """Empty fields are missing values, non-ASCII categories are categories, rows without a
    label are dropped and counted in the report, an identifier is left out with a note; the
    column report says what each column became."""
    _, output, result = first_run
    report = summary(output)
    assert "column 'trip_id' is left out: text with 2500 different values" in result.stderr
    columns = {c["name"]: c for c in report["columns"]}
    assert columns["trip_id"]["role"] == "left out" and columns["tips"]["why"] == "--drop"
    assert columns["big_tipper"]["role"] == "label" and columns["big_tipper"]["missing"] == 20
    assert columns["fare"]["role"] == "numeric" and columns["fare"]["type"] == "float"
    assert columns["fare"]["missing"] == 228 and columns["fare"]["min"] >= 0
    assert columns["company"]["role"] == "categorical" and columns["company"]["distinct"] > 10
    assert columns["trip_start_hour"]["why"] == "integer codes"
    assert "  left out 2: trip_id (text with 2500 different values" in result.stdout
    assert report["rows"]["dropped_missing_label"] == 20
    assert sum(report["rows"][f"{s}_rows"] for s in ("train", "validation", "test")) == 2480
    [contract] = glob.glob(os.path.join(output, "serving", "*", "contract.json"))
    vocabulary = [slot for slot in json.load(open(contract))["features"]
                  if slot["feature"] == "company"][0]["vocabulary"]
    assert ODD_COMPANY in vocabulary


def test_identical_reruns_are_cached_and_push_nothing_new(baseline):
    """The first run's model becomes the blessing baseline of the second, so the Evaluator
    and Pusher run once more (and push nothing new); from then on nothing runs at all. In the
    baseline's own output: a copy elsewhere is another pipeline (its settings name its output
    folder), which the cache does not match."""
    with baseline.locked(exclusive=True):  # no other worker copies it meanwhile
        csv, output = baseline.csv, baseline.output
        result = run_cli(*quick_args(csv, output))
        assert result.returncode == 0, result.stderr[-3000:]
        states = latest_states(output)
        assert {c for c, s in states.items() if s != "cached"} <= {
            "latest_blessed_model_resolver", "Evaluator", "Pusher"}
        assert "already pushed" in result.stdout and len(versions(output)) == 1
        result = run_cli(*quick_args(csv, output))
        assert result.returncode == 0, result.stderr[-3000:]
        states = latest_states(output)
        assert {c for c, s in states.items()
                if s != "cached"} <= {"latest_blessed_model_resolver"}
        assert len(versions(output)) == 1


def test_explain_prints_data_hyperparameters_and_runs(first_run):
    csv, output, _ = first_run
    result = run_cli("--explain", versions(output)[0])
    assert result.returncode == 0, result.stderr[-2000:]
    for text in ("CsvExampleGen", "Tuner", "Trainer", "Distiller", "Pruner", "Quantizer",
                 "Evaluator", "Pusher", "best hyperparameters", os.path.basename(csv)):
        assert text in result.stdout
    # Every stage setting of the executions that made the model, compression included.
    for line in ("  pruning: epochs=4 sparsity=0.8",
                 "  quantization: deploy_mode=int8 modes=dynamic,float16,int8 qat_epochs=2",
                 "  blessing_thresholds: max_accuracy_drop=0.01 max_auc_drop=0.05 min_auc=0.6",
                 "  tuning: epoch_steps=32 max_epochs=2 sample_rows=100000 search_space=none "
                 "trials=1 tuner=random"):
        assert line in result.stdout.splitlines() or any(
            l.startswith(line) for l in result.stdout.splitlines()), line


def test_curated_schema_stops_drifted_data_before_training(first_run, tmp_path):
    _, output, _ = first_run
    [schema] = glob.glob(os.path.join(output, "pipeline_root", "SchemaGen", "schema", "*",
                                      "schema.pbtxt"))
    header, rows = taxi_rows(2500)
    company, fare = header.index("company"), header.index("fare")
    drifted = [r[:fare] + [f"about {r[fare]}"] + r[fare + 1:] for r in rows]
    for r in drifted[:600]:
        r[company] = "A brand new cab company"
    csv = write_csv(str(tmp_path / "drifted.csv"), header, drifted)
    result = run_cli(*quick_args(csv, tmp_path / "out", "--schema", schema))
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    [line] = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert "fare" in line and "company" in line
    states = latest_states(str(tmp_path / "out"))
    assert "Trainer" not in states and "Tuner" not in states
    assert not versions(str(tmp_path / "out"))


def _only(pattern):
    [path] = glob.glob(pattern)
    return path


def test_trainer_retrains_with_the_tuners_best_hyperparameters(first_run):
    _, output, _ = first_run
    root = os.path.join(output, "pipeline_root")
    best = json.load(open(_only(os.path.join(root, "Tuner", "best_hyperparameters", "*",
                                             "best_hyperparameters.txt"))))["values"]
    teacher = json.load(open(_only(os.path.join(root, "Trainer", "model", "*",
                                                "model_info.json"))))
    assert teacher["tuned"] is True
    for name in ("num_layers", "units", "learning_rate", "dropout", "activation", "batch_size",
                 "constant_epochs", "cross_rank"):
        assert teacher["hyperparameters"][name] == best[name], name
    trials = json.load(open(_only(os.path.join(root, "Tuner", "tuner_results", "*",
                                               "trials.json"))))
    assert trials and all("epochs_trained" in t for t in trials)


def test_distiller_outputs_searched_student_control_and_their_comparison(first_run):
    _, output, _ = first_run
    root = os.path.join(output, "pipeline_root", "Distiller")
    metrics = json.load(open(_only(os.path.join(root, "metrics", "*", "report.json"))))
    assert {"sizes", "grid", "scratch", "selected", "winner", "param_ratio"} <= set(metrics)
    assert metrics["sizes"][0]["size"] == "linear"  # the search starts from the linear student
    assert metrics["selected"]["size"] == metrics["scratch"]["size"] == metrics["grid"][0][
        "size"]
    infos = {}
    for key in ("student", "student_scratch"):
        folder = _only(os.path.join(root, key, "*"))
        assert os.path.isdir(os.path.join(folder, "Format-Serving"))
        infos[key] = json.load(open(os.path.join(folder, "model_info.json")))
        assert infos[key]["role"] == key
        assert infos[key]["hyperparameters"]["units"] == metrics["selected"]["units"]
    assert infos["student"]["origin"] == metrics["winner"]
    assert infos["student_scratch"]["origin"] == "scratch"
    # Never larger than the teacher (as large only when the teacher is the linear model).
    assert metrics["param_ratio"] >= 1
