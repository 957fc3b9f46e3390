"""modules.learning.training: train_model, strategies, optimizer, mixed precision."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from conftest import features_of, small_config
from modules.learning import training
from modules.learning.schedules import ConstantThenExponentialDecay
from modules.models.model import build_core
from modules.settings import Training


def test_mirrored_strategy_on_two_replicas_matches_single_device(mirrored_training_results):
    """Same seed, data and global batch (2 replicas x 64 vs 1 x 128), no batch norm or
    dropout: the two runs compute the same function, so the final eval metrics must agree.

    Tolerance: |val_auc difference| <= 0.01 and |val_loss difference| <= 0.01 (in practice
    they agree to ~1e-6; the slack covers the order of the cross-replica gradient sum).
    """
    mirrored, single = mirrored_training_results["mirrored"], mirrored_training_results["none"]
    assert mirrored_training_results["logical_cpus"] == 2
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    assert mirrored["epochs_trained"] == single["epochs_trained"] == 4
    assert single["val_auc"] > 0.85, "the synthetic problem should be learnable"
    assert abs(mirrored["val_auc"] - single["val_auc"]) <= 0.01
    assert abs(mirrored["val_loss"] - single["val_loss"]) <= 0.01
    assert abs(mirrored["val_accuracy"] - single["val_accuracy"]) <= 0.02


def test_train_model_steps_per_epoch_follow_the_budget(prepared):
    """480 training rows: a batch of 100 is capped at 480 // 8 = 60 rows, 8 steps a pass, so
    an epoch repeats the split 4 times to make 32 optimizer steps; the learning-rate schedule
    counts the same epochs."""
    config = small_config(batch_size=100, epochs=1)
    result = training.train_model(lambda: build_core(20, 2, config, seed=0), prepared, config,
                                  early_stopping=False, verbose=False)
    assert result.budget == training.Budget(batch_size=60, global_batch_size=60,
                                            passes_per_epoch=4, steps_per_epoch=32)
    assert result.model.optimizer.learning_rate.steps_per_epoch == 32
    assert int(result.model.optimizer.iterations.numpy()) == 32


@pytest.mark.parametrize("rows, batch, replicas, expected", [
    (12000, 256, 1, (256, 256, 1, 47)),  # a large split: the requested batch, one pass
    (12000, 256, 2, (256, 512, 2, 47)),  # global batch = replicas x batch
    (455, 512, 1, (56, 56, 4, 33)),  # small: capped at rows // 8, repeated to >= 32 steps
    (120, 256, 1, (16, 16, 5, 38)),  # tiny: never below 16 rows a batch
    (10, 256, 1, (16, 16, 52, 33)),
    (65536, 256, 1, (256, 256, 1, 256)),  # up to MAX_ROWS_PER_EPOCH: one pass
])
def test_budget_caps_the_batch_by_the_rows_and_makes_enough_steps(rows, batch, replicas,
                                                                   expected):
    plan = training.budget(rows, batch, replicas)
    assert (plan.batch_size, plan.global_batch_size, plan.passes_per_epoch,
            plan.steps_per_epoch) == expected
    assert plan.steps_per_epoch >= training.MIN_STEPS_PER_EPOCH


def test_large_split_epochs_are_a_bounded_slice_of_one_continuous_stream():
    plan = training.budget(480_000, 256)
    assert plan.continuous and plan.steps_per_epoch == training.MAX_ROWS_PER_EPOCH // 256
    # The final training is not capped: an epoch is a pass over every row.
    full = training.budget(480_000, 256, epoch_rows=None)
    assert not full.continuous and full.steps_per_epoch == 1875


def test_make_strategy_rejects_unknown_names_and_multi_worker_without_tf_config(monkeypatch):
    with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
        training.make_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        training.make_strategy("multi_worker")
    assert training.make_strategy("none").num_replicas_in_sync == 1


def test_make_optimizer_uses_constant_then_decay_schedule():
    config = small_config(learning_rate=0.1, constant_epochs=2, decay_rate=0.5)
    optimizer = training.make_optimizer(config, steps_per_epoch=10)
    assert isinstance(optimizer, tf.keras.optimizers.legacy.Adam)
    schedule = optimizer.learning_rate
    assert isinstance(schedule, ConstantThenExponentialDecay)
    assert float(schedule(19)) == pytest.approx(0.1)
    assert float(schedule(30)) == pytest.approx(0.05)


def test_class_weights_are_inverse_frequency_with_mean_one():
    labels = np.array([0] * 90 + [1] * 10)
    weights = training.class_weights(np.bincount(labels))
    assert weights[1] / weights[0] == pytest.approx(9.0)
    # The average example weighs 1.
    assert np.mean(np.array(weights)[labels]) == pytest.approx(1.0)


def test_mixed_float16_trains_on_cpu_with_loss_scaling_and_float32_logits(prepared,
                                                                         float32_policy):
    config = small_config(precision="mixed_float16", epochs=2)
    optimizer = training.make_optimizer(config, steps_per_epoch=8)
    assert isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer)

    core = build_core(20, 2, config, seed=0)
    block = core.get_layer("block_0")
    assert block.compute_dtype == "float16" and block.kernel.dtype == tf.float32
    assert core(features_of(prepared.held_out)[:4]).dtype == tf.float32

    result = training.train_model(lambda: build_core(20, 2, config, seed=0), prepared, config,
                                  early_stopping=False, verbose=False)
    assert isinstance(result.model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    losses = result.history["loss"]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert result.eval_metrics["val_auc"] > 0.8
    assert result.model(features_of(prepared.held_out)[:4], training=False).dtype == tf.float32
    # build_core sets the policy per layer; the process-wide policy is untouched.
    assert tf.keras.mixed_precision.global_policy().name == "float32"


def test_float32_config_gets_a_plain_optimizer():
    optimizer = training.make_optimizer(small_config(), steps_per_epoch=8)
    assert not isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer)


def test_train_model_writes_metrics_and_returns_eval_metrics(prepared, tmp_path):
    config = small_config(epochs=2)
    result = training.train_model(lambda: build_core(20, 2, config, seed=0), prepared, config,
                                  run_dir=str(tmp_path), verbose=False)
    assert result.epochs_trained == 2
    assert result.best_epoch in (1, 2)
    assert set(result.eval_metrics) == {"val_loss", "val_accuracy", "val_auc"}
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2
    assert result.history["learning_rate"][0] == pytest.approx(config.learning_rate)


def test_searches_validate_on_a_bounded_sample_of_each_validation_split(monkeypatch):
    """A search validates on at most SEARCH_VALIDATION_ROWS validation rows, the final training on
    all; a split with other targets (the teacher's logits) has its own sample, whichever was
    drawn first."""
    import dataclasses

    from conftest import make_prepared

    monkeypatch.setattr(training, "SEARCH_VALIDATION_ROWS", 100)
    prepared = make_prepared(n=2000)  # 400 validation rows
    sample = prepared.validation(100)
    assert sample.rows == 100 and prepared.validation(100) is sample  # drawn once
    assert prepared.validation(None) is prepared.held_out
    distilled = dataclasses.replace(prepared, held_out=prepared.held_out.with_targets(
        "teacher_logits", lambda x: x[:, :2]))
    assert "teacher_logits" in next(iter(distilled.validation(100).dataset(50)))[1]
    assert "teacher_logits" not in next(iter(prepared.validation(100).dataset(50)))[1]
    seen = []
    original = training.PreparedData.validation

    def validation(self, rows=None):
        seen.append(rows)
        return original(self, rows)

    monkeypatch.setattr(training.PreparedData, "validation", validation)
    config = small_config(epochs=1)
    training.train_model(lambda: build_core(prepared.dim, 2, config), prepared, config,
                         verbose=False, epoch_rows=1000)
    training.train_model(lambda: build_core(prepared.dim, 2, config), prepared, config,
                         verbose=False, epoch_rows=None)
    assert seen == [100, None]


def test_towers_train_each_as_it_would_alone(prepared):
    """Two students of different sizes and losses trained side by side (`Towers`) end with
    the weights, history and batch-normalization statistics each gets trained alone: the
    same batches, steps, gradient clipping (per tower) and best-epoch weights."""
    import dataclasses
    from modules.compression import distillation
    from modules.learning import loop
    from modules.models.model import Towers
    configs = {"small": small_config(num_layers=1, units=4, epochs=3, clip_norm=0.5,
                                     dropout=0.0),
               "wide": small_config(num_layers=2, units=16, epochs=3, clip_norm=0.5,
                                    dropout=0.0)}
    logits = lambda x: tf.stack([x[:, 0], -x[:, 0]], axis=1)  # a stand-in teacher
    data = dataclasses.replace(prepared, train=prepared.train.with_targets("teacher_logits",
                                                                           logits),
                               held_out=prepared.held_out.with_targets("teacher_logits", logits))
    losses = {"small": loop.cross_entropy, "wide": distillation.distillation_loss(0.3, 4.0)}
    together = training.train_model(
        lambda: Towers({name: build_core(20, 2, c, seed=3) for name, c in configs.items()}),
        data, configs["small"], loss_fn=losses, verbose=False, run=Training(seed=5))
    assert together.epochs_trained == 3
    for name, config in configs.items():
        alone = training.train_model(lambda: build_core(20, 2, config, seed=3), data,
                                     configs["small"], loss_fn=losses[name],
                                     verbose=False, run=Training(seed=5))
        for a, b in zip(alone.model.get_weights(), together.model.towers[name].get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        history = training.tower_history(together.history, name)
        assert set(history) == set(alone.history)
        for key in ("loss", "val_auc", "learning_rate"):
            np.testing.assert_allclose(history[key], alone.history[key], rtol=1e-4)
