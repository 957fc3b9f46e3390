"""Custom tf_keras layers of the model core. Both are prunable by the Model Optimization Toolkit.

Weights are created in `build()`, the forward pass is `call()`, and `get_config()` lets a saved
model load back. Initializers follow the activation: He for the ReLU family (the variance of
activations is preserved when half the units are zeroed), Glorot/Xavier for tanh and sigmoid
(symmetric, saturating), LeCun for SELU.
"""
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from modules.models.hyperparameters import ACTIVATIONS
from modules.reading.preprocessing import PACKAGE
_RELU_FAMILY = ("relu", "elu", "gelu", "swish")


def initializer_for(activation: str, seed=None) -> tf.keras.initializers.Initializer:
    """The weight initializer that keeps activation variance steady for `activation`."""
    if activation in _RELU_FAMILY:
        return tf.keras.initializers.HeNormal(seed=seed)
    if activation in ("tanh", "sigmoid", "linear"):
        return tf.keras.initializers.GlorotUniform(seed=seed)
    if activation == "selu":
        return tf.keras.initializers.LecunNormal(seed=seed)
    raise ValueError(f"unknown activation '{activation}'; choose one of {', '.join(ACTIVATIONS)}")


@tf.keras.utils.register_keras_serializable(PACKAGE)
class DenseBlock(tf.keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    """y = dropout(activation(batch_norm(x @ kernel + bias))).

    The kernel's initializer follows the activation (`initializer_for`); batch normalization
    and dropout are optional. Only the kernel is pruned: biases are few and matter.
    """

    def __init__(self, units: int, activation: str = "relu", batch_norm: bool = True,
                 dropout: float = 0.0, l2: float = 0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"units must be at least 1, got {units}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.units = int(units)
        self.activation_name = activation
        self.kernel_initializer = initializer_for(activation, seed)
        self.activation = tf.keras.activations.get(activation)
        self.batch_norm = bool(batch_norm)
        self.dropout_rate = float(dropout)
        self.l2 = float(l2)
        self.seed = seed
        self.norm = (tf.keras.layers.BatchNormalization(name="norm", dtype=self.dtype_policy)
                     if self.batch_norm else None)
        self.dropout = tf.keras.layers.Dropout(self.dropout_rate, seed=seed,
                                               dtype=self.dtype_policy)

    def build(self, input_shape):
        regularizer = tf.keras.regularizers.L2(self.l2) if self.l2 else None
        self.kernel = self.add_weight("kernel", shape=(int(input_shape[-1]), self.units),
                                      initializer=self.kernel_initializer,
                                      regularizer=regularizer)
        self.bias = self.add_weight("bias", shape=(self.units,), initializer="zeros")
        super().build(input_shape)

    def pre_norm(self, inputs):
        """x @ kernel + bias in float32: what batch normalization normalizes."""
        return tf.matmul(tf.cast(inputs, self.kernel.dtype), self.kernel) + self.bias

    # Not converted by AutoGraph (no tensor-dependent Python control flow): converting the
    # layers anew for every model cost seconds per model. The wrapper hides the signature
    # from Keras, which then passes `training` to every call.
    @tf.autograph.experimental.do_not_convert
    def call(self, inputs, training=None):
        outputs = tf.matmul(inputs, self.kernel) + self.bias
        if self.norm is not None:
            outputs = self.norm(outputs, training=training)
        outputs = self.activation(outputs)
        return self.dropout(outputs, training=training)

    def get_prunable_weights(self):
        return [self.kernel]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation_name,
                "batch_norm": self.batch_norm, "dropout": self.dropout_rate, "l2": self.l2,
                "seed": self.seed}


@tf.keras.utils.register_keras_serializable(PACKAGE)
class FeatureCross(tf.keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    """Low-rank feature crossing from DCN-V2 (Wang et al. 2021), which Keras does not have.

    y = x0 * (U (V^T x) + b) + x, with x0 the block's input: explicit multiplicative
    interactions between features (payment type x fare, hour x area) that a ReLU MLP only
    approximates. U and V are pruned.
    """

    def __init__(self, rank: int, l2: float = 0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if int(rank) < 1:
            raise ValueError(f"cross rank must be at least 1, got {rank}")
        self.rank = int(rank)
        self.l2 = float(l2)
        self.seed = seed

    def build(self, input_shape):
        dim = int(input_shape[-1])
        regularizer = tf.keras.regularizers.L2(self.l2) if self.l2 else None
        init = tf.keras.initializers.GlorotUniform(seed=self.seed)
        self.down = self.add_weight("down", shape=(dim, self.rank), initializer=init,
                                    regularizer=regularizer)
        self.up = self.add_weight("up", shape=(self.rank, dim), initializer=init,
                                  regularizer=regularizer)
        self.bias = self.add_weight("bias", shape=(dim,), initializer="zeros")
        super().build(input_shape)

    @tf.autograph.experimental.do_not_convert
    def call(self, inputs, training=None):  # the same in training and inference
        crossed = tf.matmul(tf.matmul(inputs, self.down), self.up) + self.bias
        return inputs * crossed + inputs

    def get_prunable_weights(self):
        return [self.down, self.up]

    def get_config(self):
        return {**super().get_config(), "rank": self.rank, "l2": self.l2, "seed": self.seed}
