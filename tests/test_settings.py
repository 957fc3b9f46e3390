"""modules.settings: every setting's default, flag, check and --quick value has one owner."""
import argparse
import dataclasses
import json

import pytest

from modules import settings
from modules.settings import (Blessing, Distillation, Pruning, Quantization, RunSettings,
                              SettingError, Splits, Training, Tuning)


def parse(*argv, quick=False):
    parser = settings.FlagParser()
    settings.add_stage_flags(parser)
    return settings.stages_from_flags(parser.parse_args(list(argv)), quick=quick)


def test_defaults_without_flags():
    stages = parse()
    assert stages["tuning"] == Tuning() and stages["tuning"].trials == 10
    assert stages["pruning"].sparsity == 0.8 and stages["teacher"].epochs is None
    assert stages["quantization"].modes == ("dynamic", "float16", "int8")
    assert stages["blessing"].max_accuracy_drop == 0.01


def test_quick_preset_comes_from_each_stage_and_a_flag_wins_over_it():
    stages = parse("--trials", "5", quick=True)
    assert stages["tuning"].trials == 5  # the flag given
    assert stages["tuning"].max_epochs == 2 and stages["teacher"].epochs == 3
    assert stages["distillation"].epochs == 12 and stages["pruning"].epochs == 4
    # The blessing's thresholds keep their defaults; TFMA slices a smaller sample.
    assert stages["blessing"] == Blessing(slice_rows=5_000)


def test_flags_reach_their_stage_with_their_types():
    stages = parse("--alpha", "0.2", "--student-units", "8", "--quantize", "int8,dynamic",
                   "--deploy-mode", "dynamic", "--seed", "7", "--strategy", "mirrored")
    assert stages["distillation"].alpha == 0.2 and stages["distillation"].student_units == 8
    assert stages["distillation"].temperature is None
    assert stages["quantization"].modes == ("int8", "dynamic")
    assert stages["training"] == Training(seed=7, strategy="mirrored")


@pytest.mark.parametrize("argv, message", [
    (["--trials", "0"], "--trials 0: must be at least 1"),
    (["--alpha", "1.5"], "--alpha 1.5: must be in [0, 1]"),
    (["--temperature", "0"], "--temperature 0: must be greater than 0"),
    (["--sparsity", "1.0"], "--sparsity 1: must be in [0, 1)"),
    (["--sparsity", "-0.1"], "--sparsity -0.1: must be in [0, 1)"),
    (["--quantize", "int8,int4"], "unknown mode(s) int4"),
    (["--deploy-mode", "qat"], "--deploy-mode qat: not among --quantize"),
    (["--precision", "float8"], "--precision float8: unknown value"),
    (["--strategy", "tpu"], "--strategy tpu: unknown value"),
    (["--tuner", "grid"], "--tuner grid: unknown value"),
    (["--epochs", "0"], "--epochs 0: must be at least 1"),
    (["--student-layers", "-1"], "--student-layers -1: must be at least 0"),
    (["--min-auc", "1.5"], "--min-auc 1.5: must be in [0, 1]"),
    (["--max-accuracy-drop", "-1"], "--max-accuracy-drop -1: must be at least 0"),
    (["--sparsity", "abc"], "invalid float value: 'abc'"),
    (["--splits", "80,20"], "--splits 80,20: three whole numbers of at least 1"),
    (["--splits", "70,0,30"], "--splits 70,0,30: three whole numbers of at least 1"),
    (["--splits", "0.7,0.15,0.15"], "three whole numbers (train, validation, test)"),
])
def test_a_bad_value_names_its_flag(argv, message):
    with pytest.raises(SettingError) as error:
        parse(*argv)
    assert message in str(error.value)


def test_splits_default_to_70_15_15_and_take_any_three_proportions():
    assert parse()["splits"].proportions == (70, 15, 15)
    assert parse("--splits", "8,1,1")["splits"].proportions == (8, 1, 1)


def test_no_absolute_auc_floor_by_default():
    assert parse()["blessing"].min_auc is None
    assert parse("--min-auc", "0.9")["blessing"].min_auc == 0.9


def test_settings_without_a_flag_are_named_by_stage():
    with pytest.raises(SettingError, match="distillation.epochs 0: must be at least 1"):
        Distillation(epochs=0)


def test_a_search_space_file_is_read_and_checked(tmp_path):
    good = tmp_path / "space.json"
    good.write_text(json.dumps({"units": {"choice": [8, 16]}}))
    assert parse("--search-space", str(good))["tuning"].search_space == {
        "units": {"choice": [8, 16]}}
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"units": 64}))
    with pytest.raises(SettingError, match="search space is empty"):
        parse("--search-space", str(empty))


@pytest.mark.parametrize("stage", [Training(seed=3), Tuning(trials=4), Distillation(alpha=0.5),
                                   Pruning(sparsity=0.5), Quantization(modes=("int8",)),
                                   Blessing(slice_features=("a", "b")),
                                   Splits(proportions=(8, 1, 1))])
def test_stages_round_trip_through_json(stage):
    assert type(stage).from_json(stage.to_json()) == stage


def test_run_settings_round_trip_and_work_subdir_is_stable():
    run = RunSettings(label="y", drop=("a",), training=Training(seed=1), work_dir="/w")
    assert RunSettings.from_json(run.to_json()) == run
    assert run.work_subdir("trainer", 1, "x") == run.work_subdir("trainer", 1, "x")
    assert run.work_subdir("trainer", 1, "x") != run.work_subdir("trainer", 2, "x")
    assert RunSettings(label="y").work_subdir("trainer") is None


def test_every_flagged_setting_has_help_text():
    for stage in settings.STAGES:
        for field in dataclasses.fields(stage):
            assert field.metadata["help"], (stage.KEY, field.name)


def test_a_quantization_mode_is_one_row_of_the_candidates_table():
    """--quantize, its help, the converter's options and the report's order all come from
    modules.verdict.candidates.MODES: a row added there is accepted and shown, nothing else to
    edit."""
    from modules.verdict import candidates
    from pipeline import report

    assert settings.QUANTIZATION_MODES == candidates.NAMES
    assert report.CANDIDATE_ORDER[-len(candidates.NAMES):] == candidates.NAMES
    help_text = dict((f.name, f.metadata["help"]) for f in dataclasses.fields(Quantization))
    assert all(f"{mode.name} ({mode.help})" in help_text["modes"] for mode in candidates.MODES)
    assert {m.name for m in candidates.MODES if m.integer} == {"int8", "qat", "pqat"}
    assert candidates.tflite_path("/q", "int8") == "/q/int8/model.tflite"
    with pytest.raises(ValueError, match="unknown quantization mode 'int4'"):
        candidates.mode("int4")
