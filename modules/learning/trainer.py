"""The TFX Trainer's run_fn: trains the teacher with the project's loop and exports it."""
import os

import keras_tuner
from tfx.components.trainer.fn_args_utils import FnArgs

from modules import fileio
from modules.learning import training
from modules.models import export
from modules.models.hyperparameters import ModelConfig
from modules.models.model import build_core
from modules.settings import RunSettings, Teacher
from modules.verdict import evaluation

# custom_config key under which the executors pass the statistics artifact's URI
STATISTICS_URI = "statistics_uri"


def hyperparameter_values(hyperparameters) -> dict:
    """Values of a Keras Tuner HyperParameters config (the Tuner's best), or {}."""
    if not hyperparameters:
        return {}
    return dict(keras_tuner.HyperParameters.from_config(hyperparameters).values)


def statistics_uri(fn_args: FnArgs) -> str:
    """Where StatisticsGen's statistics are: the Trainer and Tuner executors put the URI of
    their `statistics` input into the custom config (`components.trainer`)."""
    uri = (fn_args.custom_config or {}).get(STATISTICS_URI)
    if not uri:
        raise ValueError("the statistics input is missing: wire StatisticsGen's statistics to "
                         "the Trainer and Tuner (pipeline.pipeline does)")
    return uri


def prepare(fn_args: FnArgs, settings: RunSettings) -> training.PreparedData:
    """The train and validation splits the Tuner and the Trainer are handed, prepared with
    the preprocessing fitted on StatisticsGen's statistics of the training split."""
    return training.prepare_data(fn_args.train_files, fn_args.eval_files, fn_args.schema_path,
                                 statistics_uri(fn_args), settings.label, settings.drop,
                                 settings.training.cache_mb,
                                 settings.work_subdir("label_counts"))


def run_fn(fn_args: FnArgs) -> None:
    settings = RunSettings.from_json(fn_args.custom_config[RunSettings.KEY])
    teacher = Teacher.from_json(fn_args.custom_config[Teacher.KEY])
    # First: a multi_worker strategy must be made before any TensorFlow op runs.
    strategy = training.make_strategy(settings.training.strategy)
    tuned = hyperparameter_values(fn_args.hyperparameters)
    config = ModelConfig.from_dict(tuned, epochs=teacher.epochs,
                                   precision=settings.training.precision)
    prepared = prepare(fn_args, settings)
    seed = settings.training.seed
    checkpoint_dir = settings.work_subdir("trainer", fn_args.train_files, config.to_dict(), seed)
    result = training.train_model(
        lambda: build_core(prepared.dim, prepared.num_classes, config, seed=seed,
                           name="teacher"),
        prepared, config, settings.training, run_dir=fn_args.model_run_dir,
        checkpoint_dir=checkpoint_dir, verbose=settings.verbose,
        epoch_rows=None)  # the final training: every epoch passes over every row
    artifact_uri = os.path.dirname(fn_args.serving_model_dir.rstrip("/"))
    with training.written_by_chief(strategy, artifact_uri) as destination:
        export.export_model(
            destination, result.model, prepared.preprocessor, prepared.columns, prepared.label,
            prepared.classes, {
                "role": "teacher", "hyperparameters": config.to_dict(), "tuned": bool(tuned),
                "seed": seed, "epochs_trained": result.epochs_trained,
                "best_epoch": result.best_epoch, "history": result.history,
                "eval_metrics": result.eval_metrics, "rows": prepared.row_counts,
                # measured once here, reused by the Distiller, Pruner, Evaluator
                "metrics": evaluation.keras_metrics(result.model, prepared.held_out)})
    # The finished model is in the artifact; a rerun starts afresh.
    if checkpoint_dir and strategy.extended.should_checkpoint:
        fileio.rmtree(checkpoint_dir)
