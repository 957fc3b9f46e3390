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

With `workers` > 1, that many trials run at once, each on its own thread, as copies of the
tuner sharing its oracle (Keras Tuner's oracles serialize their calls for parallel tuners):
a trial spends about half its time tracing its new model's steps, which holds Python, and
much of the rest in TensorFlow's kernels, which do not, so one trial's steps run while
another is traced. The search is the same as with one worker: a trial's result does not
depend on its thread (every random draw in it is seeded), and the oracles hand out a trial
that depends on results only once every earlier trial has finished (`_InOrder`).
"""
import copy
import dataclasses
import logging
import os
import threading
import time
from typing import Any, Dict, Optional

import keras_tuner
import tensorflow as tf
from keras_tuner.src.engine import oracle as oracle_module
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


# How long a worker waits before asking again when the oracle had no trial for it (Hyperband
# between rounds: the next round's trials depend on every trial of this one).
IDLE_WAIT_SECONDS = 0.2


def _release_oracle_lock(oracle) -> None:
    """Releases `oracle`'s lock if this thread holds it. keras-tuner 1.4.8's `synchronized`
    (keras_tuner/src/engine/oracle.py) releases it only when the call returns: an error
    raised inside one (3 failed trials in a row end the search from `end_trial`) leaves it
    held, and every other worker would wait for it forever."""
    if oracle_module.THREADS[oracle] == threading.current_thread().name:
        oracle_module.THREADS[oracle] = None
        oracle_module.LOCKS[oracle].release()


class _Halted(Exception):
    """Another worker failed: this one starts no further trial."""


class LoopTuner(keras_tuner.Tuner):
    """A Keras Tuner whose trials train with `modules.learning.training.train_model`, `workers`
    at a time (see the module docstring)."""

    def __init__(self, oracle, prepared: training.PreparedData, settings: RunSettings,
                 space: Dict[str, Any], max_epochs: int,
                 epoch_steps: int = training.MIN_STEPS_PER_EPOCH, workers: int = 1, **kwargs):
        self.prepared = prepared
        self.settings = settings
        self.space = space
        self.max_epochs = max_epochs
        self.epoch_steps = epoch_steps
        self.workers = max(1, int(workers))
        self._began = True  # whether the last trial asked for began
        self._halt = threading.Event()
        super().__init__(oracle=oracle, hypermodel=self._build, **kwargs)

    def search(self, *args, **kwargs):
        # The Tuner in its own process (Kubeflow) has imported what it runs by now.
        with memory.startup_frozen():
            if self.workers == 1:
                return super().search(*args, **kwargs)
            return self._search_in_threads(*args, **kwargs)

    def _search_in_threads(self, *args, **kwargs):
        """Keras Tuner's search loop on this tuner and on `workers - 1` copies of it, each on
        its own thread and with its own tuner id; the first error stops every worker from
        starting another trial and is raised once all have stopped."""
        self._halt.clear()
        failures = []

        def work(tuner):
            try:
                keras_tuner.Tuner.search(tuner, *args, **kwargs)
            except _Halted:
                pass
            except BaseException as error:  # raised in the calling thread, below
                failures.append(error)
                self._halt.set()
                _release_oracle_lock(tuner.oracle)

        copies = []
        for i in range(1, self.workers):
            worker = copy.copy(self)
            worker.tuner_id = f"{self.tuner_id}_{i}"
            copies.append(worker)
        threads = [threading.Thread(target=work, args=(worker,), name=worker.tuner_id)
                   for worker in copies]
        for thread in threads:
            thread.start()
        try:
            work(self)
        finally:
            for thread in threads:
                thread.join()
        if failures:
            raise failures[0]

    def pre_create_trial(self):
        if self._halt.is_set():
            raise _Halted()
        if not self._began:  # the oracle had no trial for this worker: do not spin
            time.sleep(IDLE_WAIT_SECONDS)
        self._began = False

    def on_trial_begin(self, trial):
        self._began = True
        super().on_trial_begin(trial)

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
        # drop the previous trial's graphs and layers (Keras' state too, unless another
        # worker's model is in training)
        memory.release(keras_state=self.workers == 1)
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


class _InOrder:
    """Mixed into a Keras Tuner oracle: while other workers' trials run, it hands out only a
    trial that does not depend on their results, and otherwise answers IDLE (ask again).
    Concurrent workers thus get the very trials one worker gets, in the same order, whatever
    their timing: Hyperband would promote the best of the trials finished so far, Bayesian
    optimization fit its model to them. (Random search's trials depend on no result.)"""

    def populate_space(self, trial_id):
        if self.ongoing_trials and self._needs_running_results():
            return {"status": "IDLE"}
        return super().populate_space(trial_id)


class HyperbandOracle(_InOrder, keras_tuner.oracles.HyperbandOracle):
    def _needs_running_results(self) -> bool:
        """Whether the next trial is anything but a random one of the current bracket's first
        round (a promotion, or a new bracket once this one is handed out)."""
        self._remove_completed_brackets()
        if not self._brackets:
            return True
        bracket = self._brackets[0]
        return len(bracket["rounds"][0]) >= self._get_size(bracket["bracket_num"], 0)


class BayesianOptimizationOracle(_InOrder, keras_tuner.oracles.BayesianOptimizationOracle):
    def _needs_running_results(self) -> bool:
        """Whether the next trial comes from the model of the finished ones rather than
        being one of the random initial points."""
        completed = sum(trial.status == "COMPLETED" for trial in self.trials.values())
        return completed + len(self.ongoing_trials) >= self.num_initial_points


def make_oracle(kind: str, trials: int, max_epochs: int, seed: int):
    """RandomSearch, Hyperband or BayesianOptimization oracle on validation log loss.

    Hyperband sizes its own brackets from `max_epochs` (factor 3); `trials` caps it as well.
    """
    # Keras Tuner reads a seed of 0 as none (it draws one from Python's global generator):
    # seed 0 stands for 10,001 here, outside its own draws (1-10,000).
    seed = seed or 10_001
    if kind == "random":
        return keras_tuner.oracles.RandomSearchOracle(OBJECTIVE, max_trials=trials, seed=seed)
    if kind == "bayesian":
        return BayesianOptimizationOracle(OBJECTIVE, max_trials=trials,
                                          num_initial_points=min(3, trials), seed=seed)
    if kind == "hyperband":
        oracle = HyperbandOracle(OBJECTIVE, max_epochs=max_epochs, factor=3, seed=seed)
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
    # Concurrent trials under a distribution strategy could interleave their collectives.
    workers = tuning.workers if settings.training.strategy == "none" else 1
    return LoopTuner(make_oracle(tuning.tuner, tuning.trials, tuning.max_epochs,
                                 settings.training.seed), prepared, settings, space,
                     tuning.max_epochs, tuning.epoch_steps, workers, directory=directory,
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
