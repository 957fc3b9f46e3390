"""Batch normalization statistics that match the data, however short the training.

Batch normalization trains on each batch's own statistics and serves with moving averages
(`moving_mean`, `moving_variance`) that move `1 - momentum` of the way towards each batch's
statistics per step. With Keras's momentum of 0.99 they need a few hundred steps to forget
their initial values (0 and 1); a small CSV gives a few dozen. The served model then
normalizes with the wrong statistics: its ranking survives (ROC AUC 0.999) while its
probabilities and accuracy do not (0.70 where the same weights score 0.98 on batch
statistics). Two remedies, both applied by `modules.training.train_model`:

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

from modules.layers import DenseBlock

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


def _moments(below, block: DenseBlock, x: tf.Tensor):
    """Sum, sum of squares and count of `block`'s pre-normalization activations."""
    for layer in below:
        x = layer(x, training=False)
    z = tf.cast(block.pre_norm(x), tf.float64)
    return tf.reduce_sum(z, 0), tf.reduce_sum(tf.square(z), 0), tf.shape(z)[0]


def recalibrate(model: tf.keras.Model, features: tf.data.Dataset) -> int:
    """Sets each batch normalization's moving mean and variance to the population statistics
    of its input over `features` (batches of the model's input, e.g. the training split).

    Blocks are done bottom-up, one pass each: block k's input comes from the layers below it
    in inference mode, with their statistics already recalibrated. Returns how many batch
    normalizations were set.
    """
    layers = model.layers
    blocks = normalized_blocks(model)
    for position, block in blocks:
        # One tf.function per block, without AutoGraph (plain Python over the layers).
        moments = tf.function(functools.partial(_moments, layers[:position], block),
                              input_signature=[features.element_spec], autograph=False)
        total = total_squares = None
        count = 0
        for x in features:
            batch_sum, batch_squares, rows = moments(x)
            total = batch_sum if total is None else total + batch_sum
            total_squares = batch_squares if total_squares is None else total_squares + batch_squares
            count += int(rows)
        if not count:
            return 0
        mean = total.numpy() / count
        variance = np.maximum(total_squares.numpy() / count - mean ** 2, 0.0)
        block.norm.moving_mean.assign(mean.astype(np.float32))
        block.norm.moving_variance.assign(variance.astype(np.float32))
    return len(blocks)
