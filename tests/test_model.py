"""modules.models.model: ModelConfig validation and coercion, and the core it builds."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from modules.models.hyperparameters import ModelConfig
from modules.models.layers import DenseBlock, FeatureCross
from modules.models.model import build_core


@pytest.mark.parametrize("field, value", [
    ("learning_rate", -0.1),
    ("learning_rate", 0.0),
    ("units", 0),
    ("activation", "relux"),
    ("precision", "float64"),
    ("num_layers", -1),
    ("dropout", 1.0),
    ("decay_rate", 0.0),
    ("batch_size", 0),
    ("epochs", 0),
    ("clip_norm", -1.0),
    ("cross_rank", -2),
])
def test_bad_hyperparameter_raises_value_error_naming_field_and_value(field, value):
    with pytest.raises(ValueError) as error:
        ModelConfig(**{field: value})
    message = str(error.value)
    assert f"{field}={value!r}" in message
    assert message.startswith("bad hyperparameter")


def test_defaults_are_valid_and_round_trip_through_to_dict():
    config = ModelConfig()
    assert ModelConfig(**config.to_dict()) == config
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_from_dict_coerces_types_and_ignores_unknown_keys():
    config = ModelConfig.from_dict({
        "units": 64.0, "num_layers": "2", "learning_rate": "0.01", "dropout": 0,
        "batch_norm": 0, "cross_rank": np.int64(8), "activation": "tanh",
        "tuner/epochs": 5, "tuner/initial_epoch": 2, "tuner/trial_id": "0003",
        "not_a_field": object()})
    assert config.units == 64 and type(config.units) is int
    assert config.num_layers == 2 and type(config.num_layers) is int
    assert config.learning_rate == 0.01 and type(config.learning_rate) is float
    assert config.dropout == 0.0 and type(config.dropout) is float
    assert config.batch_norm is False
    assert config.cross_rank == 8 and type(config.cross_rank) is int
    assert config.activation == "tanh"
    assert "tuner/epochs" not in config.to_dict()


def test_from_dict_overrides_win_and_none_overrides_are_ignored():
    config = ModelConfig.from_dict({"units": 64, "epochs": 7}, units=32, epochs=None)
    assert config.units == 32
    assert config.epochs == 7
    assert ModelConfig.from_dict(None) == ModelConfig()


def test_from_dict_validates_the_result():
    with pytest.raises(ValueError, match="units=0"):
        ModelConfig.from_dict({"units": 0})
    with pytest.raises(ValueError, match="learning_rate=-1.0"):
        ModelConfig.from_dict({}, learning_rate=-1)


def test_every_field_has_a_default():
    for field in dataclasses.fields(ModelConfig):
        assert field.default is not dataclasses.MISSING, field.name


def test_build_core_layers_follow_the_config():
    config = ModelConfig(num_layers=2, units=8, cross_rank=3, activation="tanh",
                         batch_norm=False, dropout=0.1)
    core = build_core(5, 3, config, seed=0)
    assert [type(layer) for layer in core.layers] == [FeatureCross, DenseBlock, DenseBlock,
                                                      tf.keras.layers.Dense]
    assert core.get_layer("block_1").units == 8
    assert core.get_layer("block_0").activation_name == "tanh"
    assert core.get_layer("cross").rank == 3
    assert core(np.zeros((4, 5), np.float32)).shape == (4, 3)
    no_cross = build_core(5, 2, ModelConfig(num_layers=0, cross_rank=0), seed=0)
    assert [type(layer) for layer in no_cross.layers] == [tf.keras.layers.Dense]


def test_build_core_with_the_same_seed_is_reproducible():
    config = ModelConfig(num_layers=1, units=8, cross_rank=2)
    a = build_core(5, 2, config, seed=3).get_weights()
    b = build_core(5, 2, config, seed=3).get_weights()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
