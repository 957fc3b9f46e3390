"""modules.models.trees: gradient-boosted trees (TF-DF) as a model core."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from tensorflow_metadata.proto.v0 import schema_pb2

from modules.learning import training
from modules.models import trees
from modules.reading import data, splits
from modules.reading.preprocessing import FeaturePreprocessor
from modules.verdict.evaluation import keras_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CITIES = ["lyon", "nice", "paris"]


def make_preprocessor():
    """Two numeric features (4 quantile bins each), a categorical of integer codes and a text
    categorical."""
    edges = [-1.0, -0.5, 0.0, 0.5, 1.0]
    return FeaturePreprocessor(
        [{"name": "a", "mean": 0.0, "std": 0.58, "edges": edges},
         {"name": "b", "mean": 0.0, "std": 0.58, "edges": edges}],
        [{"name": "code", "source": "numeric", "vocabulary": ["1", "2", "3"]},
         {"name": "city", "source": "text", "vocabulary": CITIES}], name="preprocessor")


def make_raw(n, num_classes, seed):
    """XOR of the signs of a and b (two classes); with three classes, the class also turns
    with the city: nothing a model additive in the features can learn. One `a` in 13 is
    missing (its class then follows b alone); one city in 25 is unknown (rome); `code` is noise."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    code = rng.choice([1.0, 2.0, 3.0, np.nan], n)
    city = rng.choice(np.array(CITIES + ["rome"], dtype=object), n, p=[0.32, 0.32, 0.32, 0.04])
    xor = ((a > 0) != (b > 0)).astype(np.int64)
    a[::13] = np.nan
    xor[::13] = (b[::13] > 0).astype(np.int64)
    if num_classes == 2:
        y = xor
    else:
        index = np.array([CITIES.index(c) if c in CITIES else 0 for c in city])
        y = (xor + index) % 3
    return {"a": a, "b": b, "code": code, "city": city.astype(str)}, y


def encoded(preprocessor, raw):
    return preprocessor.encode({"a": tf.constant(raw["a"], tf.float64),
                                "b": tf.constant(raw["b"], tf.float64),
                                "code": tf.constant(raw["code"], tf.float64),
                                "city": tf.constant(raw["city"].tolist())})


def make_prepared(num_classes=2, n_train=2000, n_held_out=600, seed=0, streamed=False):
    """PreparedData with a real FeaturePreprocessor: splits of encoded rows, expanded as they
    are read (as `modules.learning.training` prepares them); `streamed` keeps the training split on
    disk (cache_mb=0)."""
    preprocessor = make_preprocessor()
    columns = [data.FeatureColumn("a", data.NUMERIC, schema_pb2.FLOAT),
               data.FeatureColumn("b", data.NUMERIC, schema_pb2.FLOAT),
               data.FeatureColumn("code", data.NUMERIC, schema_pb2.INT),
               data.FeatureColumn("city", data.TEXT, schema_pb2.BYTES)]

    def split(n, split_seed, cache_mb=splits.DEFAULT_CACHE_MB):
        raw, y = make_raw(n, num_classes, split_seed)
        blocks = tf.data.Dataset.from_tensor_slices(
            (encoded(preprocessor, raw), {"label": tf.constant(y)})).batch(256)
        return splits.Split.from_blocks(blocks, preprocessor.output_dim, n, cache_mb,
                                        expand=preprocessor.expand)

    return training.PreparedData(
        split(n_train, seed, 0 if streamed else splits.DEFAULT_CACHE_MB),
        split(n_held_out, seed + 1), [str(c) for c in range(num_classes)], columns,
        data.FeatureColumn("label", data.TEXT, schema_pb2.BYTES), preprocessor,
        {"train_rows": n_train, "validation_rows": n_held_out})


@pytest.fixture(scope="module")
def binary():
    prepared = make_prepared(2)
    return prepared, trees.train_trees(prepared, seed=0)


@pytest.fixture(scope="module")
def three_classes():
    prepared = make_prepared(3)
    return prepared, trees.train_trees(prepared, seed=0)


def test_decoding_gives_one_value_per_feature(binary):
    prepared, _ = binary
    preprocessor = prepared.preprocessor
    raw = {"a": np.array([0.25, np.nan]), "b": np.array([-2.0, 0.5]),
           "code": np.array([3.0, np.nan]), "city": np.array(["nice", "rome"])}
    x = preprocessor.expand(encoded(preprocessor, raw))
    columns = trees.decoding(preprocessor)
    assert [(c["feature"], c["kind"]) for c in columns] == [
        ("a", "numeric"), ("b", "numeric"), ("code", "ordinal"), ("city", "categorical")]
    decoded = trees.decode(x, columns)
    assert list(decoded) == [trees.input_name(i, c["feature"]) for i, c in enumerate(columns)]
    a, b, code, city = decoded.values()
    np.testing.assert_allclose(a.numpy(), [0.25 / 0.58, np.nan], rtol=1e-6)  # NaN: missing
    np.testing.assert_allclose(b.numpy(), [-2.0 / 0.58, 0.5 / 0.58], rtol=1e-6)
    assert code.dtype == tf.float32 and code.numpy().tolist() == [3.0, 0.0]  # 0: missing
    assert city.dtype == tf.int64 and city.numpy().tolist() == [2, 0]  # 0: out of vocabulary


def test_trees_learn_xor_that_a_linear_model_cannot(binary):
    prepared, core = binary
    metrics = keras_metrics(core, prepared.held_out)
    assert metrics["accuracy"] > 0.9 and metrics["auc"] > 0.95, metrics
    # Logistic regression on the same preprocessed vectors (piecewise-linear bins included).
    x_train, t_train = prepared.train.arrays()
    x_test, t_test = prepared.held_out.arrays()
    linear = LogisticRegression(max_iter=2000).fit(x_train, t_train["label"])
    assert linear.score(x_test, t_test["label"]) < 0.7
    assert metrics["accuracy"] > linear.score(x_test, t_test["label"]) + 0.2


def test_three_classes_better_than_chance(three_classes):
    prepared, core = three_classes
    metrics = keras_metrics(core, prepared.held_out)
    assert metrics["accuracy"] > 0.8, metrics


@pytest.mark.parametrize("fixture, classes", [("binary", 2), ("three_classes", 3)])
def test_logits_shape_dtype_and_probabilities(request, fixture, classes):
    prepared, core = request.getfixturevalue(fixture)
    x, _ = prepared.held_out.arrays()
    logits = core(tf.constant(x[:50]), training=False)
    assert logits.shape == (50, classes) and logits.dtype == tf.float32
    assert core.input_shape == (None, prepared.dim) and core.output_shape == (None, classes)
    probabilities = np.exp(logits.numpy())
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert np.all(logits.numpy() >= np.log(trees.MIN_PROBABILITY) - 1e-6)
    assert core.count_params() == core.nodes > core.info["num_trees"] >= 1


def test_sample_cap_is_honoured():
    prepared = make_prepared(2, n_train=1500)
    core = trees.train_trees(prepared, max_rows=300, validation_rows=200, seed=1)
    assert core.info["train_rows"] == 300  # what TF-DF counted
    assert core.info["validation_rows"] == 200


def test_sample_cap_on_a_streamed_split():
    prepared = make_prepared(2, n_train=1500, streamed=True)
    assert not prepared.train.in_memory
    core = trees.train_trees(prepared, max_rows=400, seed=0)
    assert 0 < core.info["train_rows"] <= 400
    assert keras_metrics(core, prepared.held_out)["accuracy"] > 0.8


def test_deterministic_with_a_seed_and_quiet(binary, capfd):
    prepared, core = binary
    capfd.readouterr()
    again = trees.train_trees(prepared, seed=0)
    out, err = capfd.readouterr()
    assert "[INFO" not in out + err and "[WARNING" not in out + err, (out + err)[-2000:]
    x, _ = prepared.held_out.arrays()
    np.testing.assert_array_equal(core(x, training=False).numpy(),
                                  again(x, training=False).numpy())
    other = trees.train_trees(prepared, seed=3, max_rows=1000)
    assert not np.array_equal(core(x, training=False).numpy(),
                              other(x, training=False).numpy())


def test_feeding_the_expanded_vector_also_works(binary):
    prepared, _ = binary
    core = trees.train_trees(prepared, seed=0, decode_features=False)
    assert core.info["decoded_features"] is False
    assert keras_metrics(core, prepared.held_out)["accuracy"] > 0.8


def test_save_and_load_round_trip(binary, tmp_path, float32_policy):
    prepared, core = binary
    directory = trees.save_core(core, str(tmp_path / "core"))
    assert trees.is_trees_core(directory)
    tf.keras.mixed_precision.set_global_policy("mixed_float16")  # computes in float32 still
    loaded = trees.load_core(directory)
    assert isinstance(loaded, trees.TreesCore)
    x, _ = prepared.held_out.arrays()
    expected = core(x, training=False).numpy()
    np.testing.assert_array_equal(loaded(tf.constant(x), training=False).numpy(), expected)
    infer = tf.function(lambda v: loaded(v, training=False),
                        input_signature=[tf.TensorSpec([None, prepared.dim], tf.float32)])
    np.testing.assert_array_equal(infer(tf.constant(x)).numpy(), expected)
    assert loaded.count_params() == core.count_params()
    assert loaded.info == core.info
    assert loaded.input_shape == core.input_shape
    assert keras_metrics(loaded, prepared.held_out) == keras_metrics(core, prepared.held_out)
    with pytest.raises(NotImplementedError):
        core.save(str(tmp_path / "core.keras"))
    again = trees.load_core(trees.save_core(loaded, str(tmp_path / "again")))  # re-saved
    np.testing.assert_array_equal(again(x, training=False).numpy(), expected)


def test_a_trees_core_is_a_teacher(three_classes):
    """Distillation computes a teacher's logits inside tf.data maps (`Split.with_targets`)."""
    from modules.compression import distillation

    prepared, core = three_classes
    distilled = distillation.with_teacher_logits(core, prepared)
    x, targets = distilled.held_out.arrays()
    np.testing.assert_array_equal(targets["teacher_logits"], core(x, training=False).numpy())


def serving_module(core, dim):
    """A tf.Module serving `core` as modules.models.export's _ServingModule does."""
    module = tf.Module()
    module.core = core

    @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="features")],
                 autograph=False)
    def serve(features):
        return {"probabilities": tf.nn.softmax(module.core(features, training=False))}

    module.serve = serve
    return module


def test_serving_module_saved_and_loaded_in_a_fresh_process(binary, tmp_path):
    """As modules.models.export does: the core (trained, then also loaded) inside a tf.Module with a
    tf.function signature, saved with tf.saved_model.save and loaded where TF-DF's ops are
    registered (`import tensorflow_decision_forests` first)."""
    prepared, core = binary
    x, _ = prepared.held_out.arrays()
    expected = tf.nn.softmax(core(x, training=False)).numpy()
    trees.save_core(core, str(tmp_path / "core"))
    for name, model in (("trained", core), ("loaded", trees.load_core(str(tmp_path / "core")))):
        module = serving_module(model, prepared.dim)
        tf.saved_model.save(module, str(tmp_path / name),
                            signatures={"serving_default": module.serve})
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent("""
        import sys
        import modules  # noqa: F401
        import numpy as np
        import tensorflow as tf
        import tensorflow_decision_forests  # noqa: F401  (TF-DF's custom ops)
        x = np.load(sys.argv[1] + "/x.npy")
        for name in ("trained", "loaded"):
            served = tf.saved_model.load(sys.argv[1] + "/" + name)
            serve = served.signatures["serving_default"]
            out = serve(features=tf.constant(x))["probabilities"]
            np.save(sys.argv[1] + "/" + name + ".npy", out.numpy())
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1"))
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("trained", "loaded"):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), expected, atol=1e-6)
