"""The baselines every run is measured against, and the choice of the teacher.

- linear: logistic regression on the preprocessed features, trained by the project's loop (a
  core with no hidden layer, `modules.models.model.build_core` with num_layers 0). Its weight decay
  is chosen on validation from L2_GRID: the candidates train side by side as towers of one
  model (`modules.models.model.Towers`, each early-stopped on its own validation loss) and the one
  with the lowest validation log loss is kept.
- trees: gradient-boosted trees from TensorFlow Decision Forests (`modules.models.trees`), on a
  uniform sample of at most `--trees-sample-rows` training rows, early-stopped on their own
  10% of those rows (none below 10,000): the validation rows stay clean for the choice.
- the teacher (`choose_teacher`): the linear model, unless the tuned network or the trees have
  a lower validation log loss than it beyond noise (then the lower of those that do): the
  Distiller learns from the best model found, and every drop is measured against it.
"""
import dataclasses
import logging
from typing import Dict, Optional

import tensorflow as tf

from modules.learning import console, loop, training
from modules.models.hyperparameters import ModelConfig
from modules.models.model import Towers, build_core
from modules.settings import Training
from modules.verdict import blessing, evaluation

log = logging.getLogger(__name__)

L2_GRID = (0.0, 1e-4, 1e-3, 1e-2)
# Logistic regression learns fast: a high learning rate held for a few epochs, early stopping.
# Twenty epochs: by then the rate has decayed to 3.5% of its start and the model no longer
# moves (taxi, the one set that ran all of 30: validation log loss 0.2168 at 20, 0.2166 at
# 30; every other set stopped early by epoch 21); the Baselines step 1-3 s shorter on taxi.
LINEAR_CONFIG = ModelConfig(num_layers=0, cross_rank=0, dropout=0.0, learning_rate=1e-2,
                            batch_size=256, epochs=20, constant_epochs=5,
                            early_stopping_patience=4)


def _tower(l2: float) -> str:
    return f"l2_{l2:g}"


@dataclasses.dataclass
class Linear:
    core: tf.keras.Model  # the tower with the lowest validation log loss
    l2: float  # its weight decay
    scores: evaluation.Scores  # on the validation rows
    epochs_trained: int
    history: Dict[str, list]  # its own (`training.tower_history`)


def train_linear(prepared: training.PreparedData, run: Training = Training(), *,
                 run_dir: Optional[str] = None,
                 config: ModelConfig = LINEAR_CONFIG) -> Linear:
    """The linear model with the best validation log loss of the L2_GRID candidates."""
    seed = run.seed
    configs = {_tower(l2): dataclasses.replace(config, l2=l2) for l2 in L2_GRID}
    result = training.train_model(
        lambda: Towers({name: build_core(prepared.dim, prepared.num_classes, tower_config,
                                         seed=seed, name=name)
                        for name, tower_config in configs.items()}, name="linear"),
        prepared, config, run, run_dir=run_dir, verbose=False,
        loss_fn={name: loop.cross_entropy for name in configs})
    scores = {name: evaluation.keras_scores(result.model.towers[name], prepared.held_out)
              for name in configs}
    losses = {name: scored.metrics()["log_loss"] for name, scored in scores.items()}
    best = min(configs, key=lambda name: (losses[name], name))
    log.info("baselines: linear model, validation log loss by L2: %s -> l2 %g",
             ", ".join(f"{configs[n].l2:g} {losses[n]:.4f}" for n in configs), configs[best].l2,
             extra=console.LOG_ONLY)
    core = build_core(prepared.dim, prepared.num_classes, configs[best], seed=seed,
                      name="linear")
    core.set_weights(result.model.towers[best].get_weights())
    return Linear(core, configs[best].l2, scores[best], result.epochs_trained,
                  training.tower_history(result.history, best))


# The teacher's candidates: the linear model, and the more complex models that may replace it.
TEACHER_CANDIDATES = ("linear", "network", "trees")


@dataclasses.dataclass(frozen=True)
class TeacherChoice:
    kind: str  # one of TEACHER_CANDIDATES
    metrics: Dict[str, Dict[str, float]]  # validation metrics of every candidate
    # For each challenger: the linear model's validation log loss minus its own (paired);
    # above 0 beyond noise, it is better than the linear model.
    challenges: Dict[str, blessing.Difference]

    def reason(self) -> str:
        losses = ", ".join(f"{name} {self.metrics[name]['log_loss']:.4f}"
                           for name in TEACHER_CANDIDATES if name in self.metrics)
        steps = "; ".join(f"{name} {'better' if gap.low > 0 else 'not better beyond noise'}"
                          f" ({gap.text()})" for name, gap in self.challenges.items())
        return (f"the {self.kind} model (validation log loss {losses}; against the linear "
                f"model: {steps})")


def choose_teacher(scores: Dict[str, evaluation.Scores], *, seed: int) -> TeacherChoice:
    """The teacher among TEACHER_CANDIDATES (`scores` on the validation rows): the linear
    model, unless the network or the trees have a lower validation log loss than it beyond
    noise (the paired 95% interval of the difference above 0); of those that do, the lowest.
    A model must earn its complexity: on a few hundred validation rows the best point
    estimate is often noise (a network ahead of the linear model on 74 breast-cancer rows
    was 4 points behind it on test), and a model that a simpler one beats cannot teach it
    anything."""
    metrics = {name: scores[name].metrics() for name in TEACHER_CANDIDATES if name in scores}
    linear, eligible, challenges = scores["linear"], ["linear"], {}
    for challenger in TEACHER_CANDIDATES[1:]:
        if challenger not in scores:
            continue
        gap = blessing.paired_differences(linear.labels, linear.probabilities,
                                          scores[challenger].probabilities,
                                          seed=seed)["log_loss"]
        challenges[challenger] = gap
        if gap.low > 0:
            eligible.append(challenger)
    kind = min(eligible, key=lambda name: (metrics[name]["log_loss"],
                                           TEACHER_CANDIDATES.index(name)))
    return TeacherChoice(kind, metrics, challenges)
