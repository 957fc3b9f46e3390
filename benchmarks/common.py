"""Shared by the benchmarks: the default taxi data through the pipeline's own ingestion.

CsvExampleGen, StatisticsGen and SchemaGen run once (cached in ML Metadata under
runs/benchmark-data), then `modules.learning.training.prepare_data` loads the splits exactly as the
Trainer does: same 80/20 split, same preprocessing.
"""
import glob
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import modules  # noqa: E402,F401  (selects tf_keras)
from pipeline import configs  # noqa: E402

DATA_DIR = os.path.join(ROOT, "runs", "benchmark-data")


def ingest():
    """(examples uri, schema path, statistics uri) of the default data, produced by TFX
    components."""
    from tfx import v1 as tfx

    from pipeline.pipeline import create_components

    config = configs.PipelineConfig(
        pipeline_root=os.path.join(DATA_DIR, "root"), data_root=os.path.dirname(
            configs.default_data_path()), data_pattern=os.path.basename(
            configs.default_data_path()), serving_dir=os.path.join(DATA_DIR, "serving"),
        work_dir=os.path.join(DATA_DIR, "work"), pipeline_name="benchmark-data",
        metadata=os.path.join(DATA_DIR, "metadata.sqlite"), verbose=False)
    components = create_components(config)[:3]  # CsvExampleGen, StatisticsGen, SchemaGen
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name, pipeline_root=config.pipeline_root,
        components=components, enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata), beam_pipeline_args=list(config.beam_args)))
    examples = _latest(os.path.join(config.pipeline_root, "CsvExampleGen", "examples", "*"))
    schema = _latest(os.path.join(config.pipeline_root, "SchemaGen", "schema", "*"))
    statistics = _latest(os.path.join(config.pipeline_root, "StatisticsGen", "statistics", "*"))
    return examples, os.path.join(schema, "schema.pbtxt"), statistics


def _latest(pattern):
    return max(glob.glob(pattern), key=lambda p: int(os.path.basename(p)))


def examples_artifact(uri, splits=("train", "validation", "test")):
    """An Examples artifact at `uri`, as an executor's input_dict holds it."""
    from tfx.types import artifact_utils, standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = uri
    examples.split_names = artifact_utils.encode_split_names(list(splits))
    return [examples]


def prepared_default_data():
    from modules.learning import training
    from modules.reading import data

    examples, schema, statistics = ingest()
    artifact = examples_artifact(examples)
    return training.prepare_data(data.split_files(artifact, "train"),
                                 data.split_files(artifact, "validation"), schema, statistics,
                                 configs.DEFAULT_LABEL, configs.DEFAULT_DROP)


def mean(values):
    return float(statistics.fmean(values))


def median(values):
    return float(statistics.median(values))


def print_result(result):
    """The benchmark's last line: one JSON object."""
    print(json.dumps(result, sort_keys=True), flush=True)


def run_pipeline(args, log_path, timeline=None):
    """Runs local_runner.py with `args` in a child process; returns (exit code, seconds,
    peak resident memory in MB of the run). The peak is the larger of the child's own
    (os.wait4: the child and every process it waited for) and the largest sum over the
    child's process tree sampled twice a second (Beam workers run next to it). With
    `timeline` (a list), (time.time(), tree MB) samples are appended to it."""
    import threading
    import time

    started = time.time()
    samples = timeline if timeline is not None else []
    with open(log_path, "w") as log:
        pid = os.fork()
        if pid == 0:  # the child becomes the pipeline run
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            os.chdir(ROOT)
            os.execv(sys.executable, [sys.executable, os.path.join(ROOT, "local_runner.py"),
                                      *args])
        done = threading.Event()

        def sample():
            while not done.wait(0.5):
                samples.append((time.time(), _tree_rss_mb(pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(pid, 0)
        done.set()
        sampler.join()
    peak = max([usage.ru_maxrss / 1024] + [mb for _, mb in samples])
    return os.waitstatus_to_exitcode(status), time.time() - started, peak


def _tree_rss_mb(root):
    """Resident memory (MB) of `root` and all its descendants, from /proc."""
    parents, rss = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        parents[int(entry)] = int(fields.get("PPid", "0").strip() or 0)
        rss[int(entry)] = int(fields.get("VmRSS", "0 kB").split()[0] or 0)
    tree, frontier = {root}, [root]
    while frontier:
        frontier = [p for p, parent in parents.items() if parent in frontier and p not in tree]
        tree.update(frontier)
    return sum(rss.get(p, 0) for p in tree) / 1024


def component_peaks(log_path, timeline):
    """{component: peak tree MB while it ran}, from the run log's "[HH:MM:SS] X running" /
    "X finished" lines and the timeline `run_pipeline` sampled."""
    import datetime
    import re

    day = datetime.date.today()
    spans, open_ = {}, {}
    for line in open(log_path, errors="replace"):
        match = re.match(r"\[(\d\d:\d\d:\d\d)\] (\S+) (running|finished)", line)
        if not match:
            continue
        at = datetime.datetime.combine(day, datetime.time.fromisoformat(
            match.group(1))).timestamp()
        if match.group(3) == "running":
            open_[match.group(2)] = at
        elif match.group(2) in open_:
            spans[match.group(2)] = (open_.pop(match.group(2)), at + 1)
    return {name: round(max([mb for t, mb in timeline if start <= t <= end] or [0]))
            for name, (start, end) in spans.items()}
