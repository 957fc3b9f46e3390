"""The whole DAG, defined once. Runners (local, Beam, Kubeflow) only choose how to run it."""
from typing import List

# Modules, not `tfx.v1`: that one also imports the Google Cloud extensions (5 s a start).
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.schema_gen.component import SchemaGen
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.dsl.components.base import base_node, executor_spec
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy)
from tfx.orchestration import pipeline
from tfx.proto import example_gen_pb2, trainer_pb2
from tfx.types import Channel, standard_artifacts

from components.baselines import Baselines
from components.csv_example_gen import executor as csv_example_gen
from components.data_validator import DataValidator
from components.distiller import Distiller
from components.evaluator import Evaluator
from components.pruner import Pruner
from components.pusher import Pusher
from components.quantizer import Quantizer
from components.trainer import Trainer
from components.tuner import Tuner
from modules.reading import data, preprocessing
from modules.settings import RunSettings, Teacher, Tuning
from pipeline import metadata
from pipeline.configs import PipelineConfig

TUNER_FN = "modules.learning.tuner.tuner_fn"
RUN_FN = "modules.learning.trainer.run_fn"


def create_components(config: PipelineConfig) -> List[base_node.BaseNode]:
    """The pipeline's components in execution order, wired by their channels."""
    # TFX's file-based ExampleGen with our CSV executor (markers, dialects, gzip), under the
    # id users know.
    example_gen = FileBasedExampleGen(
        input_base=config.data_root,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="single_split", pattern=config.data_pattern)]),
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
            for name, buckets in zip(data.SPLITS, config.splits.proportions)])),
        custom_config=csv_example_gen.custom_config(config.csv),
        custom_executor_spec=executor_spec.BeamExecutorSpec(csv_example_gen.Executor),
    ).with_id("CsvExampleGen").with_beam_pipeline_args(config.data_beam_args)
    examples = example_gen.outputs["examples"]
    # Its statistics of the training split are what the preprocessing is fitted on
    # (modules.reading.preprocessing.fit_preprocessor): means, deviations, quantiles, vocabularies.
    statistics_gen = StatisticsGen(
        examples=examples, stats_options=preprocessing.statistics_options(),
    ).with_beam_pipeline_args(config.data_beam_args)
    statistics = statistics_gen.outputs["statistics"]
    if config.schema_path:
        schema_gen = ImportSchemaGen(schema_file=config.schema_path)
    else:
        schema_gen = SchemaGen(
            statistics=statistics, infer_feature_shape=False)
    validator = DataValidator(statistics=statistics,
                              schema=schema_gen.outputs["schema"],
                              fail_on_anomalies=bool(config.schema_path))
    components = [example_gen, statistics_gen, schema_gen, validator]

    run = config.run_settings
    hyperparameters = None
    if config.tuning.tuner != "none":
        tuner = Tuner(
            tuner_fn=TUNER_FN, examples=examples, schema=schema_gen.outputs["schema"],
            statistics=statistics,
            train_args=trainer_pb2.TrainArgs(splits=[data.TRAIN]),
            eval_args=trainer_pb2.EvalArgs(splits=[data.VALIDATION]),
            custom_config={RunSettings.KEY: run.to_json(), Tuning.KEY: config.tuning.to_json(),
                           Teacher.KEY: config.teacher.to_json()})
        tuner.add_upstream_node(validator)  # no tuning on data that failed validation
        hyperparameters = tuner.outputs["best_hyperparameters"]
        components.append(tuner)
    trainer = Trainer(
        run_fn=RUN_FN, examples=examples, schema=schema_gen.outputs["schema"],
        statistics=statistics,
        hyperparameters=hyperparameters, train_args=trainer_pb2.TrainArgs(splits=[data.TRAIN]),
        eval_args=trainer_pb2.EvalArgs(splits=[data.VALIDATION]),
        custom_config={RunSettings.KEY: run.to_json(), Teacher.KEY: config.teacher.to_json()})
    trainer.add_upstream_node(validator)
    network = trainer.outputs["model"]
    # The linear model and the trees; the teacher is the better of the network and the trees.
    baselines = Baselines(network=network, examples=examples, run_settings=run,
                          config=config.baselines)
    teacher = baselines.outputs["teacher"]
    distiller = Distiller(teacher=teacher, examples=examples, hyperparameters=hyperparameters,
                          linear=baselines.outputs["linear"], run_settings=run,
                          config=config.distillation, budget=config.blessing)
    pruner = Pruner(model=distiller.outputs["student"], examples=examples, teacher=teacher,
                    run_settings=run, config=config.pruning, budget=config.blessing)
    quantizer = Quantizer(model=pruner.outputs["pruned_model"], examples=examples,
                          run_settings=run, config=config.quantization)
    resolver = None
    if config.resolve_baseline:  # the last blessed deployable model, from ML Metadata
        resolver = Resolver(
            strategy_class=LatestBlessedModelStrategy,
            model=Channel(type=standard_artifacts.Model),
            model_blessing=Channel(type=standard_artifacts.ModelBlessing),
        ).with_id("latest_blessed_model_resolver")
    evaluator = Evaluator(
        teacher=teacher, network=network, trees=baselines.outputs["trees"],
        linear=baselines.outputs["linear"], student_scratch=distiller.outputs["student_scratch"],
        student=distiller.outputs["student"], pruned=pruner.outputs["pruned_model"],
        quantized=quantizer.outputs["quantized_model"], examples=examples,
        baseline=resolver.outputs["model"] if resolver else None, run_settings=run,
        config=config.blessing, deploy_mode=config.quantization.deploy_mode)
    pusher = Pusher(
        quantized=quantizer.outputs["quantized_model"], pruned=pruner.outputs["pruned_model"],
        teacher=teacher, examples=examples, blessing=evaluator.outputs["blessing"],
        evaluation=evaluator.outputs["evaluation"], serving_dir=config.serving_dir,
        deploy_mode=config.quantization.deploy_mode)
    components += [trainer, baselines, distiller, pruner, quantizer,
                   *([resolver] if resolver else []),
                   evaluator, pusher]
    return components


def create_pipeline(config: PipelineConfig) -> pipeline.Pipeline:
    connection = (metadata.connection_config(config.metadata) if config.metadata else None)
    return pipeline.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=create_components(config),
        enable_cache=config.enable_cache,
        metadata_connection_config=connection,
        beam_pipeline_args=list(config.beam_args))
