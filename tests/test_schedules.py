"""modules.learning.schedules.ConstantThenExponentialDecay."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import pytest
import tensorflow as tf

from modules.learning.schedules import ConstantThenExponentialDecay

STEPS, CONSTANT, RATE, LR = 10, 3, 0.5, 0.2


@pytest.fixture
def schedule():
    return ConstantThenExponentialDecay(LR, steps_per_epoch=STEPS, constant_epochs=CONSTANT,
                                        decay_rate=RATE)


def lr(schedule, step):
    return float(schedule(tf.constant(step, tf.int64)))


def test_constant_for_constant_epochs_times_steps_per_epoch(schedule):
    for step in (0, 1, 15, CONSTANT * STEPS - 1, CONSTANT * STEPS):
        assert lr(schedule, step) == pytest.approx(LR)


def test_then_decays_by_decay_rate_per_epoch(schedule):
    start = CONSTANT * STEPS
    assert lr(schedule, start + STEPS) == pytest.approx(LR * RATE)
    assert lr(schedule, start + 2 * STEPS) == pytest.approx(LR * RATE ** 2)
    assert lr(schedule, start + 5 * STEPS) == pytest.approx(LR * RATE ** 5)


def test_decay_is_smooth_within_an_epoch(schedule):
    start = CONSTANT * STEPS
    assert lr(schedule, start + STEPS // 2) == pytest.approx(LR * RATE ** 0.5)
    rates = [lr(schedule, start + s) for s in range(STEPS + 1)]
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_zero_constant_epochs_decays_from_the_first_step():
    schedule = ConstantThenExponentialDecay(1.0, steps_per_epoch=4, constant_epochs=0,
                                            decay_rate=0.8)
    assert lr(schedule, 0) == pytest.approx(1.0)
    assert lr(schedule, 4) == pytest.approx(0.8)


def test_get_config_round_trip(schedule):
    config = schedule.get_config()
    assert config == {"initial_learning_rate": LR, "steps_per_epoch": STEPS,
                      "constant_epochs": CONSTANT, "decay_rate": RATE}
    clone = ConstantThenExponentialDecay.from_config(config)
    assert clone.get_config() == config
    for step in (0, 35, 80):
        assert lr(clone, step) == pytest.approx(lr(schedule, step))


def test_keras_serialization_round_trip_uses_the_registered_class(schedule):
    restored = tf.keras.optimizers.schedules.deserialize(
        tf.keras.optimizers.schedules.serialize(schedule))
    assert isinstance(restored, ConstantThenExponentialDecay)
    assert lr(restored, 55) == pytest.approx(lr(schedule, 55))


def test_optimizer_with_schedule_survives_get_config(schedule):
    optimizer = tf.keras.optimizers.Adam(schedule)
    clone = tf.keras.optimizers.Adam.from_config(optimizer.get_config())
    assert isinstance(clone._learning_rate, ConstantThenExponentialDecay)


@pytest.mark.parametrize("kwargs, message", [
    ({"initial_learning_rate": 0.0, "steps_per_epoch": 1}, "learning rate"),
    ({"initial_learning_rate": 0.1, "steps_per_epoch": 0}, "steps_per_epoch"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConstantThenExponentialDecay(**kwargs)
