"""modules.models.layers: initializers that follow the activation, DenseBlock and FeatureCross."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from modules.models.layers import ACTIVATIONS, DenseBlock, FeatureCross, initializer_for

WIDTH, DEPTH = 256, 30


# -- initializer_for ----------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "elu", "gelu", "swish"])
def test_relu_family_gets_he_initialization(activation):
    assert isinstance(initializer_for(activation), tf.keras.initializers.HeNormal)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_saturating_activations_get_glorot_initialization(activation):
    assert isinstance(initializer_for(activation), tf.keras.initializers.GlorotUniform)


def test_selu_gets_lecun_initialization():
    assert isinstance(initializer_for("selu"), tf.keras.initializers.LecunNormal)


def test_every_listed_activation_has_an_initializer():
    for activation in ACTIVATIONS:
        initializer_for(activation)


def test_unknown_activation_is_rejected_by_name():
    with pytest.raises(ValueError, match="unknown activation 'softplus'"):
        initializer_for("softplus")


def test_seeded_initializer_is_reproducible():
    a = initializer_for("relu", seed=3)(shape=(4, 4)).numpy()
    b = initializer_for("relu", seed=3)(shape=(4, 4)).numpy()
    np.testing.assert_array_equal(a, b)


def _deep_stack(make_initializer, activation):
    """Variance of each layer's pre-activation relative to the input's, the saturated
    fraction (|tanh| > 0.9) and the output variance, through DEPTH plain matmul layers."""
    x = np.random.default_rng(0).normal(size=(1000, WIDTH)).astype(np.float32)
    act = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh}[activation]
    h, ratios = x, []
    for i in range(DEPTH):
        weights = make_initializer(i)(shape=(WIDTH, WIDTH)).numpy()
        z = h @ weights
        ratios.append(z.var() / x.var())
        h = act(z)
    return np.array(ratios), float(np.mean(np.abs(h) > 0.9)), float(h.var())


def test_he_keeps_relu_activations_bounded_through_30_layers():
    ratios, _, _ = _deep_stack(lambda i: initializer_for("relu", seed=i), "relu")
    assert np.all((ratios > 0.2) & (ratios < 5.0)), ratios


def test_glorot_with_relu_collapses_through_30_layers():
    """The wrong initializer for ReLU: each layer halves the variance (0.5^30 ~ 1e-9)."""
    ratios, _, _ = _deep_stack(lambda i: tf.keras.initializers.GlorotUniform(seed=i), "relu")
    assert ratios[-1] < 1e-6


def test_glorot_keeps_tanh_unsaturated_through_30_layers():
    """Glorot keeps tanh in its near-linear range: no unit saturates and the variance decays
    only slowly (polynomially, not the exponential collapse above)."""
    ratios, saturated, variance = _deep_stack(lambda i: initializer_for("tanh", seed=i), "tanh")
    assert saturated < 0.01
    assert variance > 1e-3
    assert ratios[-1] > 1e-3


def test_he_with_tanh_saturates_units():
    """The wrong initializer for tanh: He's doubled variance drives units into saturation."""
    _, glorot_saturated, _ = _deep_stack(lambda i: initializer_for("tanh", seed=i), "tanh")
    _, he_saturated, _ = _deep_stack(lambda i: tf.keras.initializers.HeNormal(seed=i), "tanh")
    assert he_saturated > 0.03
    assert he_saturated > 10 * max(glorot_saturated, 1e-3)


# -- DenseBlock and FeatureCross ------------------------------------------------------------------
def test_dense_block_creates_its_weights_in_build():
    block = DenseBlock(4, "relu", batch_norm=False)
    assert block.weights == []
    block.build((None, 8))
    assert block.kernel.shape == (8, 4) and block.bias.shape == (4,)
    assert block.get_prunable_weights() == [block.kernel]
    np.testing.assert_array_equal(block.bias.numpy(), np.zeros(4))


def test_dense_block_kernel_initializer_follows_activation():
    assert isinstance(DenseBlock(4, "tanh").kernel_initializer,
                      tf.keras.initializers.GlorotUniform)
    assert isinstance(DenseBlock(4, "gelu").kernel_initializer, tf.keras.initializers.HeNormal)


def test_dense_block_forward_pass_without_norm_is_activation_of_affine_map():
    block = DenseBlock(3, "tanh", batch_norm=False, seed=0)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    y = block(x, training=False).numpy()
    expected = np.tanh(x @ block.kernel.numpy() + block.bias.numpy())
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [({"units": 0}, "units"),
                                             ({"units": 4, "dropout": 1.0}, "dropout")])
def test_dense_block_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DenseBlock(**kwargs)


def test_dense_block_config_round_trip():
    block = DenseBlock(7, "swish", batch_norm=False, dropout=0.25, l2=1e-4, seed=5,
                       name="b")
    config = block.get_config()
    clone = DenseBlock.from_config(config)
    assert clone.get_config() == config
    assert (clone.units, clone.activation_name, clone.batch_norm, clone.dropout_rate,
            clone.l2, clone.seed) == (7, "swish", False, 0.25, 1e-4, 5)


def test_dense_block_l2_adds_a_regularization_loss():
    block = DenseBlock(4, "relu", l2=0.1)
    block.build((None, 3))
    assert len(block.losses) == 1
    assert float(block.losses[0]) == pytest.approx(0.1 * np.sum(block.kernel.numpy() ** 2),
                                                   rel=1e-5)


def test_feature_cross_creates_its_weights_in_build_and_prunes_both_factors():
    cross = FeatureCross(rank=2)
    assert cross.weights == []
    cross.build((None, 6))
    assert cross.down.shape == (6, 2) and cross.up.shape == (2, 6) and cross.bias.shape == (6,)
    assert cross.get_prunable_weights() == [cross.down, cross.up]


def test_feature_cross_computes_low_rank_cross_plus_residual():
    cross = FeatureCross(rank=2, seed=0)
    x = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    y = cross(x).numpy()
    crossed = x @ cross.down.numpy() @ cross.up.numpy() + cross.bias.numpy()
    np.testing.assert_allclose(y, x * crossed + x, rtol=1e-5, atol=1e-6)


def test_feature_cross_config_round_trip_and_validation():
    cross = FeatureCross(rank=3, l2=0.01, seed=2, name="c")
    config = cross.get_config()
    assert FeatureCross.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="rank"):
        FeatureCross(rank=0)


@pytest.fixture(scope="module")
def trained_stack():
    """A Sequential of both layers, with batch-norm statistics moved off their defaults."""
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((8,)),
        FeatureCross(rank=2, seed=0, name="cross"),
        DenseBlock(16, "relu", batch_norm=True, dropout=0.2, seed=1, name="block_0"),
        DenseBlock(8, "tanh", batch_norm=True, seed=2, name="block_1"),
        tf.keras.layers.Dense(2, name="logits"),
    ])
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(64, 8)).astype(np.float32)
    for _ in range(3):
        model(x, training=True)  # updates the moving statistics
    return model, x


def test_stack_of_custom_layers_round_trips_through_keras_format(trained_stack, tmp_path):
    model, x = trained_stack
    expected = model(x, training=False).numpy()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)  # no custom_objects: the layers are registered
    assert isinstance(loaded.get_layer("cross"), FeatureCross)
    assert isinstance(loaded.get_layer("block_0"), DenseBlock)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), expected, rtol=1e-6,
                               atol=1e-6)


def test_stack_of_custom_layers_round_trips_through_saved_model(trained_stack, tmp_path):
    model, x = trained_stack
    expected = model(x, training=False).numpy()
    # tf.saved_model.save: the serving signature computes the same function.
    plain = str(tmp_path / "plain")
    tf.saved_model.save(model, plain)
    serving = tf.saved_model.load(plain).signatures["serving_default"]
    (output,) = serving(tf.constant(x)).values()
    np.testing.assert_allclose(output.numpy(), expected, rtol=1e-6, atol=1e-6)
    # model.save in the SavedModel format: back into Keras with our layer classes.
    keras_dir = str(tmp_path / "keras_saved_model")
    model.save(keras_dir, save_format="tf")
    reloaded = tf.keras.models.load_model(keras_dir)
    assert isinstance(reloaded.get_layer("block_1"), DenseBlock)
    np.testing.assert_allclose(reloaded(x, training=False).numpy(), expected, rtol=1e-6,
                               atol=1e-6)
