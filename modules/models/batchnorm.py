"""Batch normalization statistics that match the data, however short the training.

Batch normalization trains on each batch's own statistics and serves with moving averages
(`moving_mean`, `moving_variance`) that move `1 - momentum` of the way towards each batch's
statistics per step. With Keras's momentum of 0.99 they need a few hundred steps to forget
their initial values (0 and 1); a small CSV gives a few dozen. The served model then
normalizes with the wrong statistics: its ranking survives (ROC AUC 0.999) while its
probabilities and accuracy do not (0.70 where the same weights score 0.98 on batch
statistics). Two remedies, both applied by `modules.learning.training.train_model`:

- `set_momentum`: a momentum that fits the steps per epoch, so the moving averages, which
  the validation metrics of early stopping use, follow the weights within an epoch;
- `recalibrate`: after training, the moving statistics are replaced by the exact mean and
  variance of each normalized activation over the training split, computed layer by layer
  with the layers below already in inference mode: the statistics the served model sees.
"""
import functools
from typing import List, Tuple

import numpy as np
import tensorflow as tf

from modules.models.layers import DenseBlock
from modules.models.model import Towers

MAX_MOMENTUM = 0.99  # Keras's default, for long trainings


def momentum_for(steps_per_epoch: int) -> float:
    """Moving averages with a horizon of about one epoch (1 / (1 - momentum) steps)."""
    return float(min(MAX_MOMENTUM, max(0.0, 1.0 - 1.0 / max(1, steps_per_epoch))))


def _unwrap(layer):
    """The layer itself, or the one a Model Optimization Toolkit wrapper holds."""
    return getattr(layer, "layer", layer)


def normalized_blocks(model: tf.keras.Model) -> List[Tuple[int, DenseBlock]]:
    """(position in model.layers, block) of every DenseBlock that batch-normalizes."""
    return [(i, _unwrap(layer)) for i, layer in enumerate(model.layers)
            if isinstance(_unwrap(layer), DenseBlock) and _unwrap(layer).norm is not None]


def set_momentum(model: tf.keras.Model, momentum: float) -> None:
    """Sets the momentum of every batch normalization in `model` (before it is traced)."""
    for module in model.submodules:
        if isinstance(module, tf.keras.layers.BatchNormalization):
            module.momentum = momentum


def _moments(targets, state, x):
    """`state` plus the sum and sum of squares of each (layers below, block)'s
    pre-normalization activations over the batch `x`, and its row count."""
    sums, count = state
    added = []
    for (below, block), (total, squares) in zip(targets, sums):
        y = x
        for layer in below:
            y = layer(y, training=False)
        z = tf.cast(block.pre_norm(y), tf.float64)
        added.append((total + tf.reduce_sum(z, 0), squares + tf.reduce_sum(tf.square(z), 0)))
    return tuple(added), count + tf.cast(tf.shape(x)[0], tf.int64)


def recalibrate(model: tf.keras.Model, features: tf.data.Dataset) -> int:
    """Sets each batch normalization's moving mean and variance to the population statistics
    of its input over `features` (batches of the model's input, e.g. the training split).

    Blocks are done bottom-up, one pass (a `Dataset.reduce`) per depth: block k's input comes
    from the layers below it in inference mode, with their statistics already recalibrated.
    The towers of a `Towers` share the passes. Returns how many batch normalizations were set.
    """
    models = list(model.towers.values()) if isinstance(model, Towers) else [model]
    blocks = [(m.layers, normalized_blocks(m)) for m in models]
    for depth in range(max(len(b) for _, b in blocks)):
        targets = [(layers[:b[depth][0]], b[depth][1]) for layers, b in blocks if len(b) > depth]
        # Tuples: tf.data would read a list as one tensor.
        initial = (tuple((tf.zeros(block.units, tf.float64), tf.zeros(block.units, tf.float64))
                         for _, block in targets), tf.constant(0, tf.int64))
        # Not converted by AutoGraph: plain Python over the layers.
        sums, count = features.reduce(initial, tf.autograph.experimental.do_not_convert(
            functools.partial(_moments, targets)))
        count = int(count)
        if not count:
            return 0
        for (_, block), (total, squares) in zip(targets, sums):
            mean = total.numpy() / count
            variance = np.maximum(squares.numpy() / count - mean ** 2, 0.0)
            block.norm.moving_mean.assign(mean.astype(np.float32))
            block.norm.moving_variance.assign(variance.astype(np.float32))
    return sum(len(b) for _, b in blocks)
