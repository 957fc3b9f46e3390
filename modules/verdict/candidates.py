"""Every model the Evaluator measures, and the one owner of the quantized artifact.

The candidates are the SavedModels of the run (`SAVED_MODELS`) and one TFLite model per
quantization mode (`MODES`), in this order in the report. A new quantization mode is one row of
`MODES`: `--quantize` accepts it and its help lists it (modules.settings), the converter reads
its options (modules.compression.quantization), the Quantizer fine-tunes it first when it is
quantization-aware, and the report shows it after the others.

The Quantizer's artifact holds one folder per mode, `<mode>/model.tflite` (raw features in,
see modules.edge) with its contract `<mode>/contract.json`, its vocabulary and conformance kit,
and for integer modes the vector-in model in `<mode>/vector/`; `tflite_path` and
`contract_path` spell them, and a pushed version copies `DEPLOYED_FILES` from the deployed
mode's folder.

No TensorFlow here (nor in modules.edge): the runners check flags with it before anything
heavy is imported.
"""
import dataclasses
import os
from typing import Dict, Tuple

from modules import edge

# SavedModel candidates: the teacher (the better of the network and the trees, also shown
# apart), the linear baseline, the students and the pruned student.
SAVED_MODELS = ("teacher", "network", "trees", "linear", "student_scratch", "student", "pruned")


@dataclasses.dataclass(frozen=True)
class Mode:
    """One TFLite conversion of the pruned student."""
    name: str
    help: str
    integer: bool = False  # int8 weights, integer activations; ranges calibrated
    weights_float16: bool = False  # weights stored as float16
    aware: bool = False  # fine-tuned with quantization-aware training before conversion
    preserve_sparsity: bool = False  # ... keeping the pruned weights at zero


MODES: Tuple[Mode, ...] = (
    Mode("dynamic", "post-training dynamic range: weights int8, activations float"),
    Mode("float16", "weights float16", weights_float16=True),
    Mode("int8", "integer network: int8 weights, int16 activations behind the float "
         "preprocessing (the vector-in model: int8 activations, input and output); activation "
         "ranges calibrated on training rows", integer=True),
    Mode("qat", "quantization-aware training with tfmot, then full integer", integer=True,
         aware=True),
    Mode("pqat", "prune-preserving quantization-aware training, then full integer",
         integer=True, aware=True, preserve_sparsity=True),
)
BY_NAME: Dict[str, Mode] = {mode.name: mode for mode in MODES}
NAMES: Tuple[str, ...] = tuple(BY_NAME)
ORDER: Tuple[str, ...] = SAVED_MODELS + NAMES  # the report's rows

# raw features in, probabilities out (modules.edge), its contract, and its vocabulary (text
# values -> ids; absent without text features)
TFLITE_FILE, CONTRACT_FILE = edge.MODEL_FILE, edge.CONTRACT_FILE
VOCABULARY_FILE = edge.VOCABULARY_FILE
GOLDEN_ROWS_FILE = "golden_rows.csv"  # the conformance kit: raw rows ...
GOLDEN_PROBABILITIES_FILE = "golden_probabilities.csv"  # ... and serving_raw's probabilities
VECTOR_DIR = "vector"  # integer modes: the vector-in model (int8 preprocessed vector in)
# what a pushed version takes from its mode's folder (those that exist)
DEPLOYED_FILES = (TFLITE_FILE, CONTRACT_FILE, VOCABULARY_FILE, GOLDEN_ROWS_FILE,
                  GOLDEN_PROBABILITIES_FILE, VECTOR_DIR)


def mode(name: str) -> Mode:
    if name not in BY_NAME:
        raise ValueError(f"unknown quantization mode {name!r}; one of {', '.join(NAMES)}")
    return BY_NAME[name]


def mode_folder(quantized_uri: str, name: str) -> str:
    return os.path.join(quantized_uri, name)


def tflite_path(quantized_uri: str, name: str) -> str:
    return os.path.join(mode_folder(quantized_uri, name), TFLITE_FILE)


def contract_path(quantized_uri: str, name: str) -> str:
    return os.path.join(mode_folder(quantized_uri, name), CONTRACT_FILE)
