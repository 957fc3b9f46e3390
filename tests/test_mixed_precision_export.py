"""A model trained under mixed precision still converts to TFLite (float32 graph)."""
import modules  # noqa: F401  (must precede tensorflow)

import numpy as np

from modules.compression import quantization
from modules.models.hyperparameters import ModelConfig
from modules.models.model import build_core, to_float32


def test_mixed_float16_model_converts_to_tflite_with_the_same_predictions():
    config = ModelConfig(num_layers=1, units=8, cross_rank=4, precision="mixed_float16")
    model = build_core(12, 2, config, seed=0)
    assert model.layers[0].compute_dtype == "float16"
    x = np.random.default_rng(0).normal(size=(64, 12)).astype(np.float32)
    float32 = to_float32(model)
    assert all(layer.compute_dtype == "float32" for layer in float32.layers)
    np.testing.assert_allclose(float32.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=2e-2)
    tflite = quantization.TFLiteModel(quantization.convert(model, "dynamic"))
    logits = tflite.predict(x)
    expected = float32.predict(x, verbose=0)
    np.testing.assert_allclose(logits, expected, atol=5e-2)
