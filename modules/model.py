"""The model core (preprocessed vector -> logits) and the hyperparameters that shape it."""
import dataclasses
from typing import Any, Dict, Optional

import tensorflow as tf

from modules import layers
from modules.settings import PRECISIONS



@dataclasses.dataclass
class ModelConfig:
    """Hyperparameters of one model and its training. Every field is validated."""
    num_layers: int = 3
    units: int = 256
    activation: str = "relu"
    dropout: float = 0.2
    batch_norm: bool = True
    cross_rank: int = 16  # 0: no FeatureCross block
    l2: float = 0.0
    learning_rate: float = 1e-3
    batch_size: int = 256
    epochs: int = 20
    constant_epochs: int = 10  # learning rate held constant this long, then decays
    decay_rate: float = 0.8  # learning-rate factor per epoch after the constant phase
    clip_norm: float = 0.0  # 0: no gradient clipping
    early_stopping_patience: int = 4
    precision: str = "float32"

    def __post_init__(self):
        self.validate()

    def validate(self):
        checks = [
            (self.num_layers >= 0, "num_layers must be >= 0"),
            (self.units >= 1, "units must be >= 1"),
            (self.activation in layers.ACTIVATIONS,
             f"activation must be one of {', '.join(layers.ACTIVATIONS)}"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (self.cross_rank >= 0, "cross_rank must be >= 0"),
            (self.l2 >= 0.0, "l2 must be >= 0"),
            (self.learning_rate > 0.0, "learning_rate must be > 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.constant_epochs >= 0, "constant_epochs must be >= 0"),
            (0.0 < self.decay_rate <= 1.0, "decay_rate must be in (0, 1]"),
            (self.clip_norm >= 0.0, "clip_norm must be >= 0"),
            (self.early_stopping_patience >= 0, "early_stopping_patience must be >= 0"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"bad hyperparameter: {message} ({self._value_of(message)})")

    def _value_of(self, message: str) -> str:
        name = message.split()[0]
        return f"got {name}={getattr(self, name)!r}"

    @classmethod
    def from_dict(cls, values: Optional[Dict[str, Any]], **overrides) -> "ModelConfig":
        """Known fields from `values` (e.g. Keras Tuner's), then `overrides`; the rest default."""
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        merged = {k: v for k, v in (values or {}).items() if k in fields}
        merged.update({k: v for k, v in overrides.items() if v is not None})
        defaults = cls.__new__(cls)
        for f in dataclasses.fields(cls):
            setattr(defaults, f.name, f.default)
        typed = {}
        for name, value in merged.items():
            kind = type(getattr(defaults, name))
            if kind is bool and isinstance(value, str):
                typed[name] = value.strip().lower() in ("1", "true", "yes")
            else:
                typed[name] = bool(value) if kind is bool else kind(value)
        return cls(**typed)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


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
    its name. The towers share no weights, so with a loss per tower (`modules.loop`) each
    learns as it would alone (under mixed_float16 they share the dynamic loss scale); they
    share the data pipeline, each step's fixed costs and one graph tracing (candidates of
    one search: `modules.distillation`)."""

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
