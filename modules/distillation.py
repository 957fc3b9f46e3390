"""Knowledge distillation: a small student learns from the teacher's softened logits.

Loss per example (Hinton et al. 2015):
    alpha * CE(label, student) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
The T^2 factor keeps the soft term's gradients on the scale of the hard term's as T grows.
Teacher logits are computed once per example and cached next to the labels, so the teacher
never runs inside the training loop and none of its weights can change.
"""
import dataclasses
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from modules import training
from modules.loop import LossFn
from modules.model import ModelConfig, build_core


def check_distillation_params(alpha: float, temperature: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"distillation alpha must be in [0, 1], got {alpha}")
    if not temperature > 0.0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature}")


def distillation_loss(alpha: float, temperature: float) -> LossFn:
    """Per-example distillation loss; targets hold "label" and "teacher_logits"."""
    check_distillation_params(alpha, temperature)

    def loss_fn(targets: Dict[str, tf.Tensor], logits: tf.Tensor) -> tf.Tensor:
        logits = tf.cast(logits, tf.float32)
        hard = tf.nn.sparse_softmax_cross_entropy_with_logits(targets["label"], logits)
        teacher = tf.nn.softmax(targets["teacher_logits"] / temperature)
        soft = tf.reduce_sum(teacher * (tf.math.log(teacher + 1e-12)
                                        - tf.nn.log_softmax(logits / temperature)), axis=-1)
        return alpha * hard + (1.0 - alpha) * temperature ** 2 * soft

    return loss_fn


def teacher_logits(teacher: tf.keras.Model, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """The teacher's logits for every row, computed once (inference mode)."""
    return np.asarray(teacher.predict(x, batch_size=batch_size, verbose=0), np.float32)


def teacher_targets(teacher: tf.keras.Model, prepared: training.PreparedData) -> Dict[str, dict]:
    """Cached teacher logits for both splits, as `train_model`'s extra_targets."""
    return {"train": {"teacher_logits": teacher_logits(teacher, prepared.x_train)},
            "eval": {"teacher_logits": teacher_logits(teacher, prepared.x_eval)}}


@dataclasses.dataclass
class StudentResult:
    distilled: training.TrainResult
    scratch: training.TrainResult
    config: ModelConfig


def train_students(prepared: training.PreparedData, teacher: tf.keras.Model,
                   config: ModelConfig, *, alpha: float, temperature: float, seed: int,
                   strategy: str = "none", run_dirs: Optional[Dict[str, str]] = None,
                   verbose: bool = True) -> StudentResult:
    """Trains the distilled student and its control: the same architecture, budget and seed
    trained on the labels alone, so the gain from distillation is measured, not assumed."""
    logits = teacher_targets(teacher, prepared)
    run_dirs = run_dirs or {}

    def build():
        return build_core(prepared.x_train.shape[1], prepared.num_classes, config, seed=seed,
                          name="student")

    distilled = training.train_model(
        build, prepared, config, seed=seed, loss_fn=distillation_loss(alpha, temperature),
        extra_targets=logits, strategy=strategy, run_dir=run_dirs.get("student"),
        verbose=verbose)
    scratch = training.train_model(
        build, prepared, config, seed=seed, strategy=strategy,
        run_dir=run_dirs.get("student_scratch"), verbose=verbose)
    return StudentResult(distilled, scratch, config)
