"""Loading the splits as the Trainer does, and the DAG that create_pipeline builds."""
import argparse
import json
import os

import modules  # noqa: F401  (must precede tensorflow)

import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from conftest import features_of, write_statistics
from modules.learning import training
from modules.reading.preprocessing import FeaturePreprocessor
from modules.settings import Distillation, Splits, Tuning
from pipeline.configs import PipelineConfig
from pipeline.pipeline import create_components, create_pipeline


def _example(fare, company, label):
    feature = {"company": tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[company.encode()] if company is not None else [])),
        "fare": tf.train.Feature(float_list=tf.train.FloatList(
            value=[fare] if fare is not None else [])),
        "label": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[label.encode()] if label else []))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in rows:
            writer.write(_example(*row))
    return path


def _prepare(tmp_path, train, evaluation) -> training.PreparedData:
    """`training.prepare_data` of (fare, company, label) rows written as the train and eval
    splits, with their schema and the training rows' statistics."""
    train_file = _write(str(tmp_path / "Split-train" / "data.gz"), train)
    eval_file = _write(str(tmp_path / "Split-eval" / "data.gz"), evaluation)
    schema = schema_pb2.Schema()
    for name, kind in (("company", schema_pb2.BYTES), ("fare", schema_pb2.FLOAT),
                       ("label", schema_pb2.BYTES)):
        schema.feature.add(name=name, type=kind)
    schema_path = tmp_path / "schema.pbtxt"
    schema_path.write_text(str(schema))
    statistics = write_statistics(str(tmp_path / "statistics"), [_example(*row) for row in train])
    return training.prepare_data([train_file], [eval_file], str(schema_path), statistics,
                                 "label")


def test_rows_without_label_and_unseen_eval_classes_are_dropped_and_counted(tmp_path):
    train = [(float(i), "Ünïcode cab" if i % 2 else "Flash", "yes" if i % 3 else "no")
             for i in range(60)] + [(1.0, "Flash", "")] * 4
    evaluation = [(2.0, "Flash", "yes"), (3.0, None, "no"), (None, "Flash", "maybe"),
                  (4.0, "Flash", "maybe"), (5.0, "Flash", "")]
    prepared = _prepare(tmp_path, train, evaluation)
    assert prepared.classes == ["no", "yes"]
    assert prepared.row_counts == {"train_rows": 60, "validation_rows": 2,
                                   "dropped_missing_label": 5, "dropped_unseen_class": 2}
    assert features_of(prepared.held_out).shape == (2, prepared.preprocessor.output_dim)
    company = [s for s in prepared.preprocessor.layout() if s["feature"] == "company"][0]
    assert "Ünïcode cab" in company["vocabulary"]


def test_equal_preparations_share_one_trace_and_others_have_their_own(tmp_path):
    """The steps of a local run prepare their splits in one process, each from its own copy
    of the preprocessing: the parsing and preprocessing are traced once for them all, and a
    preparation with other classes (or preprocessing) is not served by that trace."""
    rows = [(float(i), "Flash" if i % 2 else "City", "yes" if i % 3 else "no") for i in range(30)]
    prepared = _prepare(tmp_path, rows, rows)
    copy = FeaturePreprocessor.from_config(json.loads(json.dumps(
        prepared.preprocessor.get_config())))
    own = training._block_preparation(prepared.columns, prepared.label, prepared.preprocessor,
                                      prepared.classes)
    assert training._block_preparation(prepared.columns, prepared.label, copy,
                                       prepared.classes) is own
    flipped = training._block_preparation(prepared.columns, prepared.label, copy,
                                          prepared.classes[::-1])
    assert flipped is not own
    batch = tf.constant([_example(3.0, "Flash", "no"), _example(4.0, "City", "yes")])
    (x, targets), (flipped_x, flipped_targets) = own(batch), flipped(batch)
    assert targets["label"].numpy().tolist() == [0, 1]  # classes no, yes
    assert flipped_targets["label"].numpy().tolist() == [1, 0]  # classes yes, no
    assert (x.numpy() == flipped_x.numpy()).all()


def _config(tmp_path, **overrides):
    values = dict(pipeline_root=str(tmp_path / "root"), data_root=str(tmp_path),
                  data_pattern="data.csv", serving_dir=str(tmp_path / "serving"),
                  work_dir=str(tmp_path / "work"),
                  metadata=str(tmp_path / "metadata.sqlite"))
    values.update(overrides)
    return PipelineConfig(**values)


def test_create_pipeline_wires_every_component(tmp_path):
    components = {c.id: c for c in create_pipeline(_config(tmp_path)).components}
    assert sorted(components) == sorted([
        "CsvExampleGen", "StatisticsGen", "SchemaGen", "DataValidator", "Tuner", "Trainer",
        "Baselines", "Distiller", "Pruner", "Quantizer", "latest_blessed_model_resolver",
        "Evaluator", "Pusher"])
    upstream = {name: {n.id for n in c.upstream_nodes} for name, c in components.items()}
    # The preprocessing is fitted on StatisticsGen's statistics (computed on Beam).
    assert upstream["Trainer"] == {"CsvExampleGen", "StatisticsGen", "SchemaGen",
                                   "DataValidator", "Tuner"}
    assert upstream["Tuner"] == {"CsvExampleGen", "StatisticsGen", "SchemaGen",
                                 "DataValidator"}
    # The teacher is the Baselines' choice between the Trainer's network and the trees.
    assert upstream["Baselines"] == {"CsvExampleGen", "Trainer"}
    assert upstream["Distiller"] == {"CsvExampleGen", "Baselines", "Tuner"}
    assert upstream["Pruner"] == {"CsvExampleGen", "Distiller", "Baselines"}
    assert upstream["Evaluator"] >= {"Trainer", "Baselines", "Distiller", "Pruner",
                                     "Quantizer", "latest_blessed_model_resolver"}
    assert upstream["Pusher"] >= {"Evaluator", "Quantizer", "Pruner"}
    trainer_hp = components["Trainer"].inputs["hyperparameters"]
    assert trainer_hp.producer_component_id == "Tuner"


def test_example_gen_splits_three_ways_and_trainers_validate_on_validation(tmp_path):
    components = {c.id: c for c in create_components(_config(tmp_path,
                                                              splits=Splits((8, 1, 1))))}
    output = json.loads(components["CsvExampleGen"].exec_properties["output_config"])
    assert [(s["name"], s["hash_buckets"]) for s in output["split_config"]["splits"]] == [
        ("train", 8), ("validation", 1), ("test", 1)]
    for name in ("Tuner", "Trainer"):
        assert json.loads(components[name].exec_properties["train_args"])["splits"] == [
            "train"]
        assert json.loads(components[name].exec_properties["eval_args"])["splits"] == [
            "validation"]


def test_curated_schema_swaps_in_import_schema_gen_and_fails_on_anomalies(tmp_path):
    components = {c.id: c for c in create_components(_config(tmp_path, schema_path="/s.pbtxt"))}
    assert type(components["ImportSchemaGen"]).__name__ == "ImportSchemaGen"
    assert components["DataValidator"].exec_properties["fail_on_anomalies"] == 1
    components = {c.id: c for c in create_components(_config(tmp_path))}
    assert components["DataValidator"].exec_properties["fail_on_anomalies"] == 0


def test_no_tuner_leaves_the_trainer_on_default_hyperparameters(tmp_path):
    components = {c.id: c for c in create_components(_config(tmp_path,
                                                              tuning=Tuning(tuner="none")))}
    assert "Tuner" not in components
    assert "hyperparameters" not in components["Trainer"].inputs


def test_caching_flag_and_beam_args_reach_the_pipeline(tmp_path):
    beam_args = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")
    dag = create_pipeline(_config(tmp_path, enable_cache=False, beam_args=beam_args))
    assert dag.enable_cache is False
    assert dag.beam_pipeline_args == list(beam_args)
    assert create_pipeline(_config(tmp_path)).enable_cache is True
    assert dag.metadata_connection_config.sqlite.filename_uri == str(
        tmp_path / "metadata.sqlite")


def test_local_runs_on_the_in_process_beam_runner_package_nothing_for_staging():
    """TFX builds a 49 MB package of itself for remote Beam workers unless the Beam args name
    the workers' dependencies; local runs on the default runner name our setup.py instead,
    compiled (Kubeflow) and other runners keep TFX's packaging."""
    from pipeline import configs

    def args(*beam_arg):
        return argparse.Namespace(beam_arg=list(beam_arg))

    setup = f"--setup_file={configs.SETUP_FILE}"
    assert os.path.isfile(configs.SETUP_FILE)
    assert configs.beam_args(args(), on_this_machine=True) == (
        *configs.DEFAULT_BEAM_ARGS, setup)
    assert setup not in configs.beam_args(args("--runner=PortableRunner"), on_this_machine=True)
    assert setup not in configs.beam_args(args())
    assert configs.beam_args(args("--direct_num_workers=2"), on_this_machine=True)[-1] == (
        "--direct_num_workers=2")  # the user's args come last and win


def test_each_component_receives_its_stage_config(tmp_path):
    config = _config(tmp_path, distillation=Distillation(alpha=0.2))
    components = {c.id: c for c in create_components(config)}
    assert Distillation.from_json(components["Distiller"].exec_properties[
        Distillation.KEY]) == Distillation(alpha=0.2)
    tuner_config = components["Tuner"].exec_properties["custom_config"]
    assert Tuning.KEY in tuner_config and "run_settings" in tuner_config


def test_large_inputs_in_several_files_give_the_data_components_a_worker_per_file(
        tmp_path, monkeypatch):
    from pipeline import configs

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    half = configs.LARGE_INPUT_BYTES // 2
    assert configs.data_beam_args([half, half - 1]) == ()  # small: one process
    assert configs.data_beam_args([10 ** 9]) == ()  # one file is read by one worker
    large = configs.data_beam_args([half] * 3)
    assert large == ("--direct_running_mode=multi_processing", "--direct_num_workers=3")
    assert configs.data_beam_args([half] * 9)[1] == "--direct_num_workers=4"  # the cores
    # A mode or runner the user chose wins.
    assert configs.data_beam_args([half] * 3, ["--direct_running_mode=in_memory"]) == ()
    assert configs.data_beam_args([half] * 3, ["--runner=DataflowRunner"]) == ()
    assert configs.data_beam_args([half] * 3, ["--temp_location=/tmp/x"]) == large
    components = {c.id: c for c in create_components(_config(tmp_path, data_beam_args=large))}
    for name in ("CsvExampleGen", "StatisticsGen"):
        assert list(components[name].executor_spec.beam_pipeline_args) == list(large)
    assert not components["Evaluator"].executor_spec.beam_pipeline_args
