"""modules.learning.tuner: a Keras Tuner search whose trials train with the project's loop."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import json
import os
import threading
import time

import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
from keras_tuner.engine import trial as trial_module

from modules.learning import training, tuner
from modules.models import hyperparameters
from modules.settings import RunSettings, Training, Tuning

SPACE = {
    "units": {"choice": [8, 16]},
    "learning_rate": {"float": [3e-3, 3e-2], "sampling": "log"},
    "num_layers": 1,
    "cross_rank": 0,
    "dropout": 0.0,
    "batch_size": 64,
}
SETTINGS = RunSettings(label="label", training=Training(seed=0), verbose=False)


def make_tuner(prepared, kind, trials, max_epochs, directory, workers=1):
    return tuner.make_tuner(prepared, SETTINGS, Tuning(tuner=kind, trials=trials,
                                                       max_epochs=max_epochs, workers=workers,
                                                       search_space=SPACE), directory)
# A trial's epoch: batch capped at 60, 13 passes to make Tuning's 100 steps.
STEPS = training.budget(480, 64, min_steps=Tuning().epoch_steps).steps_per_epoch


class TrainModelSpy:
    """Wraps training.train_model: counts calls, optionally fails some, records results."""

    def __init__(self, fail_calls=(), on_restore=None):
        self.real = training.train_model
        self.calls = 0
        self.fail_calls = set(fail_calls)
        self.on_restore = on_restore
        self.results = []
        self.spans = []  # (start, end, thread name) of each call

    def __call__(self, *args, **kwargs):
        started = time.monotonic()
        self.calls += 1
        if self.calls in self.fail_calls or "all" in self.fail_calls:
            raise ValueError("bad hyperparameter: units must be >= 1 (got units=0)")
        restore = kwargs.get("restore_model")
        if restore is not None and self.on_restore is not None:
            def restore_and_record(model):
                restore(model)
                self.on_restore(model)
            kwargs["restore_model"] = restore_and_record
        result = self.real(*args, **kwargs)
        self.results.append(result)
        self.spans.append((started, time.monotonic(), threading.current_thread().name))
        return result


def search(prepared, directory, kind="random", trials=2, max_epochs=2, spy=None, workers=1):
    with pytest.MonkeyPatch.context() as patch:
        spy = spy or TrainModelSpy()
        patch.setattr(training, "train_model", spy)
        search_tuner = make_tuner(prepared, kind, trials, max_epochs, directory, workers)
        search_tuner.search()
    return search_tuner, spy


@pytest.fixture(scope="module")
def random_search(prepared, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("tuner"))
    search_tuner, spy = search(prepared, directory)
    return search_tuner, spy, directory


def test_random_search_trains_every_trial_with_the_loop(random_search):
    search_tuner, spy, _ = random_search
    assert spy.calls == 2
    table = tuner.trials_table(search_tuner)
    assert [row["status"] for row in table] == ["COMPLETED", "COMPLETED"]
    for row, result in zip(table, spy.results):
        assert row["epochs_trained"] == result.epochs_trained == 2
        # The objective: the best validation log loss of the trial's epochs.
        assert 0.0 < row["score"] < 0.7
        assert row["score"] == pytest.approx(min(result.history["val_loss"]))
        assert row["hyperparameters"]["units"] in (8, 16)
        # Each trial wrote the loop's per-epoch metrics into its own trial folder.
        metrics = os.path.join(search_tuner.get_trial_dir(row["trial_id"]), "metrics.jsonl")
        with open(metrics) as f:
            assert [json.loads(line)["epoch"] for line in f] == [1, 2]


def test_best_hyperparameters_are_the_best_trials(random_search):
    search_tuner, _, _ = random_search
    table = tuner.trials_table(search_tuner)
    best = min(table, key=lambda row: row["score"])
    assert search_tuner.get_best_hyperparameters(1)[0].values == best["hyperparameters"]


def test_trials_table_is_written_as_json(random_search, tmp_path):
    search_tuner, _, _ = random_search
    path = tuner.write_trials_table(search_tuner, str(tmp_path))
    with open(path) as f:
        rows = json.load(f)
    assert len(rows) == 2 and {"trial_id", "status", "score", "epochs_trained",
                               "hyperparameters", "message"} <= set(rows[0])


def test_resumed_search_does_not_rerun_completed_trials(random_search, prepared):
    search_tuner, _, directory = random_search
    before = tuner.trials_table(search_tuner)
    resumed, spy = search(prepared, directory)
    assert spy.calls == 0
    after = tuner.trials_table(resumed)
    assert [(r["trial_id"], r["status"], r["score"]) for r in after] == [
        (r["trial_id"], r["status"], r["score"]) for r in before]


def test_failing_trial_is_recorded_and_the_search_goes_on(prepared, tmp_path):
    search_tuner, spy = search(prepared, str(tmp_path), spy=TrainModelSpy(fail_calls={1}))
    assert spy.calls == 2
    table = tuner.trials_table(search_tuner)
    statuses = sorted(row["status"] for row in table)
    assert len(statuses) == 2 and statuses[0] == "COMPLETED"
    assert statuses[1] in ("FAILED", "INVALID")
    failed = next(row for row in table if row["status"] != "COMPLETED")
    assert "bad hyperparameter" in failed["message"][0]
    assert failed["epochs_trained"] == 0
    completed = next(row for row in table if row["status"] == "COMPLETED")
    assert completed["epochs_trained"] == 2


def make_trial(search_tuner, trial_id, **tuner_values):
    hp = search_tuner.oracle.get_space()
    hp.values.update(tuner_values)
    return trial_module.Trial(hp, trial_id=trial_id)


def test_hyperband_continuation_restores_previous_checkpoint_and_trains_the_rest(prepared,
                                                                              tmp_path):
    restored = {}

    def record(model):
        restored["weights"] = [w.copy() for w in model.get_weights()]
        restored["iterations"] = int(model.optimizer.iterations.numpy())

    with pytest.MonkeyPatch.context() as patch:
        spy = TrainModelSpy(on_restore=record)
        patch.setattr(training, "train_model", spy)
        search_tuner = make_tuner(prepared, "hyperband", 2, 4, str(tmp_path))
        first = make_trial(search_tuner, "a", **{"tuner/epochs": 2,
                                                 "tuner/initial_epoch": 0})
        first_metrics = search_tuner.run_trial(first)
        second = make_trial(search_tuner, "b", **{"tuner/epochs": 4,
                                                  "tuner/initial_epoch": 2,
                                                  "tuner/trial_id": "a"})
        second_metrics = search_tuner.run_trial(second)

    assert first_metrics["epochs_trained"] == 2
    assert second_metrics["epochs_trained"] == 2  # tuner/epochs - tuner/initial_epoch
    assert spy.results[1].epochs_trained == 2
    with open(os.path.join(search_tuner.get_trial_dir("b"), "metrics.jsonl")) as f:
        assert [json.loads(line)["epoch"] for line in f] == [3, 4]

    # It started from trial a's last checkpoint: its weights and optimizer state.
    latest = tf.train.latest_checkpoint(search_tuner._checkpoint_dir("a"))
    assert latest.endswith("ckpt-2")
    expected = search_tuner._build(first.hyperparameters)
    tf.train.Checkpoint(model=expected).restore(latest).expect_partial()
    for got, want in zip(restored["weights"], expected.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert restored["iterations"] == 2 * STEPS
    assert int(spy.results[1].model.optimizer.iterations.numpy()) == 4 * STEPS


def test_continuing_a_trial_without_checkpoint_fails_the_trial(prepared, tmp_path):
    search_tuner = make_tuner(prepared, "hyperband", 2, 4, str(tmp_path))
    orphan = make_trial(search_tuner, "c", **{"tuner/epochs": 4, "tuner/initial_epoch": 2,
                                              "tuner/trial_id": "missing"})
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="missing"):
        search_tuner.run_trial(orphan)


@pytest.mark.parametrize("space, message", [
    ({}, "empty"),
    ({"units": 64, "num_layers": 2}, "empty"),
    ({"units": {"int": [8, 8]}}, "empty"),
    ({"unknown": {"int": [1, 2]}}, "'unknown' is not a hyperparameter"),
    ({"units": {"int": [64, 8]}}, "low <= high"),
    ({"learning_rate": {"float": [0.1]}}, "low <= high"),
    ({"activation": {"choice": []}}, "empty choice"),
    ({"units": {"int": [8, 16], "choice": [8]}}, "exactly one of"),
])
def test_check_search_space_rejects_bad_spaces(space, message):
    with pytest.raises(ValueError, match=message):
        hyperparameters.check_search_space(space)


def test_default_search_space_is_valid():
    hyperparameters.check_search_space(hyperparameters.DEFAULT_SEARCH_SPACE)
    hyperparameters.check_search_space(SPACE)


@pytest.mark.parametrize("rows, layers, units", [
    (300, [0, 1], [16, 32, 64]), (3_000, [0, 2], [32, 64, 128]),
    (30_000, [1, 3], [64, 128, 256]), (3_000_000, [2, 4], [256, 512])])
def test_search_space_capacity_follows_the_training_rows(rows, layers, units):
    space = hyperparameters.search_space_for(rows)
    hyperparameters.check_search_space(space)
    assert space["num_layers"] == {"int": layers} and space["units"] == {"choice": units}
    assert space["l2"]["sampling"] == "log"  # weight decay is searched at every size


def test_a_trial_epoch_makes_at_least_the_tuning_epoch_steps(prepared):
    """A small split is repeated so that even Hyperband's one-epoch trials train far enough
    to be ranked."""
    plan = training.budget(prepared.train.rows, 64, min_steps=100)
    assert plan.steps_per_epoch >= 100 and plan.passes_per_epoch > 1


def test_declare_gives_values_inside_the_space():
    hp = keras_tuner.HyperParameters()
    values = tuner.declare(hp, hyperparameters.DEFAULT_SEARCH_SPACE)
    assert set(values) == set(hyperparameters.DEFAULT_SEARCH_SPACE)
    assert 2 <= values["num_layers"] <= 4
    assert values["activation"] in ("relu", "gelu", "swish", "tanh")


def test_make_oracle_rejects_unknown_tuner_kinds():
    with pytest.raises(ValueError, match="unknown tuner 'grid'"):
        tuner.make_oracle("grid", 2, 2, 0)


def trials_by_id(search_tuner):
    return {row["trial_id"]: (row["status"], row["score"], row["hyperparameters"])
            for row in tuner.trials_table(search_tuner)}


@pytest.mark.parametrize("kind", ["hyperband", "bayesian"])
def test_concurrent_workers_run_the_same_search_as_one(prepared, tmp_path, kind):
    """Two workers train trials at the same time (on two threads) and end with the very
    trials, scores and best hyperparameters of one worker: Hyperband's promotions and
    Bayesian optimization's model wait for the trials before them."""
    one, _ = search(prepared, str(tmp_path / "one"), kind, trials=5, max_epochs=3)
    two, spy = search(prepared, str(tmp_path / "two"), kind, trials=5, max_epochs=3,
                      workers=2)
    assert trials_by_id(two) == trials_by_id(one)
    assert len(trials_by_id(one)) == 5
    assert all(status == "COMPLETED" for status, _, _ in trials_by_id(one).values())
    assert (two.get_best_hyperparameters(1)[0].values
            == one.get_best_hyperparameters(1)[0].values)
    assert len({thread for _, _, thread in spy.spans}) == 2
    overlapping = [(a, b) for a in spy.spans for b in spy.spans
                   if a[2] != b[2] and a[0] < b[1] and b[0] < a[1]]
    assert overlapping, "no two trials trained at the same time"


def test_hyperband_waits_for_running_trials_before_promoting(tmp_path):
    """Two workers finish a bracket's first round out of order: the promotion is handed out
    only once every trial of the round has finished, and promotes what one worker would."""
    def oracle():
        made = tuner.make_oracle("hyperband", 10, 3, seed=1)
        made._set_project_dir(str(tmp_path), f"p{len(os.listdir(tmp_path))}")
        hp = keras_tuner.HyperParameters()
        hp.Float("x", 0.0, 1.0)
        made.update_space(hp)
        return made

    def finish(made, trial, score):
        made.update_trial(trial.trial_id, {"val_loss": score})
        trial.status = "COMPLETED"
        made.end_trial(trial)

    scores = [0.5, 0.4, 0.1]  # the last of the first round is the best
    one = oracle()
    for score in scores:
        finish(one, one.create_trial("a"), score)
    promoted = one.create_trial("a")
    assert promoted.hyperparameters.values["tuner/trial_id"] == "02"

    two = oracle()
    first, second = two.create_trial("a"), two.create_trial("b")
    finish(two, first, scores[0])
    third = two.create_trial("a")
    finish(two, second, scores[1])
    assert two.create_trial("b").status == "IDLE"  # the third trial still runs
    finish(two, third, scores[2])
    again = two.create_trial("b")
    assert again.status == "RUNNING"
    assert again.hyperparameters.values == promoted.hyperparameters.values


def test_a_failing_worker_stops_the_search_and_its_error_is_raised(prepared, tmp_path):
    """Every trial fails: Keras Tuner ends the search after 3 in a row from inside the
    oracle, on whichever worker, and the search raises that error instead of waiting."""
    spy = TrainModelSpy(fail_calls={"all"})
    outcome = {}

    def run():
        try:
            search(prepared, str(tmp_path), trials=10, spy=spy, workers=2)
        except RuntimeError as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the search hung after a worker failed"
    assert "consecutive failures" in str(outcome.get("error"))
    assert spy.calls < 10
