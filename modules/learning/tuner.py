"""The TFX Tuner's tuner_fn: a Keras Tuner search whose trials train with the project's loop.

keras-tuner 1.4 builds and fits Keras 3 models on its default path and rejects tf_keras ones,
so `LoopTuner` overrides `run_trial` (the documented hook for custom training loops): each
trial builds the core with `build_core`, trains it with `modules.learning.training.train_model` and
returns its best validation log loss (a proper score: on a few thousand rows it ranks trials
on less noise than ROC AUC, which only counts the order of the scores). A trial's epoch is at
least `Tuning.epoch_steps` optimizer steps, so that even Hyperband's shortest trials train far
enough to be ranked. Under Hyperband a trial that continues another
(`tuner/trial_id`) restores that trial's last checkpoint (weights and optimizer) and trains only
from `tuner/initial_epoch` to `tuner/epochs`.
"""
import dataclasses
import logging
import os
import time
from typing import Any, Dict, Optional

import keras_tuner
import tensorflow as tf
from tfx.components.tuner.component import TunerFnResult
from tfx.components.trainer.fn_args_utils import FnArgs

from modules import fileio, memory
from modules.learning import trainer, training
from modules.models.hyperparameters import ModelConfig, search_space_for
from modules.models.model import build_core
from modules.settings import RunSettings, Tuning

log = logging.getLogger(__name__)
OBJECTIVE = keras_tuner.Objective("val_loss", direction="min")

def declare(hp: keras_tuner.HyperParameters, space: Dict[str, Any]) -> Dict[str, Any]:
    """Declares `space` on `hp` and returns the current values."""
    values = {}
    for name, spec in space.items():
        if not isinstance(spec, dict):
            values[name] = hp.Fixed(name, spec)
        elif "choice" in spec:
            values[name] = hp.Choice(name, spec["choice"])
        elif "int" in spec:
            low, high = spec["int"]
            values[name] = hp.Int(name, low, high, step=spec.get("step"),
                                  sampling=spec.get("sampling", "linear"))
        else:
            low, high = spec["float"]
            values[name] = hp.Float(name, low, high, step=spec.get("step"),
                                    sampling=spec.get("sampling", "linear"))
    return values


class LoopTuner(keras_tuner.Tuner):
    """A Keras Tuner whose trials train with `modules.learning.training.train_model`."""

    def __init__(self, oracle, prepared: training.PreparedData, settings: RunSettings,
                 space: Dict[str, Any], max_epochs: int,
                 epoch_steps: int = training.MIN_STEPS_PER_EPOCH, **kwargs):
        self.prepared = prepared
        self.settings = settings
        self.space = space
        self.max_epochs = max_epochs
        self.epoch_steps = epoch_steps
        super().__init__(oracle=oracle, hypermodel=self._build, **kwargs)

    def search(self, *args, **kwargs):
        # The Tuner in its own process (Kubeflow) has imported what it runs by now.
        with memory.startup_frozen():
            return super().search(*args, **kwargs)

    def _config(self, hp: keras_tuner.HyperParameters) -> ModelConfig:
        # The trial's epochs are the tuner's budget, not the teacher's --epochs.
        return ModelConfig.from_dict(declare(hp, self.space), epochs=self.max_epochs,
                                     precision=self.settings.training.precision)

    def _build(self, hp: keras_tuner.HyperParameters) -> tf.keras.Model:
        return build_core(self.prepared.dim, self.prepared.num_classes,
                          self._config(hp), seed=self.settings.training.seed)

    def _checkpoint_dir(self, trial_id: str) -> str:
        return os.path.join(self.get_trial_dir(trial_id), "checkpoints")

    def run_trial(self, trial, *args, **kwargs) -> Dict[str, float]:
        memory.release()  # drop the previous trial's graphs and layers
        started = time.time()
        hp = trial.hyperparameters
        config = self._config(hp)
        epochs = int(hp.values.get("tuner/epochs", config.epochs))
        initial_epoch = int(hp.values.get("tuner/initial_epoch", 0))
        previous = hp.values.get("tuner/trial_id")

        def continue_previous(model):
            latest = tf.train.latest_checkpoint(self._checkpoint_dir(previous))
            if latest is None:
                raise keras_tuner.errors.FailedTrialError(
                    f"trial {previous} left no checkpoint to continue from")
            tf.train.Checkpoint(model=model, optimizer=model.optimizer).restore(
                latest).expect_partial()

        result = training.train_model(
            lambda: self._build(hp), self.prepared, config, epochs=epochs,
            initial_epoch=initial_epoch if previous else 0,
            restore_model=continue_previous if previous else None,
            run_dir=self.get_trial_dir(trial.trial_id),
            checkpoint_dir=self._checkpoint_dir(trial.trial_id),
            verbose=False, min_steps_per_epoch=self.epoch_steps, run=self.settings.training)
        history = result.history
        best = min(range(len(history.get("val_loss", []))), default=None,
                   key=lambda epoch: history["val_loss"][epoch])
        loss, auc = ((history["val_loss"][best], history["val_auc"][best]) if best is not None
                     else (result.eval_metrics["val_loss"], result.eval_metrics["val_auc"]))
        log.info("trial %s: val_loss %.4f (val_auc %.4f) after %d epoch(s) in %.1f s: %s",
                 trial.trial_id, loss, auc, result.epochs_trained, time.time() - started,
                 _describe(hp.values))
        return {"val_loss": float(loss), "val_auc": float(auc),
                "epochs_trained": float(result.epochs_trained)}


def _describe(values: Dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in values.items() if not k.startswith("tuner/"))


def make_oracle(kind: str, trials: int, max_epochs: int, seed: int):
    """RandomSearch, Hyperband or BayesianOptimization oracle on validation log loss.

    Hyperband sizes its own brackets from `max_epochs` (factor 3); `trials` caps it as well.
    """
    if kind == "random":
        return keras_tuner.oracles.RandomSearchOracle(OBJECTIVE, max_trials=trials, seed=seed)
    if kind == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(
            OBJECTIVE, max_trials=trials, num_initial_points=min(3, trials), seed=seed)
    if kind == "hyperband":
        oracle = keras_tuner.oracles.HyperbandOracle(OBJECTIVE, max_epochs=max_epochs, factor=3,
                                                     seed=seed)
        oracle.max_trials = trials
        return oracle
    raise ValueError(f"unknown tuner '{kind}'; choose random, hyperband or bayesian")


def make_tuner(prepared: training.PreparedData, settings: RunSettings, tuning: Tuning,
               directory: str, project_name: str = "search",
               train_rows: Optional[int] = None) -> LoopTuner:
    """The tuner over `tuning.search_space`, or the default space sized to `train_rows` (the
    whole training split's rows; default: those of `prepared`, which may be a sample)."""
    space = (search_space_for(train_rows or prepared.train.rows)
             if tuning.search_space is None else tuning.search_space)
    return LoopTuner(make_oracle(tuning.tuner, tuning.trials, tuning.max_epochs,
                                 settings.training.seed), prepared, settings, space,
                     tuning.max_epochs, tuning.epoch_steps, directory=directory,
                     project_name=project_name, overwrite=False)


def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
    """Called by the TFX Tuner: prepares the data once and returns the tuner to search with.

    The tuner's directory is kept between runs (under the run settings' work_dir, keyed by
    data and search), so an interrupted search resumes where it stopped.
    """
    settings = RunSettings.from_json(fn_args.custom_config[RunSettings.KEY])
    tuning = Tuning.from_json(fn_args.custom_config[Tuning.KEY])
    prepared = trainer.prepare(fn_args, settings)
    train_rows = prepared.train.rows
    if tuning.sample_rows and prepared.train.rows > tuning.sample_rows:
        log.info("tuner: trials train on a sample of %d of the %d training rows "
                 "(--tuner-sample-rows; the Trainer uses them all)", tuning.sample_rows,
                 prepared.train.rows)
        prepared = dataclasses.replace(prepared, train=prepared.train.sample(
            tuning.sample_rows, seed=settings.training.seed,
            cache_mb=settings.training.cache_mb))
    directory = (settings.work_subdir("tuner", fn_args.train_files, tuning.to_dict(),
                                      settings.training.to_dict())
                 or os.path.join(fn_args.working_dir, "tuner"))
    tuner = make_tuner(prepared, settings, tuning, directory, train_rows=train_rows)
    return TunerFnResult(tuner=tuner, fit_kwargs={"verbose": 0})  # we log one line per trial


def trials_table(tuner: keras_tuner.Tuner) -> list:
    """Every trial (completed or not): hyperparameters, objective, epochs trained, status."""
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        metrics = trial.metrics
        epochs = (metrics.get_last_value("epochs_trained")
                  if metrics.exists("epochs_trained") else None)
        rows.append({
            "trial_id": trial.trial_id, "status": trial.status, "score": trial.score,
            "epochs_trained": int(epochs) if epochs is not None else 0,
            "hyperparameters": {k: v for k, v in trial.hyperparameters.values.items()},
            "message": (trial.message or "").strip().splitlines()[-1:] or None,
        })
    return rows


def write_trials_table(tuner: keras_tuner.Tuner, directory: str) -> str:
    path = os.path.join(directory, "trials.json")
    fileio.write_json(path, trials_table(tuner), default=str)
    return path
