"""TFLite conversion in five modes, and running the result with the TFLite interpreter.

Every TFLite model takes the preprocessed feature vector (float32 [batch, D], or int8 for
the integer modes) and returns the class logits; softmax turns them into probabilities. An
int8 output of probabilities would move in steps of 1/256 and tie every confident example at
0 or 1, which costs ROC AUC on well-separated data (0.9827 instead of 0.9873 on a breast
cancer CSV); int8 logits keep the order (0.9870). The preprocessing that builds the vector
from raw features (modules.reading.preprocessing) is written next to the model as its input
contract.

The modes and their options are rows of `modules.verdict.candidates.MODES` (dynamic range, float16,
full integer, and full integer after quantization-aware training, optionally keeping the
pruned weights at zero). For quantization-aware training the model is first folded into
plain Dense layers (batch normalization merged into
kernel and bias, dropout dropped): the exact inference-time function, in layers tfmot knows.
"""
import dataclasses
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from modules import fileio
from modules.models.layers import DenseBlock
from modules.models.model import to_float32
from modules.verdict import candidates


def fold_to_dense(core: tf.keras.Model) -> tf.keras.Model:
    """The same inference function as `core`, with each DenseBlock as one Dense layer.

    Batch normalization y = gamma * (z - mean) / sqrt(var + eps) + beta is affine in
    z = x @ W + b, so it folds into W' = W * s and b' = (b - mean) * s + beta with
    s = gamma / sqrt(var + eps). Zero weights stay zero, so sparsity is preserved.
    """
    folded = tf.keras.Sequential(name=f"{core.name}_folded")
    folded.add(tf.keras.Input(shape=core.input_shape[1:], name="features"))
    for layer in core.layers:
        if isinstance(layer, DenseBlock):
            kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
            if layer.norm is not None:
                norm = layer.norm
                scale = norm.gamma.numpy() / np.sqrt(norm.moving_variance.numpy() + norm.epsilon)
                kernel = kernel * scale
                bias = (bias - norm.moving_mean.numpy()) * scale + norm.beta.numpy()
            dense = tf.keras.layers.Dense(layer.units, activation=layer.activation_name,
                                          name=layer.name)
            folded.add(dense)
            dense.set_weights([kernel, bias])
        elif isinstance(layer, tf.keras.layers.Dense):
            dense = tf.keras.layers.Dense(layer.units, activation=layer.activation,
                                          name=layer.name)
            folded.add(dense)
            dense.set_weights(layer.get_weights())
        elif not isinstance(layer, (tf.keras.layers.Dropout, tf.keras.layers.InputLayer)):
            raise ValueError(f"quantization-aware training supports DenseBlock and Dense "
                             f"layers; '{layer.name}' is a {type(layer).__name__}")
    return folded


INT8_STEPS = 127  # TFLite's int8 weights: symmetric, scale max|w| / 127 per tensor


def round_for_int8(kernel: np.ndarray, inputs: np.ndarray, damp: float = 0.01) -> np.ndarray:
    """A dense kernel ([inputs, outputs]) on TFLite's int8 grid, rounded the GPTQ way
    (Frantar et al., "GPTQ: Accurate post-training quantization for generative pre-trained
    transformers", ICLR 2023): input by input, each rounding's error on the layer's outputs
    over `inputs` (calibration rows, [rows, inputs]) is compensated by the weights of the inputs
    not rounded yet, through the inverse of their Hessian X'X (damped by `damp` times its
    mean diagonal). Rounding each weight to its nearest step instead lets the errors add up
    over every active input: on a linear model of taxi rows (81 active inputs of 370, one
    payment type's weights 70x the median) that moved probabilities by up to 0.029 (0.024 at
    the 99th percentile of training rows), against 0.0097 (0.0046) so.
    The input of the largest weight goes first, so that weight lands on the last step and
    max|kernel| with TFLite's scale stays as it was: the converter's own rounding then leaves
    every weight where it is. Zero weights (pruned) stay zero."""
    weights = kernel.astype(np.float64)
    step = np.abs(weights).max() / INT8_STEPS
    if step == 0:
        return kernel
    x = inputs.astype(np.float64)
    hessian = x.T @ x
    dead = np.diag(hessian) == 0  # inputs the calibration rows never use
    hessian[dead, dead] = 1.0
    hessian += damp * np.mean(np.diag(hessian)) * np.eye(len(hessian))
    first = int(np.unravel_index(np.abs(weights).argmax(), weights.shape)[0])
    order = np.r_[first, np.delete(np.arange(len(weights)), first)]
    w = weights[order]
    kept = w != 0
    upper = np.linalg.cholesky(np.linalg.inv(hessian[np.ix_(order, order)])).T
    for i in range(len(w)):
        rounded = np.clip(np.round(w[i] / step), -INT8_STEPS, INT8_STEPS) * step * kept[i]
        error = (w[i] - rounded) / upper[i, i]
        w[i + 1:] -= np.outer(upper[i, i + 1:], error) * kept[i + 1:]
        w[i] = rounded
    result = np.empty_like(w)
    result[order] = w
    return result.astype(kernel.dtype)


def rounded_for_int8(core: tf.keras.Model, calibration: np.ndarray) -> tf.keras.Model:
    """`core`'s inference function as plain Dense layers (`fold_to_dense`), each kernel
    rounded for int8 by `round_for_int8` on its inputs over the `calibration` feature vectors
    (through the layers rounded before it). A core with other layers (a feature cross) is
    returned as it is, for the converter to round."""
    if not all(isinstance(layer, (DenseBlock, tf.keras.layers.Dense, tf.keras.layers.Dropout))
               for layer in core.layers):
        return core
    folded = fold_to_dense(to_float32(core))
    x = calibration.astype(np.float32)
    for layer in folded.layers:
        kernel, bias = layer.get_weights()
        layer.set_weights([round_for_int8(kernel, x), bias])
        x = layer(x).numpy()
    return folded


def keeps_rounding(nearest: Tuple[float, float], rounded: Tuple[float, float],
                   kit_tolerance: float) -> bool:
    """Whether a converted model whose weights were rounded for int8 beforehand
    (`rounded_for_int8`) is kept over the converter's nearest rounding, from each one's
    largest probability difference from the float model (over the calibration rows, over
    the conformance kit's rows): it must be closer over the calibration rows, and keep the
    kit within `kit_tolerance` or no further than nearest rounding does."""
    return rounded[0] < nearest[0] and (rounded[1] <= kit_tolerance or rounded[1] <= nearest[1])


def quantize_aware(core: tf.keras.Model, preserve_sparsity: bool) -> tf.keras.Model:
    """A QAT model (fake-quantized weights and activations) to fine-tune with the loop."""
    folded = fold_to_dense(to_float32(core))
    if not preserve_sparsity:
        return tfmot.quantization.keras.quantize_model(folded)
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (  # noqa: E501
        default_8bit_prune_preserve_quantize_scheme as prune_preserve)

    annotated = tfmot.quantization.keras.quantize_annotate_model(folded)
    return tfmot.quantization.keras.quantize_apply(
        annotated, prune_preserve.Default8BitPrunePreserveQuantizeScheme())


def convert(model: tf.keras.Model, name: str,
            representative: Optional[np.ndarray] = None) -> bytes:
    """TFLite flatbuffer of `model` (features -> logits) in mode `name`, computing in
    float32; integer modes calibrate on `representative` rows."""
    mode = candidates.mode(name)
    converter = tf.lite.TFLiteConverter.from_keras_model(to_float32(model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode.weights_float16:
        converter.target_spec.supported_types = [tf.float16]
    if mode.integer:
        if representative is None or len(representative) == 0:
            raise ValueError(f"{name} quantization needs a non-empty representative dataset "
                             f"(rows of the training split)")
        # QAT models carry their own ranges; the converter still asks for samples.
        converter.representative_dataset = representative_dataset([representative])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def representative_dataset(tensors: Sequence[np.ndarray]) -> Callable:
    """A converter's representative dataset: one row of every input tensor at a time."""
    def generate():
        for i in range(len(tensors[0])):
            yield [t[i:i + 1].astype(np.float32) if t.dtype.kind == "f" else t[i:i + 1]
                   for t in tensors]
    return generate


def representative_sample(train, size: int = 500, seed: int = 0) -> np.ndarray:
    """At most `size` random rows of the prepared training split (`modules.reading.splits.Split`),
    drawn through its bounded shuffle: they calibrate int8 activation ranges."""
    if len(train) == 0:
        raise ValueError("int8 quantization needs a non-empty representative dataset")
    sample = train.sample(size, seed=seed)
    return np.concatenate([x for x, _ in sample.blocks()])


@dataclasses.dataclass
class TensorContract:
    name: str
    shape: List[int]
    dtype: str
    scale: float  # 0.0 when not quantized
    zero_point: int


class TFLiteModel:
    """A .tflite model run by the TFLite interpreter on float feature vectors.

    `predict` quantizes inputs and dequantizes outputs when the model's are integers, so every
    model is called the same way: float32 [batch, D] -> logits [batch, classes];
    `probabilities` applies the softmax.
    """

    def __init__(self, model_content: bytes, num_threads: int = 1):
        self.interpreter = tf.lite.Interpreter(model_content=model_content,
                                               num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch = None

    @classmethod
    def from_file(cls, path: str, num_threads: int = 1) -> "TFLiteModel":
        return cls(fileio.read_bytes(path), num_threads)

    def contract(self) -> Dict[str, TensorContract]:
        def describe(detail):
            scale, zero_point = detail["quantization"]
            return TensorContract(detail["name"], [int(d) for d in detail["shape"]],
                                  np.dtype(detail["dtype"]).name, float(scale), int(zero_point))
        return {"input": describe(self._input), "output": describe(self._output)}

    def _resize(self, batch: int):
        if batch != self._batch:
            self.interpreter.resize_tensor_input(self._input["index"], [batch, self._input["shape"][1]])
            self.interpreter.allocate_tensors()
            self._input = self.interpreter.get_input_details()[0]
            self._output = self.interpreter.get_output_details()[0]
            self._batch = batch

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        dtype = self._input["dtype"]
        if not np.issubdtype(dtype, np.integer):
            return x.astype(dtype)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)

    def invoke(self, prepared_input: np.ndarray) -> np.ndarray:
        """Runs the interpreter on an already quantized input; returns the raw output."""
        self.interpreter.set_tensor(self._input["index"], prepared_input)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output["index"])

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        outputs = []
        for start in range(0, len(x), batch_size):
            chunk = x[start:start + batch_size]
            self._resize(len(chunk))
            raw = self.invoke(self.quantize_input(chunk))
            if np.issubdtype(self._output["dtype"], np.integer):
                scale, zero_point = self._output["quantization"]
                raw = (raw.astype(np.float32) - zero_point) * scale
            outputs.append(raw.astype(np.float32))
        return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.predict(x))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
