"""What a runner decides (paths, Beam, caching) composed with the stage configs of
`modules.settings`, which own every setting of the steps. `create_pipeline` turns a
`PipelineConfig` into the DAG."""
import argparse
import dataclasses
import os
from typing import Optional, Sequence, Tuple

from modules import settings
from modules.settings import (Baselines, Blessing, Csv, Distillation, Pruning,
                              Quantization, RunSettings, SettingError, Splits, Teacher,
                              Training, Tuning)

PIPELINE_NAME = "tfx-compress"
DEFAULT_LABEL = "big_tipper"
DEFAULT_DROP = ("tips",)  # determines big_tipper: a feature made of the label leaks it
TAXI_CSV = os.path.join("examples", "chicago_taxi_pipeline", "data", "big_tipper_label",
                        "data.csv")

# Beam on one machine (the DirectRunner): in one process by default, where memory stays flat
# in the rows (CsvExampleGen and StatisticsGen stream; measured at 600,000 taxi rows in one
# 104 MB file: 123 s and 1.2 GB). Worker processes pay only where there is parallel work: a
# CSV file is read whole by one worker (a quoted field may span lines), so with one file they
# are slower (145 s) and each imports TensorFlow (2.4 GB in all). So from LARGE_INPUT_BYTES of
# CSV in two files or more, CsvExampleGen and StatisticsGen run one worker process per file,
# up to the cores (`data_beam_args`, their component-level Beam args; the same rows in two
# files: 82 s and 2.7 GB, against 144 s and 1.5 GB in one process). The Evaluator's TFMA
# reads a bounded sample and stays in-process. --beam-arg adds to or overrides these (a Beam
# mode or runner given there replaces the choice); other runners (Dataflow, Flink, Spark) are
# chosen with it too (README).
# The runner is named: Beam's FnApiRunner, the engine its DirectRunner runs these pipelines on.
# Beam 2.74's DirectRunner first tries its Go-based Prism runner, downloading the binary from
# GitHub at run time, and falls back only when that fails (offline): online, users would run
# another engine than the one tested here.
# Beam's type checks at pipeline construction are off (`--no_pipeline_type_check`): they
# check the transforms' declared element types against each other, which TFDV's, TFMA's and
# our fixed pipelines pass, and cost 1-1.5 s per pipeline run (TFDV's statistics of the taxi
# splits: 11.3 -> 10.2 s; TFMA's slices of 2,304 rows: 14.5 -> 12.5-14.3 s). Elements are
# encoded alike either way.
BEAM_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"
DEFAULT_BEAM_ARGS = (f"--runner={BEAM_RUNNER}", "--direct_running_mode=in_memory",
                     "--direct_num_workers=1", "--no_pipeline_type_check")
LARGE_INPUT_BYTES = 32 * 2 ** 20
_RUNNER_ARGS = ("--runner", "--direct_running_mode", "--direct_num_workers")


def data_beam_args(file_sizes: Sequence[int],
                   user_args: Sequence[str] = ()) -> Tuple[str, ...]:
    """CsvExampleGen's and StatisticsGen's own Beam args for CSV files of `file_sizes` bytes:
    a worker process per file, up to the cores, for large inputs in several files, unless
    `user_args` chose the runner or mode."""
    workers = min(len(file_sizes), os.cpu_count() or 1)
    if sum(file_sizes) < LARGE_INPUT_BYTES or workers < 2 or any(
            arg.split("=", 1)[0] in _RUNNER_ARGS for arg in user_args):
        return ()
    return ("--direct_running_mode=multi_processing", f"--direct_num_workers={workers}")


def add_shared_flags(parser: argparse.ArgumentParser, beam_example: str) -> None:
    """The flags both runners take: the label, the dropped columns, Beam arguments, --quick
    and every stage's flags (modules.settings)."""
    parser.add_argument("--label", default=DEFAULT_LABEL,
                        help="the column to predict (default: %(default)s)")
    parser.add_argument("--drop", default=None, metavar="COL[,COL...]",
                        help="columns never used as features (default with the taxi data: "
                             "tips, which determines big_tipper; otherwise none)")
    parser.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                        help=f"passed to Beam, repeatable, e.g. {beam_example}")
    parser.add_argument("--quick", action="store_true",
                        help="a small preset (few trials and epochs) for smoke runs and tests")
    settings.add_stage_flags(parser)


def label_and_drop(args: argparse.Namespace, default_data: bool) -> Tuple[str, Tuple[str, ...]]:
    """--label and --drop, checked; on the default (taxi) data --drop defaults to tips."""
    if not args.label.strip():
        raise SettingError("--label: empty; name the column to predict")
    if args.drop is None:
        drop = DEFAULT_DROP if default_data else ()
    else:
        drop = settings.comma_list(args.drop)
    if args.label in drop:
        raise SettingError(f"--drop {args.label}: that is the label column (--label); "
                           f"remove it from --drop")
    return args.label, drop


# With any Beam args, TFX packages the installed tfx for Beam to stage to remote workers (a
# 49 MB copy and an sdist build, about 5 s, at every Beam component) unless the args already
# name the workers' dependencies. The in-process FnApiRunner has no remote workers: on this
# machine the args name this project's setup.py, which is what a remote runner would stage
# (our executors' code) and which the in-process runner never reads.
SETUP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "setup.py")


# The Beam args of a run on this machine with Beam's runner left as the default
LOCAL_BEAM_ARGS = DEFAULT_BEAM_ARGS + (f"--setup_file={SETUP_FILE}",)


def beam_args(args: argparse.Namespace, on_this_machine: bool = False) -> Tuple[str, ...]:
    """Every Beam step's arguments: the defaults, then --beam-arg (which may override). With
    `on_this_machine` and Beam's runner left as the default, nothing is packaged for staging."""
    bad = [a for a in args.beam_arg if not a.startswith("--")]
    if bad:
        raise SettingError(f"--beam-arg {bad[0]}: Beam arguments look like --name=value")
    in_process = on_this_machine and not any(a.split("=", 1)[0] == "--runner"
                                             for a in args.beam_arg)
    return (LOCAL_BEAM_ARGS if in_process else DEFAULT_BEAM_ARGS) + tuple(args.beam_arg)


def default_data_path() -> str:
    """The Chicago taxi CSV that ships inside the installed tfx package."""
    import tfx  # imported here: finding the data must not cost a TFX import elsewhere

    return os.path.join(os.path.dirname(tfx.__file__), TAXI_CSV)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything `create_pipeline` needs, as plain values."""
    pipeline_root: str
    data_root: str  # folder given to CsvExampleGen
    data_pattern: str  # file pattern inside data_root
    serving_dir: str  # where blessed models are pushed
    work_dir: str  # resumable state kept across runs (checkpoints, tuner trials)
    pipeline_name: str = PIPELINE_NAME
    # ML Metadata: a SQLite file or a mysql:// URI (pipeline.metadata); None on Kubeflow,
    # where the cluster's is used
    metadata: Optional[str] = None
    label: str = DEFAULT_LABEL
    drop: Tuple[str, ...] = DEFAULT_DROP
    schema_path: Optional[str] = None  # curated schema: ImportSchemaGen, anomalies stop the run
    beam_args: Tuple[str, ...] = DEFAULT_BEAM_ARGS
    data_beam_args: Tuple[str, ...] = ()  # after beam_args, for CsvExampleGen, StatisticsGen
    enable_cache: bool = True
    verbose: bool = True
    # Compare with the last blessed model (TFX Resolver). The open-source Kubeflow Pipelines
    # backend cannot run resolvers: there the thresholds alone decide.
    resolve_baseline: bool = True
    csv: Csv = Csv()
    splits: Splits = Splits()
    training: Training = Training()
    tuning: Tuning = Tuning()
    teacher: Teacher = Teacher()
    baselines: Baselines = Baselines()
    distillation: Distillation = Distillation()
    pruning: Pruning = Pruning()
    quantization: Quantization = Quantization()
    blessing: Blessing = Blessing()

    @property
    def run_settings(self) -> RunSettings:
        """What every model component is told."""
        return RunSettings(label=self.label, drop=tuple(self.drop), training=self.training,
                           work_dir=self.work_dir, verbose=self.verbose)
