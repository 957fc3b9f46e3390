"""Magnitude pruning with the Model Optimization Toolkit, fine-tuned with the project's loop.

`prune_within_budget` prunes to the target sparsity, and steps down (`SPARSITY_STEPS`) while
the pruned model would take more than its share of the blessing budget: a student of a few
hundred weights on a few hundred rows may not survive 80% sparsity, and an unprunable model is
better shipped dense than not at all.

`prune_low_magnitude` wraps the prunable layers: our DenseBlock and FeatureCross (they
implement `PrunableLayer`), not the small logits layer, whose few weights all matter. The
wrapper advances its own `pruning_step` on every training call and applies the schedule's
mask; `UpdatePruningStep` (a stock callback, driven by our loop like any other) initializes
the step and enforces the masks at each epoch end, as it does for `model.fit`.
"""
import dataclasses
import logging
import math
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from modules import memory
from modules.learning import training
from modules.learning.loop import LossFn, cross_entropy
from modules.models.hyperparameters import ModelConfig
from modules.models.layers import DenseBlock, FeatureCross
from modules.settings import Blessing, Training
from modules.verdict import blessing, evaluation

log = logging.getLogger(__name__)

PRUNED_LAYERS = (DenseBlock, FeatureCross)
# Fractions of the target sparsity tried in turn; 0 keeps the model dense and untouched.
SPARSITY_STEPS = (1.0, 0.75, 0.5, 0.25, 0.0)
# The share of the blessing budget the pruned model must leave (the rest is quantization's).
PRUNE_BUDGET_SHARE = 0.25


def pruning_schedule(target_sparsity: float, steps_per_epoch: int, epochs: int):
    """Polynomial ramp from 0 to the target over the first two thirds of fine-tuning; the
    last third trains at the target sparsity to recover accuracy."""
    total = steps_per_epoch * epochs
    end_step = max(1, math.ceil(total * 2 / 3))
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=target_sparsity, begin_step=0, end_step=end_step,
        frequency=max(1, min(steps_per_epoch // 4, end_step // 4)))


def make_prunable(core: tf.keras.Model, schedule) -> tf.keras.Model:
    def wrap(layer):
        if isinstance(layer, PRUNED_LAYERS):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    return tf.keras.models.clone_model(core, clone_function=wrap)


def sparsity_report(model: tf.keras.Model) -> Dict[str, object]:
    """Fraction of zero weights per pruned weight, per layer, and over all pruned weights."""
    layers: List[Dict[str, object]] = []
    zeros = total = 0
    for layer in model.layers:
        if not isinstance(layer, PRUNED_LAYERS):
            continue
        for weight in layer.get_prunable_weights():
            values = weight.numpy()
            layer_zeros = int(np.sum(values == 0))
            layers.append({"layer": layer.name, "weight": weight.name.split("/")[-1].split(":")[0],
                           "shape": list(values.shape), "sparsity": layer_zeros / values.size})
            zeros, total = zeros + layer_zeros, total + values.size
    all_weights = sum(int(np.size(w)) for w in model.get_weights())
    all_zeros = sum(int(np.sum(w == 0)) for w in model.get_weights())
    return {"layers": layers, "pruned_weights_sparsity": zeros / total if total else 0.0,
            "model_sparsity": all_zeros / all_weights if all_weights else 0.0}


def prune(core: tf.keras.Model, prepared: training.PreparedData, config: ModelConfig, *,
          target_sparsity: float, epochs: int, run: Training = Training(),
          loss_fn: LossFn = cross_entropy, run_dir: Optional[str] = None,
          verbose: bool = True):
    """Prunes `core` to `target_sparsity` while fine-tuning; returns (stripped model, result).

    No early stopping: restoring an earlier epoch's weights would restore its lower sparsity.
    """
    weights = core.get_weights()

    def build():  # runs in the strategy's scope: the schedule counts global steps
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        steps_per_epoch = training.budget(prepared.train.rows, config.batch_size,
                                          replicas).steps_per_epoch
        clone = tf.keras.models.clone_model(core)
        clone.set_weights(weights)
        return make_prunable(clone, pruning_schedule(target_sparsity, steps_per_epoch, epochs))

    result = training.train_model(
        build, prepared, config, run, loss_fn=loss_fn, run_dir=run_dir, epochs=epochs,
        early_stopping=False,
        extra_callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], verbose=verbose)
    return tfmot.sparsity.keras.strip_pruning(result.model), result


@dataclasses.dataclass
class PruneAttempt:
    sparsity: float
    metrics: Dict[str, float]  # on validation (modules.verdict.evaluation)
    budget_left: float

    def row(self) -> Dict[str, Any]:
        return {"sparsity": self.sparsity, "budget_left": self.budget_left,
                **{f"val_{k}": self.metrics[k] for k in ("accuracy", "auc", "log_loss")}}


@dataclasses.dataclass
class PruneOutcome:
    model: tf.keras.Model  # stripped of pruning wrappers
    result: Optional[training.TrainResult]  # None when the model was kept dense
    attempts: List[PruneAttempt]
    chosen: PruneAttempt


def _rank(attempt: PruneAttempt):
    return attempt.budget_left, -attempt.metrics["log_loss"]


def prune_within_budget(core: tf.keras.Model, prepared: training.PreparedData,
                        config: ModelConfig, *, target_sparsity: float,
                        teacher: evaluation.Scores, budget: Blessing,
                        run: Training = Training(),
                        budget_share: float = PRUNE_BUDGET_SHARE,
                        **prune_kwargs) -> PruneOutcome:
    """Prunes at the target sparsity, then at lower ones (SPARSITY_STEPS), until the pruned
    model leaves `budget_share` of the blessing budget against the teacher (whose `Scores`
    on the held-out rows of `prepared` are `teacher`: `blessing.budget_left`); if none does,
    the attempt that leaves the most, then has the lowest validation log loss (ties: the
    sparser). On a few dozen validation rows every sparsity can leave the same share while
    the sparser ones are far less calibrated (26 iris rows: log loss 0.16 at 0.8 against
    0.04 dense, a test log loss twice the dense one's)."""
    ladder = sorted({round(target_sparsity * step, 4) for step in SPARSITY_STEPS}, reverse=True)
    if not any(isinstance(layer, PRUNED_LAYERS) for layer in core.layers):
        ladder = [0.0]  # a linear student: its logits layer is all it has, and all matters
    attempts: List[PruneAttempt] = []
    best = None
    for sparsity in ladder:
        memory.release()
        if sparsity > 0:
            model, result = prune(core, prepared, config, target_sparsity=sparsity,
                                  run=run, **prune_kwargs)
        else:
            model, result = core, None
        scores = evaluation.keras_scores(model, prepared.held_out)
        attempt = PruneAttempt(sparsity, scores.metrics(), blessing.budget_left(
            blessing.drops_from(teacher, scores, seed=run.seed), budget))
        attempts.append(attempt)
        log.info("pruner: sparsity %.2f: accuracy %.4f, AUC %.4f, budget left %+.2f", sparsity,
                 attempt.metrics["accuracy"], attempt.metrics["auc"], attempt.budget_left)
        if best is None or _rank(attempt) > _rank(best.chosen):
            best = PruneOutcome(model, result, attempts, attempt)
        if attempt.budget_left >= budget_share:
            return PruneOutcome(model, result, attempts, attempt)
    return best
