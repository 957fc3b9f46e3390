"""The model core (preprocessed vector -> logits), built from its hyperparameters
(`modules.models.hyperparameters.ModelConfig`)."""
from typing import Dict

import tensorflow as tf

from modules.models import layers
from modules.models.hyperparameters import ModelConfig


def build_core(input_dim: int, num_classes: int, config: ModelConfig, seed=None,
               name: str = "core") -> tf.keras.Model:
    """[FeatureCross] -> num_layers x DenseBlock -> Dense logits (float32 under mixed
    precision). num_layers 0 without a cross layer is a linear model (logistic regression)."""
    policy = tf.keras.mixed_precision.Policy(config.precision)
    model = tf.keras.Sequential(name=name)
    model.add(tf.keras.Input(shape=(input_dim,), name="features"))
    if config.cross_rank:
        model.add(layers.FeatureCross(config.cross_rank, l2=config.l2, seed=seed, name="cross",
                                      dtype=policy))
    for i in range(config.num_layers):
        model.add(layers.DenseBlock(config.units, config.activation, config.batch_norm,
                                    config.dropout, l2=config.l2,
                                    seed=None if seed is None else seed + i, name=f"block_{i}",
                                    dtype=policy))
    # With no hidden layer this is logistic regression on the preprocessed features: the
    # weight decay must reach it too.
    model.add(tf.keras.layers.Dense(
        num_classes, dtype="float32", name="logits",
        kernel_initializer=tf.keras.initializers.GlorotUniform(seed),
        kernel_regularizer=tf.keras.regularizers.L2(config.l2) if config.l2 else None))
    return model


class Towers(tf.keras.Model):
    """Models trained side by side on the same batches: one input, each tower's logits under
    its name. The towers share no weights, so with a loss per tower (`modules.learning.loop`) each
    learns as it would alone (under mixed_float16 they share the dynamic loss scale); they
    share the data pipeline, each step's fixed costs and one graph tracing (candidates of
    one search: `modules.compression.distillation`)."""

    def __init__(self, towers: Dict[str, tf.keras.Model], **kwargs):
        super().__init__(**kwargs)
        self.names = list(towers)
        self.towers = dict(towers)

    @tf.autograph.experimental.do_not_convert
    def call(self, inputs, training=None):
        return {name: self.towers[name](inputs, training=training) for name in self.names}


def to_float32(model: tf.keras.Model) -> tf.keras.Model:
    """The same model computing in float32: mixed precision is for training; TFLite and int8
    calibration want float32 graphs. Variables are float32 under mixed policies already."""
    if all(layer.compute_dtype in (None, "float32") for layer in model.layers):
        return model

    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = tf.keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
