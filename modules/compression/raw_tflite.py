"""The deployable TFLite model: raw features in, class probabilities out.

A device feeds the model what a CSV row holds (`modules.edge.RawInputs` names the tensors):
- `numbers`: float32 [batch, N], one column per numeric feature and per integer-coded
  categorical feature, NaN where a value is missing;
- `ids`: int32 [batch, T], one column per text feature, the value's id in the vocabulary
  file pushed beside the model (1 + its position; 0 for a value the vocabulary lacks).
It returns float32 [batch, classes] probabilities.

Inside, the preprocessing that `modules.reading.preprocessing.FeaturePreprocessor` learned runs
in float32, written with ops TFLite Micro has (`TFLITE_MICRO_OPS`): a missing value is
`x != x` and SELECT_V2, z-scores and piecewise-linear bins are SUB, MUL, MINIMUM and MAXIMUM,
an integer code becomes its category with FLOOR/CEIL and comparisons, and a one-hot slot k of
a category id c is 1 - min(|c - k|, 1) (TFLite Micro has no ONE_HOT).

In the integer modes the model is three conversions joined into one flatbuffer (`chain`):
the preprocessing in float32, the network quantized (one QUANTIZE where the preprocessed
vector is complete, int8 weights, one DEQUANTIZE of the logits), and the softmax in float32
(int8 probabilities would move in steps of 1/256). Quantizing the preprocessing too would put
raw units of very different sizes on one int8 scale (ROC AUC 0.955 -> 0.704 on taxi in a
first trial). The network's activations are int16 (TFLite's 16x8 mode; TFLite Micro has its
kernels): with int8 activations, the rows a device may send beyond the training range
(missing everywhere, far above or below it) need wide int8 ranges that cost the ordinary
rows their resolution, and the kit's rows missed `serving_raw` by up to 0.031 on the
generality benchmark's sets; with int16, by at most 0.0052, for 8-168 more bytes. And with
int8 activations TFLite Micro's kernels round otherwise than TensorFlow's interpreter, which
the Evaluator scores with: up to 0.017 apart on the benchmark's test rows; with int16, 8e-6.
The quantization-aware modes keep int8 activations: training fixed their int8 ranges.
"""
import json
import os
import subprocess
import sys
import tempfile
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from modules import edge
from modules.models.model import to_float32
from modules.reading.preprocessing import FeaturePreprocessor
from modules.verdict import candidates


# TFLite Micro's builtin operators (tensorflow/tflite-micro, MicroMutableOpResolver's Add*
# methods at 90b983c, 2026-08-20), in TFLite's BuiltinOperator names.
TFLITE_MICRO_OPS = frozenset("""
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND
BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTH_TO_SPACE
DEPTHWISE_CONV_2D DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS
FILL FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH
IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR
LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MIRROR_PAD MEAN MINIMUM MUL NEG NOT_EQUAL PACK PAD PADV2
PRELU QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX REDUCE_MIN RELU RELU6 RESHAPE RESIZE_BILINEAR
RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2 SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND
SPACE_TO_DEPTH SPLIT SPLIT_V SQUEEZE SQRT SQUARE SQUARED_DIFFERENCE STRIDED_SLICE SUB SUM SVDF
TANH TRANSPOSE_CONV TRANSPOSE UNPACK UNIDIRECTIONAL_SEQUENCE_LSTM VAR_HANDLE WHILE ZEROS_LIKE
""".split())
# The network's quantization in the raw-in model: int8 weights, int16 activations
NETWORK_OPS = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8


def raw_inputs(preprocessor: FeaturePreprocessor, classes: Sequence[str]) -> edge.RawInputs:
    """What the raw-in model takes, from the fitted preprocessing."""
    coded = [s for s in preprocessor.categorical if s["source"] == "numeric"]
    # float32 holds integers exactly up to 2**24: columns beyond enter centred (edge.RawInputs)
    offsets = {s["name"]: float(np.round(np.median(s["edges"]))) for s in preprocessor.numeric
               if np.max(np.abs(s["edges"])) >= 2 ** 24}
    offsets.update({s["name"]: float(s["vocabulary"][0]) for s in coded
                    if abs(float(s["vocabulary"][-1])) >= 2 ** 24})
    return edge.RawInputs(
        numbers=[s["name"] for s in preprocessor.numeric] + [s["name"] for s in coded],
        ids=[s["name"] for s in preprocessor.categorical if s["source"] == "text"],
        vocabularies={s["name"]: list(s["vocabulary"] or [""])
                      for s in preprocessor.categorical if s["source"] == "text"},
        classes=list(classes), offsets=offsets)


def _float32(values) -> np.ndarray:
    return np.asarray(values, np.float64).astype(np.float32)


def preprocess(preprocessor: FeaturePreprocessor, numbers: tf.Tensor,
               ids: Optional[tf.Tensor], offsets: Optional[Dict[str, float]] = None
               ) -> tf.Tensor:
    """`FeaturePreprocessor.expand(encode(raw))` in float32 from the raw tensors, with
    TFLite Micro's ops (see the module's docstring); the same layout, slot for slot. Each op
    and constant costs bytes in the flatbuffer, so the ops are shared across features."""
    numeric, categorical, blocks = preprocessor.numeric, preprocessor.categorical, []
    n = len(numeric)
    offsets = offsets or {}  # subtracted from the inputs: from the constants too, in float64
    shift = np.array([offsets.get(s["name"], 0.0) for s in numeric], np.float64)
    # Every op reading `numbers` works on the whole tensor and the columns are then taken
    # with GATHER: a STRIDED_SLICE of the input would be quantized with it (NaN included).
    missing = tf.not_equal(numbers, numbers)  # NaN
    values = tf.where(missing, 0.0, numbers)
    # A missing value far below any edge or code: its bins clip to 0, its code is unseen.
    below = tf.where(missing, np.float32(-1e30), values)
    if n:
        x = tf.gather(values, list(range(n)), axis=1)
        kept = tf.gather(tf.where(missing, 0.0, 1.0), list(range(n)), axis=1)
        mean = _float32(np.array([s["mean"] for s in numeric]) - shift)
        inverse_std = _float32([1.0 / s["std"] for s in numeric])
        z = tf.minimum(tf.maximum((x - mean) * inverse_std, -preprocessor.clip),
                       preprocessor.clip)
        blocks += [z * kept, 1.0 - kept]
        lower = [np.asarray(s["edges"][:-1], np.float64) - offset
                 for s, offset in zip(numeric, shift)]
        upper = [np.asarray(s["edges"][1:], np.float64) - offset
                 for s, offset in zip(numeric, shift)]
        # Reciprocals in float64 first: a bin narrower than float32's resolution of its edges
        # becomes a step instead of 0/0.
        # As many bins for every feature: each value broadcast against its own row of edges,
        # [batch, n, bins], then laid out feature by feature (no gather index: 4 bytes a
        # bin, about 2 KB on 30 features); else each bin's column gathered.
        even = len({len(edges) for edges in lower}) == 1
        if even:
            lower, upper = np.stack(lower), np.stack(upper)
            values = tf.expand_dims(tf.gather(below, list(range(n)), axis=1), 2)
        else:
            values = tf.gather(below, [i for i, edges in enumerate(lower) for _ in edges],
                               axis=1)
            lower, upper = np.concatenate(lower), np.concatenate(upper)
        position = (values - lower.astype(np.float32)) * (1.0 / (upper - lower)).astype(np.float32)
        if even:
            position = tf.reshape(position, [-1, lower.size])
        blocks.append(tf.minimum(tf.maximum(position, 0.0), 1.0))
    if categorical:
        coded = [s for s in categorical if s["source"] == "numeric"]
        texts = [s for s in categorical if s["source"] == "text"]
        codes = []  # each categorical feature's slot in its one-hot block, 0: unseen
        if coded:  # an integer value v is slot v - first + 1 of its range
            codes.append(tf.math.floor(tf.gather(below, list(range(n, n + len(coded))), axis=1))
                         - _float32([float(s["vocabulary"][0]) - offsets.get(s["name"], 0.0)
                                     - 1.0 for s in coded]))
        if texts:  # ids from the vocabulary file
            codes.append(tf.cast(ids, tf.float32))
        codes = tf.concat(codes, axis=1) if len(codes) > 1 else codes[0]
        widths = {s["name"]: len(s["vocabulary"] or [""]) + 1 for s in categorical}
        top = _float32([widths[s["name"]] - 1 for s in coded + texts])
        codes = tf.where(tf.logical_and(codes >= 1.0, codes <= top), codes, 0.0)
        # One-hot blocks without a gather: each code moved to its slot in the whole one-hot
        # vector, compared with every slot's number, and summed over the features.
        start = np.cumsum([0] + [widths[s["name"]] for s in categorical])
        offset = {s["name"]: start[j] for j, s in enumerate(categorical)}
        slots = tf.expand_dims(codes + _float32([offset[s["name"]] for s in coded + texts]), 2)
        hot = tf.equal(slots, np.arange(start[-1], dtype=np.float32))
        blocks.append(tf.reduce_sum(tf.cast(hot, tf.float32), axis=1))
    return tf.concat(blocks, axis=1) if len(blocks) > 1 else blocks[0]


def _specs(inputs: edge.RawInputs) -> List[tf.TensorSpec]:
    specs = [tf.TensorSpec([None, len(inputs.numbers)], tf.float32, name=edge.NUMBERS)]
    if inputs.ids:
        specs.append(tf.TensorSpec([None, len(inputs.ids)], tf.int32, name=edge.IDS))
    return specs


def raw_function(core: tf.keras.Model, preprocessor: FeaturePreprocessor,
                 inputs: edge.RawInputs) -> tf.types.experimental.ConcreteFunction:
    """numbers (and ids) -> probabilities, as one concrete function to convert."""
    core = to_float32(core)

    def probabilities(numbers, ids=None):
        logits = core(preprocess(preprocessor, numbers, ids, inputs.offsets), training=False)
        return {edge.PROBABILITIES: tf.nn.softmax(logits)}

    return _concrete(probabilities, _specs(inputs))


def _concrete(function: Callable, specs: Sequence[tf.TensorSpec]
              ) -> tf.types.experimental.ConcreteFunction:
    return tf.function(function, input_signature=specs, autograph=False).get_concrete_function()


def _flatbuffer(function: tf.types.experimental.ConcreteFunction,
                configure: Callable = lambda converter: None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    configure(converter)
    return converter.convert()


def convert(core: tf.keras.Model, preprocessor: FeaturePreprocessor, inputs: edge.RawInputs,
            name: str, representative: Optional[Callable[[], Iterator[List[np.ndarray]]]] = None
            ) -> bytes:
    """The raw-in TFLite flatbuffer in quantization mode `name`. Integer modes calibrate on
    `representative()` (lists of raw input tensors, a row at a time) and quantize the
    network only: its activations in int16 (`NETWORK_OPS`), or in int8 for the
    quantization-aware modes, whose int8 ranges training fixed."""
    mode = candidates.mode(name)
    core = to_float32(core)
    if not mode.integer:
        def optimize(converter):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if mode.weights_float16:
                converter.target_spec.supported_types = [tf.float16]
        return strip_names(_flatbuffer(raw_function(core, preprocessor, inputs), optimize))
    if representative is None:
        raise ValueError(f"{name} quantization needs a representative dataset (raw rows of "
                         f"the training split)")

    def vectors(numbers, ids=None):
        return preprocess(preprocessor, numbers, ids, inputs.offsets)

    rows = [np.concatenate(tensors) for tensors in zip(*representative())]
    calibration = vectors(*[tf.constant(t) for t in rows]).numpy()
    width, classes = calibration.shape[1], len(inputs.classes)

    def integer(converter):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calibration[i:i + 1]]
                                                    for i in range(len(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8
                                               if mode.aware else NETWORK_OPS]

    return strip_names(chain([
        _flatbuffer(_concrete(vectors, _specs(inputs))),
        _flatbuffer(_concrete(lambda x: core(x, training=False),
                              [tf.TensorSpec([None, width], tf.float32)]), integer),
        _flatbuffer(_concrete(tf.nn.softmax, [tf.TensorSpec([None, classes], tf.float32)]))]))


def chain(models: Sequence[bytes]) -> bytes:
    """One TFLite flatbuffer that runs `models` in turn, each one's output the next one's
    input (each has one subgraph; the first may have several inputs, the others one, and
    every one but the last one output). The models' names and signatures are dropped."""
    from tensorflow.lite.tools import flatbuffer_utils

    def key(code):
        return code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version

    joined = flatbuffer_utils.convert_bytearray_to_object(bytearray(models[0]))
    graph = joined.subgraphs[0]
    codes = {key(code): i for i, code in enumerate(joined.operatorCodes)}
    for content in models[1:]:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
        [subgraph] = model.subgraphs
        [entry], [previous] = list(subgraph.inputs), list(graph.outputs)
        tensors, buffers = {entry: previous, -1: -1}, {0: 0}  # buffer 0: no data
        for i, tensor in enumerate(subgraph.tensors):
            if i == entry:
                continue
            if tensor.buffer not in buffers:
                buffers[tensor.buffer] = len(joined.buffers)
                joined.buffers.append(model.buffers[tensor.buffer])
            tensor.buffer = buffers[tensor.buffer]
            tensors[i] = len(graph.tensors)
            graph.tensors.append(tensor)
        for operator in subgraph.operators:
            code = model.operatorCodes[operator.opcodeIndex]
            if key(code) not in codes:
                codes[key(code)] = len(joined.operatorCodes)
                joined.operatorCodes.append(code)
            operator.opcodeIndex = codes[key(code)]
            for field in ("inputs", "outputs", "intermediates"):
                if getattr(operator, field) is not None:
                    setattr(operator, field, [tensors[int(i)] for i in getattr(operator, field)])
            graph.operators.append(operator)
        graph.outputs = [tensors[int(i)] for i in subgraph.outputs]
    joined.signatureDefs = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(joined))


def strip_names(content: bytes) -> bytes:
    """The flatbuffer without tensor names, its description and signature (TFLite's
    `flatbuffer_utils.strip_strings`): about 1.3 KB on taxi that no runtime reads. The
    inputs are then told apart by type (see `modules.edge.RawModel`)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def operators(content: bytes) -> List[str]:
    """The builtin operators a TFLite flatbuffer uses, by name (custom ops as CUSTOM:name)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    found = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        found.add(f"CUSTOM:{code.CustomCode().decode()}" if builtin == schema.BuiltinOperator.CUSTOM
                  else names[builtin])
    return sorted(found)


def micro_check(content: bytes, tensors: Sequence[np.ndarray],
                expected: np.ndarray) -> Dict[str, object]:
    """Whether TFLite Micro can run the model: its operators against TFLite Micro's builtins,
    and, run in the `tflite-micro` Python interpreter, the smallest tensor arena it runs in
    (to 16 bytes; `edge.micro_arena`) and the largest difference of its probabilities of
    every row of `tensors` there from `expected` (the Evaluator's interpreter's)."""
    ops = operators(content)
    result = {"ops": ops, "outside_tflite_micro": [op for op in ops if op not in TFLITE_MICRO_OPS],
              "arena_bytes": None, "runs": False}
    if result["outside_tflite_micro"]:
        return result
    with tempfile.TemporaryDirectory() as folder:
        model, inputs = os.path.join(folder, "model.tflite"), os.path.join(folder, "inputs.npz")
        with open(model, "wb") as f:
            f.write(content)
        np.savez(inputs, **{f"input_{i}": tensor for i, tensor in enumerate(tensors)})
        # A process of its own, without TensorFlow's threads: it forks per try
        run = subprocess.run([sys.executable, "-m", "modules.edge", "micro", model, inputs],
                             capture_output=True, text=True, timeout=600,
                             cwd=os.path.dirname(os.path.dirname(edge.__file__)))
    found = json.loads(run.stdout.strip().splitlines()[-1]) if run.returncode == 0 else None
    if found:
        result.update(arena_bytes=found["arena_bytes"], runs=True, max_abs_difference=float(
            np.max(np.abs(np.asarray(found["probabilities"]) - expected))))
    return result
