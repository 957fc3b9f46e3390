"""Training and tuning: the one training loop and what drives it.

- `loop`: the `tf.GradientTape` loop every step trains with.
- `training`: `train_model` around the loop (prepared splits, strategy, optimizer, budgets).
- `callbacks`, `schedules`, `console`: early stopping, checkpoints and metric logs; the
  learning rate held then decayed; the lines a user reads while it trains.
- `tuner`: the TFX Tuner's `tuner_fn` (Keras Tuner, trials trained by the loop).
- `trainer`: the TFX Trainer's `run_fn` (the teacher network).
- `baselines`: the linear model, and the choice of the teacher.
"""
