"""modules.compression.distillation: the distillation loss and the distilled / scratch students."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from conftest import small_config
from modules.compression import distillation
from modules.learning import training
from modules.models import export
from modules.models.model import build_core
from modules.reading import splits
from modules.settings import Blessing, Training
from modules.verdict import evaluation
from pipeline import report


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


@pytest.fixture(scope="module")
def trained_teacher(prepared):
    config = small_config(num_layers=2, units=32, epochs=4)
    return training.train_model(lambda: build_core(20, 2, config, seed=7), prepared, config,
                                Training(seed=7), verbose=False).model


def search(prepared, teacher, max_auc_drop, max_accuracy_drop, **kwargs):
    return distillation.search_student(
        prepared, teacher, small_config(epochs=2),
        Blessing(max_auc_drop=max_auc_drop, max_accuracy_drop=max_accuracy_drop),
        Training(seed=0), sizes=kwargs.pop("sizes", ((1, 2), (1, 4), (1, 8))),
        grid=kwargs.pop("grid", ((0.3, 4.0), (0.1, 2.0))), **kwargs)


def test_search_takes_the_smallest_size_within_its_share_of_the_budget(prepared,
                                                                      trained_teacher):
    teacher_weights = [w.copy() for w in trained_teacher.get_weights()]
    result = search(prepared, trained_teacher, max_auc_drop=0.5, max_accuracy_drop=0.5,
                    sizes=((1, 2), (1, 4), (1, 8), (1, 16), (1, 32)))
    for before, after in zip(teacher_weights, trained_teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    # Any student keeps half of so generous a budget: the smallest is taken, and the sizes
    # after the first round (SIZES_PER_ROUND) are not trained: they could not be chosen.
    assert distillation.SIZES_PER_ROUND == 4
    assert [c.size for c in result.sizes] == ["1x2", "1x4", "1x8", "1x16"]
    assert result.grid[0] is result.sizes[0]
    assert [(c.alpha, c.temperature) for c in result.grid] == [(0.3, 4.0), (0.1, 2.0)]
    assert {c.size for c in result.grid} == {result.scratch.size} == {"1x2"}
    assert result.scratch.origin == "scratch" and result.scratch.alpha is None
    assert result.selected is max(result.grid + [result.scratch], key=distillation.rank)
    report = result.report()
    assert report["winner"] == result.selected.origin and report["size_within_budget"]
    assert set(report["distilled_minus_scratch"]) == {"accuracy", "auc"}


def test_without_a_size_within_budget_every_size_is_tried_and_the_best_kept(
        prepared, trained_teacher, monkeypatch):
    batches = []  # (batch size, training rows) of each training the search runs
    train_model = training.train_model

    def spy(build, data, config, *args, **kwargs):
        batches.append((config.batch_size, data.train.rows))
        return train_model(build, data, config, *args, **kwargs)

    monkeypatch.setattr(training, "train_model", spy)
    result = search(prepared, trained_teacher,
                    sizes=((1, 2), (1, 4), (1, 8), (1, 16), (1, 32)),
                    grid=((0.3, 4.0), (0.1, 2.0)), max_auc_drop=0.01, max_accuracy_drop=0.01,
                    budget_share=float("inf"))  # no student can leave more than all of it
    # The first round's sizes, then every size in two rounds with the synthetic rows the
    # teacher labels: the larger sizes are not tried without them.
    sizes = ["1x2", "1x4", "1x8", "1x16", "1x32"]
    assert [c.size for c in result.sizes] == sizes[:distillation.SIZES_PER_ROUND] + sizes
    copies = distillation.synthetic_copies(len(prepared.train))
    assert copies == distillation.MAX_SYNTHETIC_COPIES  # 480 rows
    assert [c.synthetic_rows for c in result.sizes] == [0] * 4 + [copies * 480] * 5
    # Rounds on synthetic rows take batches of SYNTHETIC_BATCH rows, the others the
    # students' own (64): sizes, synthetic, synthetic, the control.
    synthetic = (distillation.SYNTHETIC_BATCH, 480 * (1 + copies))
    assert batches == [(64, 480)] + [synthetic] * 2 + [(64, 480)]
    chosen = max(result.sizes, key=distillation.rank)
    assert result.grid[0] is chosen
    # The grid's other points train on the data the chosen size learned from: with
    # synthetic rows, the chosen one alone. The control learns from the training rows.
    assert len(result.grid) == (1 if chosen.synthetic_rows else 2)
    assert result.scratch.synthetic_rows == 0 and result.scratch.origin == "scratch"
    assert not result.report()["size_within_budget"]
    [search_line, _] = report.distillation_lines({**result.report(), "param_ratio": 1.0})
    assert (f"1x16 {result.sizes[3].budget_left:+.2f}; again with {copies * 480} synthetic "
            f"rows the teacher labels: 1x2 {result.sizes[4].budget_left:+.2f}") in search_line
    model = distillation.rebuild(result.selected, prepared, small_config(epochs=2))
    np.testing.assert_allclose(evaluation.keras_metrics(model, prepared.held_out)["accuracy"],
                               result.selected.metrics["accuracy"])


class _Layout:
    """What `feature_of_slots` reads of a preprocessor: 20 slots as 5 features of 4."""

    @staticmethod
    def layout():
        return [{"feature": f"f{i}", "offset": 4 * i, "width": 4} for i in range(5)]


@pytest.mark.parametrize("grouped", [False, True])
def test_synthetic_rows_mix_each_row_with_its_nearest_neighbour_and_the_teacher_labels_them(
        prepared, grouped):
    teacher = build_core(20, 2, small_config(), seed=0)
    if grouped:
        prepared = dataclasses.replace(prepared, preprocessor=_Layout())
    distilled = distillation.with_teacher_logits(teacher, prepared)
    made = distillation.with_synthetic_rows(distilled, teacher, copies=3, seed=5)
    x, targets = prepared.train.arrays()
    rows = len(x)
    stored = [np.concatenate(parts) for parts in zip(*[
        (block, t["label"], t["teacher_logits"]) for block, t in made.train.blocks()])]
    features, labels, logits = stored
    assert len(features) == len(made.train) == 4 * rows  # a block holds every row (480)
    np.testing.assert_array_equal(features[:rows], x)  # the training rows first, as they were
    np.testing.assert_array_equal(labels[:rows], targets["label"])
    synthetic = features[rows:].reshape(3, rows, 20)
    distances = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    neighbours = x[distances.argmin(1)]
    from_row, from_neighbour = synthetic == x[None], synthetic == neighbours[None]
    assert np.all(from_row | from_neighbour)
    taken = from_neighbour & ~from_row
    assert 0.4 < taken.mean() < 0.6  # each feature taken with probability 0.5
    if grouped:  # all of a feature's slots come from the row, or all from its neighbour
        by_feature = [part.reshape(3, rows, 5, 4).all(-1) for part in (from_row, from_neighbour)]
        assert np.all(by_feature[0] | by_feature[1])
        assert 0.4 < (~by_feature[0]).mean() < 0.6
    teacher_logits = teacher(features[rows:], training=False).numpy()
    np.testing.assert_allclose(logits[rows:], teacher_logits, atol=1e-5)
    np.testing.assert_array_equal(labels[rows:], teacher_logits.argmax(1))
    assert made.held_out is distilled.held_out
    assert 1 <= distillation.synthetic_copies(10 ** 7) <= distillation.synthetic_copies(100)


def test_fixed_flags_narrow_the_choices():
    sizes = distillation.STUDENT_SIZES
    assert distillation.filter_choices(sizes, None, None) == list(sizes)
    assert distillation.filter_choices(sizes, 1, 16) == [(1, 16)]
    assert distillation.filter_choices(sizes, None, 32) == [(1, 32), (2, 32)]
    assert distillation.filter_choices(sizes, 3, 24) == [(3, 24)]  # outside the ladder
    assert distillation.filter_choices(sizes[1:], 3, None)[:2] == [(3, 4), (3, 8)]
    assert distillation.size_choices(None, None)[0] == distillation.LINEAR  # starts linear
    assert distillation.size_choices(0, None) == [distillation.LINEAR]
    assert distillation.size_choices(3, None)[:2] == [(3, 4), (3, 8)]
    grid = distillation.DISTILLATION_GRID
    assert distillation.filter_choices(grid, 0.1, None) == [(0.1, 2.0), (0.1, 8.0)]
    assert distillation.filter_choices(grid, 0.5, 3.0) == [(0.5, 3.0)]


@pytest.mark.parametrize("cache_mb", [None, 0])  # in memory; streamed from a snapshot
def test_teacher_logits_are_stored_next_to_the_labels_of_both_splits(prepared, cache_mb):
    teacher = build_core(20, 2, small_config(), seed=0)
    if cache_mb is not None:  # the same rows, streamed
        prepared = dataclasses.replace(prepared, **{
            name: splits.Split.from_blocks(getattr(prepared, name)._blocks(), 20,
                                           len(getattr(prepared, name)), cache_mb)
            for name in ("train", "held_out")})
        assert not prepared.train.in_memory
    distilled = distillation.with_teacher_logits(teacher, prepared)
    for name in ("train", "held_out"):
        x = np.concatenate([x for x, _ in getattr(prepared, name).blocks()])
        stored = np.concatenate([t["teacher_logits"]
                                 for _, t in getattr(distilled, name).blocks()])
        assert stored.shape == (len(x), 2)
        np.testing.assert_allclose(stored, teacher(x, training=False).numpy(), atol=1e-5)
    assert distilled.train.in_memory == prepared.train.in_memory


def test_a_student_of_the_teachers_own_shape_starts_from_its_weights(prepared):
    """A linear teacher distilled into the linear student keeps what it knows (from
    scratch, the student would have to learn it again in a student's shorter training);
    the scratch control still starts from scratch."""
    linear = small_config(num_layers=0, epochs=6)
    teacher = training.train_model(lambda: build_core(20, 2, linear, seed=3), prepared,
                                   linear, verbose=False, run=Training(seed=3)).model
    result = search(prepared, teacher, sizes=(distillation.LINEAR,), grid=((0.3, 4.0),),
                    max_auc_drop=0.5, max_accuracy_drop=0.5)
    student = distillation.rebuild(result.sizes[0], prepared, small_config(epochs=2))
    teacher_scores = evaluation.keras_metrics(teacher, prepared.held_out)
    assert result.sizes[0].metrics["log_loss"] <= teacher_scores["log_loss"] + 0.01
    assert student.count_params() == teacher.count_params()
    assert result.scratch.origin == "scratch"


def test_a_linear_students_control_is_the_linear_baseline_not_trained_again(prepared):
    """Where the chosen size is linear, the control is the Baselines' logistic regression
    (its weight decay chosen on validation), scored like every candidate: not a second
    logistic regression trained with the students' settings."""
    teacher = build_core(20, 2, small_config(num_layers=1, units=8), seed=0)
    config = small_config(num_layers=0, epochs=3)
    core = training.train_model(lambda: build_core(20, 2, config, seed=4), prepared, config,
                                verbose=False, run=Training(seed=4)).model
    linear = export.ExportedModel(core, None, [], None, ["0", "1"],
                                  {"epochs_trained": 3, "history": {"val_loss": [.6, .5, .4]}})
    trained = []
    real = training.train_model

    def train_model(build, *args, **kwargs):
        trained.append(sorted(build().towers))
        return real(build, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "train_model", train_model)
        result = search(prepared, teacher, sizes=(distillation.LINEAR, (1, 4)),
                        max_auc_drop=0.5, max_accuracy_drop=0.5, linear=linear)
    assert result.grid[0].size == result.scratch.size == "linear"
    assert trained[-1] == ["linear_alpha0.1_t2"]  # the grid's other point, no scratch tower
    scratch = result.scratch
    assert (scratch.origin, scratch.baseline, scratch.how) == (
        "scratch", "linear", "from scratch (the linear baseline)")
    for mine, its in zip(scratch.weights, core.get_weights()):
        np.testing.assert_array_equal(mine, its)
    assert scratch.metrics == pytest.approx(evaluation.keras_metrics(core, prepared.held_out))
    assert scratch.epochs_trained == 3 and scratch.history["val_loss"] == [.6, .5, .4]
    assert result.selected is max(result.grid + [scratch], key=distillation.rank)
    # A larger chosen size still trains its own control
    result = search(prepared, teacher, sizes=((1, 4),), max_auc_drop=0.5,
                    max_accuracy_drop=0.5, linear=linear)
    assert result.scratch.size == "1x4" and result.scratch.baseline is None


def test_students_use_an_activation_tflite_micro_runs():
    """A gelu teacher's students use swish (TFLite Micro has no GELU); others keep theirs."""
    for teacher, student in (("gelu", "swish"), ("relu", "relu"), ("tanh", "tanh"),
                             ("swish", "swish")):
        config = distillation.student_config({"activation": teacher, "units": 256}, "float32", 5)
        assert config.activation == student and config.epochs == 5
