"""Learning rate: constant for a number of epochs, then exponential decay."""
import tensorflow as tf

from modules.reading.preprocessing import PACKAGE


@tf.keras.utils.register_keras_serializable(PACKAGE)
class ConstantThenExponentialDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = initial for step < constant_epochs * steps_per_epoch, then
    initial * decay_rate ** ((step - constant_steps) / steps_per_epoch): the rate shrinks by
    `decay_rate` per epoch, smoothly within an epoch. Keyed on the optimizer step, so a run
    resumed from a checkpoint picks up the same learning rate."""

    def __init__(self, initial_learning_rate: float, steps_per_epoch: int,
                 constant_epochs: int = 10, decay_rate: float = 0.8):
        if initial_learning_rate <= 0:
            raise ValueError(f"learning rate must be > 0, got {initial_learning_rate}")
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.constant_epochs = int(constant_epochs)
        self.decay_rate = float(decay_rate)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        constant_steps = float(self.constant_epochs * self.steps_per_epoch)
        decay_epochs = tf.maximum(step - constant_steps, 0.0) / self.steps_per_epoch
        return self.initial_learning_rate * tf.pow(self.decay_rate, decay_epochs)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "steps_per_epoch": self.steps_per_epoch,
                "constant_epochs": self.constant_epochs, "decay_rate": self.decay_rate}
