"""pipeline.lineage: `--explain` shows every stage setting an execution ran with."""
import json

from components.csv_example_gen.executor import custom_config
from google.protobuf import json_format
from modules.settings import Csv, Pruning, Quantization, RunSettings, Training, Tuning
from pipeline.lineage import stage_lines


def test_a_compression_stage_shows_every_setting_it_ran_with():
    properties = {Pruning.KEY: Pruning(sparsity=0.6, epochs=3).to_json(),
                  RunSettings.KEY: RunSettings(label="y", training=Training(seed=7)).to_json(),
                  "component_id": "Pruner"}
    lines = stage_lines(properties)
    assert lines[0] == "  pruning: epochs=3 sparsity=0.6"
    assert lines[1].startswith("  run_settings: drop=none label=y training={cache_mb=128, "
                               "precision=float32, seed=7, strategy=none}")
    quantization = Quantization(modes=("int8", "qat"), deploy_mode="qat", qat_epochs=3)
    assert stage_lines({Quantization.KEY: quantization.to_json()}) == [
        "  quantization: deploy_mode=qat modes=int8,qat qat_epochs=3"]


def test_settings_inside_custom_config_are_found_as_tfx_stores_them():
    # The Tuner's custom_config: JSON whose values are the stages' JSON text.
    tuner = {"custom_config": json.dumps({Tuning.KEY: Tuning(trials=4).to_json(),
                                          RunSettings.KEY: RunSettings(label="y").to_json()})}
    lines = stage_lines(tuner)
    assert [line.split(":")[0] for line in lines] == ["  tuning", "  run_settings"]
    assert "trials=4" in lines[0]
    # CsvExampleGen's: the JSON of a CustomConfig proto holding a Struct in an Any.
    proto = json_format.MessageToJson(custom_config(Csv(delimiter=";", decimal=",")))
    [line] = stage_lines({"custom_config": proto})
    assert line.startswith("  csv: decimal=, delimiter=; keep=none na_values=")


def test_the_data_an_example_gen_read_is_its_folder_and_pattern():
    from pipeline.lineage import _data_paths

    config = json.dumps({"splits": [{"name": "single_split", "pattern": "credit.csv"}]})
    assert _data_paths({"input_base": "/data", "input_config": config}) == ["/data/credit.csv"]
    assert _data_paths({"deploy_mode": "int8"}) == []
