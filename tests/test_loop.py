"""modules.learning.loop.TrainingLoop: the GradientTape loop every component trains with."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import csv
import re

import numpy as np
import pytest
import tensorflow as tf

from conftest import features_of, labels_of, small_config
from modules.learning import callbacks as cb
from modules.learning import loop
from modules.models.model import build_core

BATCH = 64


def datasets(prepared, batch_size=BATCH):
    train = loop.make_dataset(features_of(prepared.train), {"label": labels_of(prepared.train)}, batch_size,
                              shuffle=True, seed=0)
    evaluation = loop.make_dataset(features_of(prepared.held_out), {"label": labels_of(prepared.held_out)}, batch_size,
                                   shuffle=False)
    return train, evaluation


def new_loop(learning_rate=1e-2, optimizer=None, config=None, **kwargs):
    tf.keras.utils.set_random_seed(0)
    model = build_core(20, 2, config or small_config(), seed=0)
    optimizer = optimizer or tf.keras.optimizers.Adam(learning_rate)
    model.optimizer = optimizer
    return loop.TrainingLoop(model, optimizer, **kwargs)


class Recorder(tf.keras.callbacks.Callback):
    """Records every hook call (name, index, copy of logs)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def _record(self, name, index=None, logs=None):
        self.calls.append((name, index, dict(logs or {})))

    def on_train_begin(self, logs=None):
        self._record("train_begin", logs=logs)

    def on_train_end(self, logs=None):
        self._record("train_end", logs=logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._record("epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._record("epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._record("batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._record("batch_end", batch, logs)

    def names(self, name):
        return [call for call in self.calls if call[0] == name]


EPOCHS = 4
STEPS = 8  # ceil(480 / 64)


@pytest.fixture(scope="module")
def recorded_fit(prepared, tmp_path_factory):
    """One 4-epoch fit with our recorder, a LambdaCallback and a CSVLogger."""
    train, evaluation = datasets(prepared)
    training_loop = new_loop()
    recorder = Recorder()
    lambda_epochs = []
    lambda_cb = tf.keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: lambda_epochs.append((epoch, logs["val_auc"])))
    csv_path = tmp_path_factory.mktemp("csv") / "log.csv"
    history = training_loop.fit(train, evaluation, epochs=EPOCHS,
                                callbacks=[recorder, lambda_cb,
                                           tf.keras.callbacks.CSVLogger(str(csv_path))],
                                verbose=False)
    return training_loop, history, recorder, lambda_epochs, csv_path


def test_loss_decreases_on_a_learnable_problem(recorded_fit):
    training_loop, history, *_ = recorded_fit
    assert len(history["loss"]) == EPOCHS
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    assert history["val_auc"][-1] > 0.9
    assert training_loop.epochs_trained == EPOCHS


def test_callback_hooks_are_called_in_order(recorded_fit):
    _, _, recorder, _, _ = recorded_fit
    order = [name for name, _, _ in recorder.calls]
    assert order[0] == "train_begin" and order[-1] == "train_end"
    assert order.count("train_begin") == order.count("train_end") == 1
    assert [i for _, i, _ in recorder.names("epoch_begin")] == list(range(EPOCHS))
    assert [i for _, i, _ in recorder.names("epoch_end")] == list(range(EPOCHS))
    # steps_per_execution=1: one batch hook per step, indices 0..STEPS-1 within each epoch.
    batch_ends = recorder.names("batch_end")
    assert len(batch_ends) == EPOCHS * STEPS
    assert [i for _, i, _ in batch_ends[:STEPS]] == list(range(STEPS))
    # Every epoch: begin, its batches, end.
    first_epoch = order[1:order.index("epoch_end") + 1]
    assert first_epoch == ["epoch_begin"] + ["batch_begin", "batch_end"] * STEPS + ["epoch_end"]


def test_callbacks_receive_train_and_validation_logs(recorded_fit):
    _, history, recorder, _, _ = recorded_fit
    _, _, logs = recorder.names("epoch_end")[-1]
    assert {"loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc"} <= set(logs)
    assert logs["val_auc"] == pytest.approx(history["val_auc"][-1])
    _, _, batch_logs = recorder.names("batch_end")[0]
    assert "loss" in batch_logs and np.isfinite(batch_logs["loss"])


def test_stock_keras_callbacks_work_in_the_loop(recorded_fit):
    _, history, _, lambda_epochs, csv_path = recorded_fit
    assert [epoch for epoch, _ in lambda_epochs] == list(range(EPOCHS))
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS))
    assert float(rows[-1]["val_auc"]) == pytest.approx(history["val_auc"][-1], rel=1e-5)


def test_steps_per_execution_calls_batch_hooks_once_per_execution(prepared):
    train, _ = datasets(prepared)
    training_loop = new_loop(steps_per_execution=3)
    recorder = Recorder()
    training_loop.fit(train, epochs=1, callbacks=[recorder], verbose=False)
    # 8 steps in executions of 3, 3, 2: hooks at the last step of each.
    assert [i for _, i, _ in recorder.names("batch_end")] == [2, 5, 7]
    assert int(training_loop.optimizer.iterations.numpy()) == STEPS


def test_model_stop_training_ends_fit_after_the_epoch(prepared):
    train, evaluation = datasets(prepared)
    training_loop = new_loop()

    class StopAfterSecond(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    history = training_loop.fit(train, evaluation, epochs=10, callbacks=[StopAfterSecond()],
                                verbose=False)
    assert training_loop.epochs_trained == 2
    assert len(history["loss"]) == 2


def test_class_weights_scale_the_per_example_loss(prepared):
    """val_loss with class weights [1, 3] = mean(cross-entropy * weight[label])."""
    weights = [1.0, 3.0]
    _, evaluation = datasets(prepared)
    plain = new_loop()
    weighted = loop.TrainingLoop(plain.model, plain.optimizer, class_weights=weights)
    logits = plain.model(features_of(prepared.held_out), training=False).numpy().astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    cross_entropy = -log_probs[np.arange(len(logits)), labels_of(prepared.held_out)]
    expected_plain = cross_entropy.mean()
    expected_weighted = (cross_entropy * np.array(weights)[labels_of(prepared.held_out)]).mean()
    assert plain.evaluate(evaluation)["val_loss"] == pytest.approx(expected_plain, rel=1e-4)
    assert weighted.evaluate(evaluation)["val_loss"] == pytest.approx(expected_weighted,
                                                                      rel=1e-4)
    assert expected_weighted > expected_plain * 1.2


def test_class_weights_change_the_training_loss(prepared):
    train, _ = datasets(prepared)
    losses = []
    for weights in (None, [1.0, 3.0]):
        training_loop = new_loop(class_weights=weights)
        history = training_loop.fit(train, epochs=1, verbose=False)
        losses.append(history["loss"][0])
    assert losses[1] > losses[0] * 1.2


@pytest.mark.parametrize("clip_norm", [0.0, 0.01])
def test_clip_norm_bounds_the_update(prepared, clip_norm):
    """One SGD step (learning rate 1) moves the weights by the clipped gradient: its global
    norm is at most clip_norm; without clipping the same step is far larger."""
    one_batch = loop.make_dataset(features_of(prepared.train)[:BATCH], {"label": labels_of(prepared.train)[:BATCH]},
                                  BATCH, shuffle=False)
    training_loop = new_loop(optimizer=tf.keras.optimizers.SGD(1.0), clip_norm=clip_norm)
    before = [v.numpy().copy() for v in training_loop.model.trainable_variables]
    training_loop.fit(one_batch, epochs=1, verbose=False)
    after = [v.numpy() for v in training_loop.model.trainable_variables]
    step = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before)))
    if clip_norm:
        assert 0 < step <= clip_norm * (1 + 1e-4)
    else:
        assert step > 0.1


def test_nan_loss_raises_and_checkpoint_keeps_last_good_epoch(prepared, tmp_path):
    """Two good epochs, then the learning rate jumps to 1e30 at epoch 3: the loss becomes
    non-finite, fit raises NonFiniteLossError, and no checkpoint exists for epoch 3."""
    train, evaluation = datasets(prepared)
    training_loop = new_loop()

    class ExplodeAtThirdEpoch(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                self.model.optimizer.learning_rate.assign(1e30)

    checkpoint = cb.TrainingCheckpoint(str(tmp_path / "ckpt"), max_to_keep=5)
    with pytest.raises(loop.NonFiniteLossError) as error:
        training_loop.fit(train, evaluation, epochs=5,
                          callbacks=[checkpoint, ExplodeAtThirdEpoch()], verbose=False)
    message = str(error.value)
    assert re.search(r"training loss became (nan|inf|-inf) at epoch 3, step \d+", message)
    assert "learning rate" in message and "checkpoint" in message

    state = tf.train.get_checkpoint_state(str(tmp_path / "ckpt"))
    assert state.model_checkpoint_path.endswith("ckpt-2")
    assert [p.rsplit("-", 1)[1] for p in state.all_model_checkpoint_paths] == ["1", "2"]

    # The last good checkpoint holds finite weights and the epoch it finished.
    model = build_core(20, 2, small_config(), seed=1)
    epoch = tf.Variable(0, dtype=tf.int64)
    tf.train.Checkpoint(model=model, epoch=epoch).restore(
        state.model_checkpoint_path).expect_partial()
    assert int(epoch.numpy()) == 2
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_infinite_inputs_raise_non_finite_loss_error_before_any_checkpoint(prepared, tmp_path):
    x = features_of(prepared.train).copy()
    x[:, 0] = np.inf
    train = loop.make_dataset(x, {"label": labels_of(prepared.train)}, BATCH, shuffle=False)
    training_loop = new_loop()
    with pytest.raises(loop.NonFiniteLossError, match="at epoch 1, step 1:"):
        training_loop.fit(train, epochs=2, callbacks=[cb.TrainingCheckpoint(str(tmp_path))],
                          verbose=False)
    assert tf.train.latest_checkpoint(str(tmp_path)) is None


def test_datasets_of_unknown_size_are_rejected(prepared):
    train, _ = datasets(prepared)
    training_loop = new_loop()
    with pytest.raises(ValueError, match="known size"):
        training_loop.fit(train.filter(lambda x, y: True), epochs=1, verbose=False)


def test_fit_draws_a_progress_bar_on_a_tty_and_logs_a_line_per_epoch_elsewhere(
        prepared, caplog, monkeypatch):
    import io

    from modules.learning import console

    class Tty(io.StringIO):
        def isatty(self):
            return True

    train, evaluation = datasets(prepared)
    with caplog.at_level("INFO", logger="modules.learning.loop"):
        history = new_loop().fit(train, evaluation, epochs=2, verbose=True)
    assert len(history["loss"]) == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "modules.learning.loop"]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert "val_auc" in lines[0]
    terminal = Tty()
    monkeypatch.setattr(console, "terminal", terminal)
    new_loop().fit(train, evaluation, epochs=1, verbose=True)
    assert "val_auc" in terminal.getvalue() and "\r1/8 [" in terminal.getvalue()  # a bar


def test_steps_per_epoch_continues_one_stream_across_epochs(prepared):
    """Large splits: an epoch is `steps_per_epoch` batches of one endless stream, and the next
    epoch goes on where it stopped (it must not restart at the first rows)."""
    consumed = []

    def note(index):
        consumed.append(int(index))
        return index

    x, y = features_of(prepared.train)[:BATCH], labels_of(prepared.train)[:BATCH]
    stream = (tf.data.Dataset.range(10_000)
              .map(lambda i: tf.py_function(note, [i], tf.int64))
              .map(lambda i: (tf.constant(x), {"label": tf.constant(y)})))
    training_loop = new_loop()
    training_loop.fit(stream, epochs=3, steps_per_epoch=5, verbose=False)
    assert training_loop.epochs_trained == 3
    assert int(training_loop.optimizer.iterations.numpy()) == 15
    assert consumed[:15] == list(range(15))  # batch 5 opens epoch 2, not batch 0 again
