"""Imported by Python at start-up (a `sitecustomize` module on PYTHONPATH) in the pipeline
run the end-to-end tests share, when SPLIT_READS_LOG is set: records which component reads
which split of the examples. `modules.reading.data.split_records` is the one function every step of
ours opens split files with (TFX's Trainer and Tuner hand their run_fn/tuner_fn the files of
the splits they were told); each call appends {"component", "splits"} as a JSON line, the
component being the `components/<name>/executor.py` on the call stack."""
import importlib.abc
import importlib.util
import inspect
import json
import os
import re
import sys


def _patch(data, log_path: str) -> None:
    read = data.split_records

    def split_records(patterns):
        component = None
        for frame in inspect.stack(0):
            match = re.search(r"components/(\w+)/executor\.py$", frame.filename)
            if match:
                component = match.group(1)
                break
        splits = sorted({m.group(1) for p in patterns for m in [re.search(r"Split-(\w+)", p)]
                         if m})
        with open(log_path, "a") as log:
            log.write(json.dumps({"component": component, "splits": splits}) + "\n")
        return read(patterns)

    data.split_records = split_records


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches `modules.reading.data` when the run first imports it, not at start-up: importing
    it here would load TensorFlow before the run sends its C++ logs to the log file."""

    def __init__(self, log_path: str):
        self.log_path = log_path

    def find_spec(self, name, path=None, target=None):
        if name != "modules.reading.data":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _patch(module, self.log_path)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("SPLIT_READS_LOG"):
    sys.meta_path.insert(0, _PatchOnImport(os.environ["SPLIT_READS_LOG"]))
