"""modules.learning.callbacks: early stopping, resumable checkpoints, metrics and learning-rate
logs."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import features_of, labels_of, small_config
from modules.learning import callbacks as cb
from modules.learning import loop
from modules.learning.schedules import ConstantThenExponentialDecay
from modules.models.model import build_core

STEPS = 8  # ceil(480 / 64)


def datasets(prepared):
    train = loop.make_dataset(features_of(prepared.train), {"label": labels_of(prepared.train)}, 64, shuffle=True,
                              seed=0)
    evaluation = loop.make_dataset(features_of(prepared.held_out), {"label": labels_of(prepared.held_out)}, 64,
                                   shuffle=False)
    return train, evaluation


def new_loop(learning_rate=1e-2, seed=0):
    tf.keras.utils.set_random_seed(seed)
    model = build_core(20, 2, small_config(), seed=seed)
    optimizer = tf.keras.optimizers.Adam(learning_rate)
    model.optimizer = optimizer
    return loop.TrainingLoop(model, optimizer)


class ScriptedMetric(tf.keras.callbacks.Callback):
    """Overwrites logs["val_auc"] with scripted values and records the weights of each
    epoch's end (runs before the callbacks after it in the list)."""

    def __init__(self, values):
        super().__init__()
        self.values = values
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        logs["val_auc"] = self.values[epoch]
        self.weights.append([w.copy() for w in self.model.get_weights()])


# -- EarlyStopping ----------------------------------------------------------------------------
def test_early_stopping_per_tower_keeps_each_towers_best_and_stops_when_all_have():
    """Tower a peaks at epoch 1 and b at epoch 3 (patience 1): training goes on while b
    improves, stops once both have stopped, and each tower gets back its own best epoch's
    weights."""
    from modules.models.model import Towers
    towers = {name: build_core(20, 2, small_config(), seed=i)
              for i, name in enumerate(("a", "b"))}
    model = Towers(towers)
    stopper = cb.EarlyStoppingPerTower(towers, monitor="val_auc", patience=1)
    stopper.set_model(model)
    stopper.on_train_begin()
    scripted = {"a": [0.9, 0.8, 0.8, 0.8], "b": [0.5, 0.6, 0.7, 0.6]}
    stopped_at = None
    for epoch in range(4):
        for tower in towers.values():  # each epoch: new weights, marked by the epoch
            tower.set_weights([np.full_like(w, epoch) for w in tower.get_weights()])
        stopper.on_epoch_end(epoch, {f"val_{n}_auc": v[epoch] for n, v in scripted.items()})
        if model.stop_training:
            stopped_at = epoch + 1
            break
    stopper.on_train_end()
    assert stopped_at == 4  # a stopped at epoch 2, b only at epoch 4
    for name, best in (("a", 0), ("b", 2)):
        assert {float(w.flat[0]) for w in towers[name].get_weights()} == {best}, name
    assert stopper.stoppers["a"].best_epoch == 1 and stopper.stoppers["b"].best_epoch == 3


def test_early_stopping_restores_best_epoch_weights_and_sets_best_epoch(prepared):
    train, evaluation = datasets(prepared)
    training_loop = new_loop()
    scripted = ScriptedMetric([0.70, 0.90, 0.80, 0.85, 0.86, 0.87, 0.88, 0.89])
    stopper = cb.EarlyStopping(monitor="val_auc", mode="max", patience=2)
    training_loop.fit(train, evaluation, epochs=8, callbacks=[scripted, stopper],
                      verbose=False)
    assert stopper.best_epoch == 2
    assert stopper.best == pytest.approx(0.90)
    assert training_loop.epochs_trained < 8
    best = scripted.weights[1]
    for restored, expected in zip(training_loop.model.get_weights(), best):
        np.testing.assert_array_equal(restored, expected)
    last = scripted.weights[-1]
    assert any(not np.array_equal(a, b) for a, b in zip(last, best))


def _drive(stopper, values):
    """Feeds `values` to the callback epoch by epoch; returns the epochs it ran (1-based)."""
    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    model.stop_training = False
    stopper.set_model(model)
    stopper.on_train_begin()
    ran = 0
    for epoch, value in enumerate(values):
        ran = epoch + 1
        stopper.on_epoch_end(epoch, {"val_auc": value, "val_loss": -value})
        if model.stop_training:
            break
    stopper.on_train_end()
    return ran


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    """Best at epoch 2, then no improvement: with patience 2 training stops at the end of
    epoch 4, the second epoch without improvement (as documented: "has not improved ... for
    `patience` epochs"; the same count as tf.keras.callbacks.EarlyStopping)."""
    values = [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    stock = tf.keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=2)
    assert _drive(stock, values) == 4
    stopper = cb.EarlyStopping(monitor="val_auc", mode="max", patience=2)
    ran = _drive(stopper, values)
    assert stopper.best_epoch == 2
    assert ran == 4
    assert stopper.stopped_epoch == 4


def test_early_stopping_min_mode_and_min_delta():
    stopper = cb.EarlyStopping(monitor="val_loss", mode="min", patience=10, min_delta=0.05)
    # val_loss = -value: -0.5, -0.6 (improves by 0.1), -0.62 (only 0.02 better: not counted).
    _drive(stopper, [0.5, 0.6, 0.62])
    assert stopper.best_epoch == 2
    assert stopper.best == pytest.approx(-0.6)


def test_early_stopping_names_a_missing_monitor():
    stopper = cb.EarlyStopping(monitor="val_f1")
    stopper.set_model(tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)]))
    stopper.on_train_begin()
    with pytest.raises(KeyError, match="val_f1"):
        stopper.on_epoch_end(0, {"val_auc": 0.5})
    with pytest.raises(ValueError, match="mode"):
        cb.EarlyStopping(mode="maximum")


# -- TrainingCheckpoint -------------------------------------------------------------------------
class WeightsAtBegin(tf.keras.callbacks.Callback):
    """Records the weights and optimizer step after the callbacks before it began training,
    and the epochs that ran."""

    def on_train_begin(self, logs=None):
        self.weights = [w.copy() for w in self.model.get_weights()]
        self.iterations = int(self.model.optimizer.iterations.numpy())
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_training_checkpoint_resumes_after_the_last_finished_epoch(prepared, tmp_path):
    train, evaluation = datasets(prepared)
    directory = str(tmp_path / "ckpt")

    first = new_loop()
    first.fit(train, evaluation, epochs=2, callbacks=[cb.TrainingCheckpoint(directory)],
              verbose=False)
    saved_weights = first.model.get_weights()
    assert int(first.optimizer.iterations.numpy()) == 2 * STEPS

    # A new process would build a fresh model and optimizer (different initial weights here).
    second = new_loop(seed=1)
    checkpoint = cb.TrainingCheckpoint(directory)
    probe = WeightsAtBegin()
    history = second.fit(train, evaluation, epochs=4, callbacks=[checkpoint, probe],
                         verbose=False)
    assert checkpoint.restored_epoch == 2
    assert second.epochs_trained == 2
    assert probe.epochs == [2, 3]
    assert len(history["loss"]) == 2
    for restored, expected in zip(probe.weights, saved_weights):
        np.testing.assert_array_equal(restored, expected)
    # The optimizer state came back too: its step count continues from epoch 2.
    assert probe.iterations == 2 * STEPS
    assert int(second.optimizer.iterations.numpy()) == 4 * STEPS
    assert tf.train.latest_checkpoint(directory).endswith("ckpt-4")


def test_training_checkpoint_with_empty_directory_starts_from_scratch(prepared, tmp_path):
    train, _ = datasets(prepared)
    training_loop = new_loop()
    checkpoint = cb.TrainingCheckpoint(str(tmp_path / "new"))
    training_loop.fit(train, epochs=1, callbacks=[checkpoint], verbose=False)
    assert checkpoint.restored_epoch is None
    assert training_loop.epochs_trained == 1


def test_training_checkpoint_skips_epochs_with_non_finite_logs(tmp_path):
    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    model.optimizer = tf.keras.optimizers.Adam()
    checkpoint = cb.TrainingCheckpoint(str(tmp_path))
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    checkpoint.on_epoch_end(0, {"loss": 0.5})
    checkpoint.on_epoch_end(1, {"loss": float("nan")})
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-1")


# -- MetricsLogger and LearningRateLogger -------------------------------------------------------
def test_metrics_logger_writes_one_json_line_per_epoch_and_tensorboard_events(prepared,
                                                                            tmp_path):
    train, evaluation = datasets(prepared)
    training_loop = new_loop()
    jsonl = tmp_path / "run" / "metrics.jsonl"
    board = tmp_path / "run" / "tensorboard"
    history = training_loop.fit(
        train, evaluation, epochs=3,
        callbacks=[cb.LearningRateLogger(), cb.MetricsLogger(str(jsonl), str(board))],
        verbose=False)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    for line in lines:
        assert {"loss", "val_loss", "val_auc", "learning_rate"} <= set(line)
    assert lines[-1]["val_auc"] == pytest.approx(history["val_auc"][-1])

    events = glob.glob(os.path.join(board, "events.out.tfevents.*"))
    assert events
    scalars = {}
    for event_file in events:
        for event in tf.compat.v1.train.summary_iterator(event_file):
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(event.step)
    assert sorted(scalars["val_auc"]) == [1, 2, 3]
    assert sorted(scalars["learning_rate"]) == [1, 2, 3]


def test_learning_rate_logger_adds_the_scheduled_rate_to_logs(prepared):
    train, _ = datasets(prepared)
    tf.keras.utils.set_random_seed(0)
    model = build_core(20, 2, small_config(), seed=0)
    schedule = ConstantThenExponentialDecay(0.1, steps_per_epoch=STEPS, constant_epochs=1,
                                            decay_rate=0.5)
    optimizer = tf.keras.optimizers.Adam(schedule)
    model.optimizer = optimizer
    history = loop.TrainingLoop(model, optimizer).fit(
        train, epochs=3, callbacks=[cb.LearningRateLogger()], verbose=False)
    rates = history["learning_rate"]
    assert len(rates) == 3
    assert rates[0] == pytest.approx(0.1)  # constant phase
    assert rates[0] > rates[1] > rates[2]
    # Epoch 3 ends ~2 epochs into the decay, one step short: within [0.1 * 0.5^2, 0.1 * 0.5].
    assert 0.1 * 0.5 ** 2 <= rates[2] <= 0.1 * 0.5
    assert rates[-1] == pytest.approx(cb.current_learning_rate(optimizer))


def test_current_learning_rate_reads_constant_and_loss_scaled_optimizers():
    assert cb.current_learning_rate(tf.keras.optimizers.Adam(0.25)) == pytest.approx(0.25)
    scaled = tf.keras.mixed_precision.LossScaleOptimizer(tf.keras.optimizers.Adam(0.5))
    assert cb.current_learning_rate(scaled) == pytest.approx(0.5)
