"""The code the pipeline's components load, in subpackages along the data's way: `reading`
(CSV files, tf.Examples, preprocessing, prepared splits), `models` (hyperparameters, the core,
layers, Model artifacts, trees), `learning` (the training loop, the tuner's and trainer's run
functions, the baselines), `compression` (distillation, pruning, quantization) and `verdict`
(the candidates, their evaluation and the blessing); `settings` owns every setting, and
`errors`, `fileio` and `memory` serve them all.

Importing this package is the one place that selects Keras 2 (tf_keras) for TensorFlow. The
Model Optimization Toolkit supports nothing else, so every process of the pipeline (runner,
component executors, Beam workers, which inherit the environment) imports it before TensorFlow.
"""
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if "keras.src" in sys.modules and "tf_keras" not in sys.modules and "tensorflow" in sys.modules:
    # Harmless when only keras-tuner pulled Keras 3 in; what matters is what tf.keras resolves to.
    import tensorflow as _tf

    if not _tf.keras.__name__.startswith("tf_keras"):
        raise ImportError("tf.keras was resolved to Keras 3 before `modules` was imported: "
                          "import modules (or set TF_USE_LEGACY_KERAS=1) before TensorFlow.")
