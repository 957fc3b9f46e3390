"""Imported by Python at start-up (a `sitecustomize` module on PYTHONPATH) in the pipeline
run the end-to-end tests share, when SPLIT_READS_LOG is set: records which component reads
which split of the examples. `modules.data.split_records` is the one function every step of
ours opens split files with (TFX's Trainer and Tuner hand their run_fn/tuner_fn the files of
the splits they were told); each call appends {"component", "splits"} as a JSON line, the
component being the `components/<name>/executor.py` on the call stack."""
import inspect
import json
import os
import re


def _install(log_path: str) -> None:
    import modules  # noqa: F401  (tf_keras before TensorFlow)
    from modules import data

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


if os.environ.get("SPLIT_READS_LOG"):
    _install(os.environ["SPLIT_READS_LOG"])
