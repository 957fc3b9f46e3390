"""The deployed model on a device's raw rows, without TensorFlow: the reference consumer.

    python -m modules.edge predict --model DIR --csv FILE [--output FILE]

DIR is a pushed version (or a Quantizer mode folder): `model.tflite`, `contract.json` and,
when the model has text features, `vocabulary.json`. FILE is a CSV with a header naming the
model's raw columns (others are ignored), written as the training CSV was: an empty cell or
a missing-value marker (`NA`, `NULL`, ...) is missing, numbers use `--decimal`'s mark. It
prints one line per row: the class probabilities in the order of the contract's classes.

What a row becomes (`RawInputs.tensors`, the same code the Evaluator scores the model with):
- `numbers`, float32 [rows, N]: each numeric or integer-coded column's value (minus its
  offset in the contract, for 11-digit codes that float32 cannot hold), NaN if missing;
- `ids`, int32 [rows, T]: each text column's id in the vocabulary (1 + its position in
  `vocabulary.json`'s list for that column; 0 for a value not in it).
The model maps both to its preprocessed vector itself and returns float32 probabilities.

Imports numpy, the csv module and a TFLite interpreter only: LiteRT's `ai_edge_litert`, else
`tflite_runtime` (or any class with the TFLite Interpreter API, e.g. TensorFlow's).
"""
import argparse
import csv
import dataclasses
import json
import os
import sys
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np

from modules.reading import csvfile

NUMBERS, IDS, PROBABILITIES = "numbers", "ids", "probabilities"  # the model's tensors
MODEL_FILE, CONTRACT_FILE, VOCABULARY_FILE = "model.tflite", "contract.json", "vocabulary.json"


def default_interpreter():
    """LiteRT's interpreter class, else tflite-runtime's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
    return Interpreter


@dataclasses.dataclass
class RawInputs:
    """The raw-in model's inputs: the columns of `numbers` and of `ids`, in tensor order,
    each text column's vocabulary, and the classes of the output. `offsets`: numbers columns
    whose values need more digits than float32's 7 (11-digit codes) enter the model as
    value - offset, subtracted in float64 before the cast (absent: 0)."""
    numbers: List[str]
    ids: List[str]
    vocabularies: Dict[str, List[str]]
    classes: List[str]
    offsets: Dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def columns(self) -> List[str]:
        return self.numbers + self.ids

    def tensors(self, columns: Mapping[str, Sequence], decimal: str = ".",
                na_values: Sequence[str] = csvfile.PANDAS_NA_VALUES) -> List[np.ndarray]:
        """[numbers] or [numbers, ids] for rows given column by column: numbers as numbers
        (NaN if missing) or as CSV text; text as str or UTF-8 bytes ("" if missing)."""
        numbers = np.stack([numbers_of(columns[name], name, decimal, na_values)
                            - self.offsets.get(name, 0.0) for name in self.numbers],
                           axis=1).astype(np.float32)
        if not self.ids:
            return [numbers]
        ids = np.empty((len(numbers), len(self.ids)), np.int32)
        for j, name in enumerate(self.ids):
            index = {value: i + 1 for i, value in enumerate(self.vocabularies[name])}
            ids[:, j] = [index.get(category(v, na_values), 0) for v in columns[name]]
        return [numbers, ids]

    def contract(self) -> Dict[str, object]:
        """The inputs' part of contract.json."""
        return {"inputs": [
            {"name": NUMBERS, "dtype": "float32", "columns": self.numbers,
             "offsets": self.offsets,
             "description": "one column per numeric or integer-coded feature: its value minus "
                            "its offset in 'offsets' (0 if absent), subtracted before the "
                            "cast to float32; NaN if missing"},
            *([{"name": IDS, "dtype": "int32", "columns": self.ids,
                "vocabulary_file": VOCABULARY_FILE,
                "description": "one column per text feature: 1 + the value's position in its "
                               "vocabulary list; 0 if the value is not in it"}]
              if self.ids else [])],
            "output": {"name": PROBABILITIES, "dtype": "float32", "classes": self.classes,
                       "description": "class probabilities in the order of 'classes'"}}

    @classmethod
    def from_contract(cls, contract: Mapping, vocabularies: Mapping[str, List[str]]
                      ) -> "RawInputs":
        by_name = {spec["name"]: spec for spec in contract["inputs"]}
        ids = by_name[IDS]["columns"] if IDS in by_name else []
        return cls(list(by_name[NUMBERS]["columns"]), list(ids),
                   {name: list(vocabularies[name]) for name in ids},
                   list(contract["output"]["classes"]),
                   {name: float(v) for name, v in by_name[NUMBERS].get("offsets", {}).items()})


def numbers_of(values: Sequence, column: str, decimal: str = ".",
               na_values: Sequence[str] = csvfile.PANDAS_NA_VALUES) -> np.ndarray:
    """A numeric column's values as float64 (NaN if missing), from numbers or CSV text."""
    values = np.asarray(values)
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    out = np.empty(len(values), np.float64)
    for i, value in enumerate(values):
        value = _text(value)
        if csvfile.is_missing(value, na_values):
            out[i] = np.nan
            continue
        try:
            out[i] = csvfile.to_float(value, decimal)
        except ValueError:
            raise ValueError(f"column {column}: '{value}' is not a number; the model reads "
                             f"this column as numbers (check --decimal)") from None
    return out


def category(value, na_values: Sequence[str] = csvfile.PANDAS_NA_VALUES) -> str:
    """A text column's value as the model's vocabulary holds it ("" if missing)."""
    value = _text(value)
    return "" if csvfile.is_missing(value, na_values) else value


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class RawModel:
    """A raw-in TFLite model with its inputs: columns of raw values -> probabilities."""

    def __init__(self, content: bytes, inputs: RawInputs, interpreter=None,
                 num_threads: int = 1):
        interpreter = interpreter or default_interpreter()
        self.inputs = inputs
        self.interpreter = interpreter(model_content=content, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        # The flatbuffer keeps no tensor names (they cost bytes on a device): `numbers` is
        # its float32 input, `ids` its int32 one.
        by_type = {np.dtype(d["dtype"]): d for d in self.interpreter.get_input_details()}
        self._inputs = [by_type[np.dtype(np.float32)]]
        if inputs.ids:
            self._inputs.append(by_type[np.dtype(np.int32)])
        self._output = self.interpreter.get_output_details()[0]
        self._batch = None

    @classmethod
    def from_folder(cls, folder: str, interpreter=None, opener=open,
                    exists=os.path.exists) -> "RawModel":
        """The model of a pushed version (or a Quantizer mode folder); `opener` and `exists`
        read other file systems (tf.io.gfile's for gs://)."""
        def read(name: str, mode: str = "r"):
            with opener(os.path.join(folder, name), mode) as f:
                return f.read()

        vocabularies = (json.loads(read(VOCABULARY_FILE))
                        if exists(os.path.join(folder, VOCABULARY_FILE)) else {})
        inputs = RawInputs.from_contract(json.loads(read(CONTRACT_FILE)), vocabularies)
        return cls(read(MODEL_FILE, "rb"), inputs, interpreter)

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            for detail in self._inputs:
                self.interpreter.resize_tensor_input(detail["index"],
                                                     [batch, int(detail["shape"][1])])
            self.interpreter.allocate_tensors()
            self._batch = batch

    def invoke(self, tensors: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities of rows already made tensors (`RawInputs.tensors`)."""
        self._resize(len(tensors[0]))
        for detail, tensor in zip(self._inputs, tensors):
            self.interpreter.set_tensor(detail["index"], tensor)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output["index"])

    def probabilities(self, columns: Mapping[str, Sequence], batch_size: int = 1024,
                      **options) -> np.ndarray:
        tensors = self.inputs.tensors(columns, **options)
        out = [self.invoke([t[i:i + batch_size] for t in tensors]).copy()
               for i in range(0, len(tensors[0]), batch_size)]
        return (np.concatenate(out) if out
                else np.zeros((0, len(self.inputs.classes)), np.float32))


def read_csv(path: str, columns: Sequence[str], delimiter: str = ","
             ) -> Iterator[Dict[str, List[str]]]:
    """The CSV's rows in blocks of at most 1,024, as {column: [text values]}, for the
    `columns` the model reads (a one-line error when the header lacks one)."""
    with csvfile.open_binary(path) as binary:
        rows = csvfile.read_rows(binary, path, delimiter)
        header = next(rows, (0, []))[1]
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(missing)} in the header; the model "
                             f"reads {', '.join(columns)}")
        where = [header.index(c) for c in columns]
        block: List[List[str]] = []
        for line, fields in rows:
            if len(fields) != len(header):
                raise ValueError(f"{path}, line {line}: {len(fields)} fields where the header "
                                 f"has {len(header)}")
            block.append([fields[i] for i in where])
            if len(block) == 1024:
                yield dict(zip(columns, map(list, zip(*block))))
                block = []
        if block:
            yield dict(zip(columns, map(list, zip(*block))))


def predict(model: RawModel, path: str, out, delimiter: str = ",", decimal: str = ".") -> int:
    """Writes `path`'s rows' probabilities to `out` as CSV (a header of the classes)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(model.inputs.classes)
    rows = 0
    for block in read_csv(path, model.inputs.columns, delimiter):
        for p in model.probabilities(block, decimal=decimal):
            writer.writerow([repr(float(v)) for v in p])
            rows += 1
    return rows


def micro_arena(content: bytes, tensors: Sequence[np.ndarray], max_arena: int = 1 << 22
                ) -> Optional[Dict[str, object]]:
    """The smallest tensor arena (to 16 bytes) the `tflite-micro` Python interpreter runs the
    model in on the first row of `tensors`, and its probabilities of every row there; None
    when it does not run it. Each try runs in a forked child: an arena a little too small can
    crash the interpreter instead of failing (seen in about one bisection in ten), and its C++
    messages are muted. Call it from a process without threads (`python -m modules.edge
    micro`)."""
    def run(arena: int, rows: int = 1) -> Optional[np.ndarray]:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                os.close(read)
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                from tflite_micro.python.tflite_micro import runtime

                interpreter = runtime.Interpreter.from_bytes(content, arena_size=arena)
                for row in range(rows):
                    for index, tensor in enumerate(tensors):
                        interpreter.set_input(tensor[row:row + 1], index)
                    interpreter.invoke()
                    os.write(write, np.asarray(interpreter.get_output(0), np.float32).tobytes())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            output = pipe.read()
        _, status = os.waitpid(pid, 0)
        return (np.frombuffer(output, np.float32).reshape(rows, -1) if status == 0 and output
                else None)

    if run(max_arena) is None:
        return None
    low, high = 0, max_arena  # runs with `high` bytes, not with `low`
    while high - low > 16:
        middle = (low + high) // 2
        low, high = (low, middle) if run(middle) is not None else (middle, high)
    return {"arena_bytes": high, "probabilities": run(high, len(tensors[0])).tolist()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modules.edge", description=__doc__.split(
        "\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("predict", help="class probabilities of a CSV's rows")
    run.add_argument("--model", required=True,
                     help="folder with model.tflite, contract.json (and vocabulary.json)")
    run.add_argument("--csv", required=True, help="CSV file with a header")
    run.add_argument("--output", help="write the probabilities here (default: stdout)")
    run.add_argument("--delimiter", default=",")
    run.add_argument("--decimal", default=".", choices=[".", ","])
    micro = commands.add_parser("micro", help="the smallest TFLite Micro arena a model runs in, "
                                              "and its probabilities of every row (JSON)")
    micro.add_argument("model", help="a .tflite file")
    micro.add_argument("tensors", help="a .npz file of the input tensors, in input order")
    args = parser.parse_args(argv)
    if args.command == "micro":
        with open(args.model, "rb") as f, np.load(args.tensors) as tensors:
            content, inputs = f.read(), [tensors[k] for k in sorted(tensors.files)]
        print(json.dumps(micro_arena(content, inputs)))
        return 0
    try:
        model = RawModel.from_folder(args.model)
        if args.output:
            with open(args.output, "w", newline="") as out:
                predict(model, args.csv, out, args.delimiter, args.decimal)
        else:
            predict(model, args.csv, sys.stdout, args.delimiter, args.decimal)
    except (OSError, ValueError, KeyError, csvfile.CsvFormatError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
