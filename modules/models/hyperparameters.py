"""The hyperparameters of a model and its training, and the tuner's search space over them.

No TensorFlow and no project imports here: the runners check a `--search-space` file while parsing flags, before
anything heavy is imported. `modules.models.model` builds a core from a `ModelConfig`;
`modules.learning.tuner` declares a search space on Keras Tuner's `HyperParameters`.
"""
import dataclasses
from typing import Any, Dict, Optional, Tuple

ACTIVATIONS = ("relu", "elu", "gelu", "swish", "selu", "tanh", "sigmoid")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


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
            (self.activation in ACTIVATIONS,
             f"activation must be one of {', '.join(ACTIVATIONS)}"),
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


# Each entry: {"int": [low, high]} or {"float": [low, high]} (optional "sampling": "log",
# "step"), {"choice": [values...]}, or a plain value (fixed, not searched).
# The Tuner searches for the teacher: the best model the data supports, which the student
# then learns from. Its capacity follows the training rows (`search_space_for`): a few
# hundred rows support a linear model or one small layer, hundreds of thousands several
# wide ones; weight decay (l2) is searched at every size.
DEFAULT_SEARCH_SPACE: Dict[str, Any] = {
    "num_layers": {"int": [2, 4]},
    "units": {"choice": [256, 512]},
    "l2": {"float": [1e-6, 1e-2], "sampling": "log"},
    "learning_rate": {"float": [3e-4, 3e-3], "sampling": "log"},
    "dropout": {"float": [0.0, 0.4], "step": 0.1},
    "activation": {"choice": ["relu", "gelu", "swish", "tanh"]},
    "batch_size": {"choice": [128, 256, 512]},
    "constant_epochs": {"int": [2, 10], "step": 2},
    "cross_rank": {"choice": [0, 16, 64]},
}
# Capacity by training rows: (fewer than this many rows, layers [low, high], units, cross
# ranks, batch sizes). Each step is ten times the rows; beyond the last, DEFAULT_SEARCH_SPACE.
CAPACITY: Tuple[Tuple[int, Tuple[int, int], Tuple[int, ...], Tuple[int, ...],
                      Tuple[int, ...]], ...] = (
    (1_000, (0, 1), (16, 32, 64), (0, 8), (32, 64, 128)),
    (10_000, (0, 2), (32, 64, 128), (0, 16), (64, 128, 256)),
    (100_000, (1, 3), (64, 128, 256), (0, 16, 64), (128, 256, 512)),
)


def search_space_for(train_rows: int) -> Dict[str, Any]:
    """The default search space sized to `train_rows` (CAPACITY): from a linear model or one
    layer of 16-64 units on a few hundred rows up to DEFAULT_SEARCH_SPACE."""
    for below, depth, units, ranks, batches in CAPACITY:
        if train_rows < below:
            return {**DEFAULT_SEARCH_SPACE, "num_layers": {"int": list(depth)},
                    "units": {"choice": list(units)}, "cross_rank": {"choice": list(ranks)},
                    "batch_size": {"choice": list(batches)}}
    return dict(DEFAULT_SEARCH_SPACE)


def check_search_space(space: Dict[str, Any]) -> None:
    """Raises ValueError (naming the entry) unless `space` is a usable search space."""
    fields = set(ModelConfig.__dataclass_fields__)
    tunable = 0
    for name, spec in space.items():
        if name not in fields:
            raise ValueError(f"search space: '{name}' is not a hyperparameter; use one of "
                             f"{', '.join(sorted(fields))}")
        if not isinstance(spec, dict):
            continue  # fixed value
        kinds = [k for k in ("int", "float", "choice") if k in spec]
        if len(kinds) != 1:
            raise ValueError(f"search space: '{name}' needs exactly one of int, float, choice")
        values = spec[kinds[0]]
        if kinds[0] == "choice":
            if not isinstance(values, list) or not values:
                raise ValueError(f"search space: '{name}' has an empty choice list")
            tunable += len(values) > 1
        else:
            if not isinstance(values, list) or len(values) != 2 or values[0] > values[1]:
                raise ValueError(f"search space: '{name}' needs [low, high] with low <= high, "
                                 f"got {values}")
            tunable += values[0] < values[1]
    if not tunable:
        raise ValueError("search space is empty: no hyperparameter has more than one value")
