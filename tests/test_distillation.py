"""modules.distillation: the distillation loss and the distilled / scratch students."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from conftest import small_config
from modules import distillation
from modules.model import build_core


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def by_hand(alpha, temperature, labels, student, teacher):
    cross_entropy = -log_softmax(student)[np.arange(len(labels)), labels]
    p = softmax(teacher / temperature)
    kl = np.sum(p * (np.log(p) - log_softmax(student / temperature)), axis=-1)
    return alpha * cross_entropy + (1 - alpha) * temperature ** 2 * kl


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    student = rng.normal(size=(6, 3)).astype(np.float32)
    teacher = (2 * rng.normal(size=(6, 3))).astype(np.float32)
    labels = rng.integers(0, 3, size=6)
    return labels, student, teacher


def loss(alpha, temperature, labels, student, teacher):
    fn = distillation.distillation_loss(alpha, temperature)
    return fn({"label": tf.constant(labels), "teacher_logits": tf.constant(teacher)},
              tf.constant(student)).numpy()


@pytest.mark.parametrize("alpha, temperature", [(0.3, 2.0), (0.5, 4.0), (0.9, 1.0)])
def test_distillation_loss_matches_hand_computation(batch, alpha, temperature):
    labels, student, teacher = batch
    np.testing.assert_allclose(loss(alpha, temperature, labels, student, teacher),
                               by_hand(alpha, temperature, labels, student, teacher),
                               rtol=1e-5, atol=1e-6)


def test_alpha_one_is_plain_cross_entropy(batch):
    labels, student, teacher = batch
    expected = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, student).numpy()
    np.testing.assert_allclose(loss(1.0, 3.0, labels, student, teacher), expected, rtol=1e-6)


def test_alpha_zero_is_the_scaled_kl_and_zero_when_student_equals_teacher(batch):
    labels, student, teacher = batch
    np.testing.assert_allclose(loss(0.0, 2.0, labels, teacher, teacher), 0.0, atol=1e-5)
    assert np.all(loss(0.0, 2.0, labels, student, teacher) > 0)


def test_soft_term_is_scaled_by_temperature_squared(batch):
    """Doubling T while doubling both logits leaves the softened distributions, and so the
    KL divergence, unchanged: the soft loss then grows by exactly (2T)^2 / T^2 = 4."""
    labels, student, teacher = batch
    at_t = loss(0.0, 1.5, labels, student, teacher)
    at_2t = loss(0.0, 3.0, labels, 2 * student, 2 * teacher)
    np.testing.assert_allclose(at_2t / at_t, 4.0, rtol=1e-4)


@pytest.mark.parametrize("alpha, temperature, message", [
    (-0.1, 2.0, "alpha"), (1.5, 2.0, "alpha"), (0.5, 0.0, "temperature"),
    (0.5, -1.0, "temperature")])
def test_bad_alpha_or_temperature_raise(alpha, temperature, message):
    with pytest.raises(ValueError, match=message):
        distillation.distillation_loss(alpha, temperature)


def test_train_students_leaves_teacher_unchanged_and_returns_matching_students(prepared):
    teacher_config = small_config(num_layers=2, units=32, epochs=1)
    teacher = build_core(20, 2, teacher_config, seed=7)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    student_config = small_config(units=8, epochs=2)

    result = distillation.train_students(prepared, teacher, student_config, alpha=0.5,
                                         temperature=2.0, seed=0, verbose=False)

    for before, after in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    distilled, scratch = result.distilled.model, result.scratch.model
    assert result.config == student_config
    assert [type(l).__name__ for l in distilled.layers] == [type(l).__name__
                                                           for l in scratch.layers]
    assert [w.shape for w in distilled.get_weights()] == [w.shape for w in scratch.get_weights()]
    assert distilled.get_layer("block_0").units == 8
    assert distilled.count_params() < teacher.count_params()
    # Same seed and architecture, different loss: the students end up different.
    assert any(not np.allclose(a, b) for a, b in zip(distilled.get_weights(),
                                                     scratch.get_weights()))
    assert result.distilled.epochs_trained >= 1 and result.scratch.epochs_trained >= 1


def test_teacher_targets_cache_logits_for_both_splits(prepared):
    teacher = build_core(20, 2, small_config(), seed=0)
    targets = distillation.teacher_targets(teacher, prepared)
    assert targets["train"]["teacher_logits"].shape == (len(prepared.x_train), 2)
    np.testing.assert_allclose(targets["eval"]["teacher_logits"],
                               teacher(prepared.x_eval, training=False).numpy(), atol=1e-5)
