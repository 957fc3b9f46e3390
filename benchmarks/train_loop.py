"""Training throughput: the project's GradientTape loop against tf_keras `model.fit`.

Same model (the Trainer's default core), same data (the default taxi data, preprocessed), same
batch size, in one process. Each repetition trains a fresh model for a few epochs with each
(order alternating) and times the epochs after the first (the first includes tracing).
Prints the medians as its last line: {"loop_examples_per_s", "fit_examples_per_s", "ratio"}.

    python benchmarks/train_loop.py [--repeats 8] [--epochs 5]
"""
import argparse
import time

import tensorflow as tf

from common import median, prepared_default_data, print_result

from modules.learning import loop, training
from modules.models.hyperparameters import ModelConfig
from modules.models.model import build_core


class _EpochTimer(tf.keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.durations = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.durations.append(time.perf_counter() - self.started)


class _PositiveClassAUC(tf.keras.metrics.AUC):
    """The loop's metric for fit: ROC AUC of P(class 1) from two-class logits."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true, tf.nn.softmax(y_pred)[:, 1], sample_weight)


def steady_examples_per_s(timer, examples):
    return examples / median(timer.durations[1:])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args()
    prepared = prepared_default_data()
    config = ModelConfig()
    dim, classes, n = prepared.dim, prepared.num_classes, len(prepared.train)
    steps = -(-n // config.batch_size)
    data = prepared.train.dataset(config.batch_size, shuffle=True, seed=0)
    fit_data = data.map(lambda x, t: (x, t["label"]))
    rates = {"loop": [], "fit": []}
    for repeat in range(args.repeats):
        for kind in (("loop", "fit") if repeat % 2 == 0 else ("fit", "loop")):
            tf.keras.backend.clear_session()
            model = build_core(dim, classes, config, seed=repeat)
            optimizer = training.make_optimizer(config, steps)
            timer = _EpochTimer()
            if kind == "loop":
                model.optimizer = optimizer
                loop.TrainingLoop(model, optimizer, loop.cross_entropy, classes,
                                  steps_per_execution=16).fit(
                    data, epochs=args.epochs, callbacks=[timer], verbose=False)
            else:
                model.compile(optimizer, tf.keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True), metrics=["sparse_categorical_accuracy",
                                                _PositiveClassAUC(num_thresholds=1000)])
                model.fit(fit_data, epochs=args.epochs, callbacks=[timer], verbose=0)
            rates[kind].append(steady_examples_per_s(timer, n))
            print(f"repeat {repeat} {kind}: {rates[kind][-1]:.0f} examples/s", flush=True)
    loop_rate, fit_rate = median(rates["loop"]), median(rates["fit"])
    print_result({"loop_examples_per_s": loop_rate, "fit_examples_per_s": fit_rate,
                  "ratio": loop_rate / fit_rate, "batch_size": config.batch_size,
                  "repeats": args.repeats, "loop_steps_per_execution": 16,
                  "fit_steps_per_execution": 1, "device": "CPU"})


if __name__ == "__main__":
    main()
