"""Runs the pipeline on this machine: TFX's LocalDagRunner or BeamDagRunner (Beam DirectRunner).

    python local_runner.py                      # the default data: Chicago taxi, big_tipper
    python local_runner.py --data my.csv --label churned --drop customer_id
    python local_runner.py --help
"""
import argparse
import contextlib
import fcntl
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from typing import Dict, List, Optional

import modules  # noqa: F401  (selects tf_keras before TensorFlow loads)
from modules import settings
from modules.errors import UserError
from pipeline import configs, metadata
from pipeline.inputs import UserInputError, check_csv


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = settings.FlagParser(
        description="Tune, train, distill, prune and quantize a Keras classifier with TFX.")
    p.add_argument("--data", help="a CSV file or a folder of CSV files with the same header "
                   "(default: the Chicago taxi CSV shipped inside tfx)")
    p.add_argument("--output", help="holds the pipeline root, the ML Metadata SQLite file, "
                   "the serving directory and the report (default: runs/<pipeline name>)")
    p.add_argument("--runner", default="local",
                   help="local (LocalDagRunner) or beam (BeamDagRunner); both execute Beam "
                        "steps on the DirectRunner (default: %(default)s)")
    p.add_argument("--schema", help="a curated schema.pbtxt: the data is validated against it "
                   "and anomalies stop the run before training")
    p.add_argument("--verbose", action="store_true",
                   help="print everything TFX, Beam, TensorFlow, TFLite and Keras Tuner say, as "
                        "<output>/logs/run.log has it (default: our steps, results, verdict)")
    p.add_argument("--no-cache", action="store_true",
                   help="run every component even if an identical run is cached")
    p.add_argument("--explain", metavar="VERSION_DIR", help="print, from ML Metadata, the data, "
                   "hyperparameters and component runs that produced a pushed model, then exit")
    p.add_argument("--metadata", metavar="URI", help="ML Metadata in a MySQL or MariaDB "
                   "database, as on Kubeflow: mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE "
                   f"(the database must exist; the password may come from "
                   f"${metadata.MYSQL_PASSWORD_ENV} instead) (default: a SQLite file, "
                   "<output>/metadata.sqlite)")
    configs.add_shared_flags(p, "--beam-arg=--direct_running_mode=multi_processing")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> configs.PipelineConfig:
    """Validates the flags and the data, and returns the pipeline's configuration."""
    if args.runner not in ("local", "beam"):
        raise UserInputError(f"--runner {args.runner}: unknown runner; use local or beam")
    stages = settings.stages_from_flags(args, quick=args.quick)
    if stages["training"].strategy == "multi_worker" and "TF_CONFIG" not in os.environ:
        raise UserInputError("--strategy multi_worker: TF_CONFIG is not set; it describes the "
                             "cluster (a Kubeflow training job sets it)")
    label, drop = configs.label_and_drop(args, default_data=args.data is None)
    beam_args = configs.beam_args(args, on_this_machine=True)
    source = check_csv(args.data or configs.default_data_path(), label, drop, stages["csv"])
    for name, why in source.left_out.items():
        column = f"column '{name}'" if name else "a column"
        keep = f"; --keep {name} to use it" if name else ""
        print(f"note: {source.files[0]}: {column} is left out: {why}{keep}", file=sys.stderr)
    drop = tuple(name for name in drop if name not in source.left_out)
    output = os.path.abspath(args.output or os.path.join("runs", configs.PIPELINE_NAME))
    database = _metadata(args.metadata, output)
    metadata.check_connection(database)
    return configs.PipelineConfig(
        pipeline_root=os.path.join(output, "pipeline_root"),
        metadata=database,
        serving_dir=os.path.join(output, "serving"),
        work_dir=os.path.join(output, "work"),
        data_root=source.data_root, data_pattern=source.pattern,
        label=label, drop=drop,
        schema_path=_check_schema(args.schema),
        beam_args=beam_args,
        data_beam_args=configs.data_beam_args([os.path.getsize(f) for f in source.files],
                                              args.beam_arg),
        enable_cache=not args.no_cache, **stages)


def _metadata(uri: Optional[str], output: str) -> str:
    """Where ML Metadata is: --metadata (a mysql:// URI), else the output folder's SQLite file."""
    if uri is None:
        return os.path.join(output, "metadata.sqlite")
    if not metadata.is_mysql(uri):
        raise UserInputError(f"--metadata {uri}: not a MySQL URI; use {metadata.MYSQL_FORM}, "
                             f"or leave it out for SQLite in the output folder")
    return uri


def _check_schema(path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    if not os.path.isfile(path):
        raise UserInputError(f"--schema {path}: no such file; pass a schema.pbtxt")
    from tensorflow_metadata.proto.v0 import schema_pb2
    from google.protobuf import text_format

    try:
        with open(path) as f:
            text_format.Parse(f.read(), schema_pb2.Schema())
    except text_format.ParseError as e:
        raise UserInputError(f"--schema {path}: not a valid schema.pbtxt ({e})") from None
    return os.path.abspath(path)


@contextlib.contextmanager
def exclusive_output(output: str):
    """Holds a lock on the output folder: a second run on it refuses instead of racing."""
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, ".lock"), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "another process"
            raise UserInputError(f"--output {output}: another run ({owner}) is using this "
                                 f"folder; wait for it to finish or pass another --output")
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class TerminalLog(logging.Handler):
    """What reaches the terminal: our steps' own lines as they are, a line when a component
    starts and when it ends (with its time), and errors from anything (TFX, Beam,
    TensorFlow) with where they come from. Everything else goes to the run's log only."""
    OURS = ("modules", "components", "pipeline")

    def __init__(self, stream=None):
        super().__init__(logging.INFO)
        self.stream = stream or sys.stdout
        self.errors = set()  # each distinct error once: TFX repeats some per component
        self.started: Dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not getattr(record, "terminal", True):  # console.LOG_ONLY
            return
        if record.name.split(".")[0] in self.OURS:
            line = message if record.levelno < logging.WARNING else (
                f"{record.levelname.lower()}: {message}")
        elif record.levelno >= logging.ERROR:
            line = f"{record.levelname.lower()} [{record.name}]: {message}"
            if line in self.errors:
                return
            self.errors.add(line)
        elif message.endswith((" is running.", " is finished.")):  # TFX's launcher
            component = message.split()[1]
            if message.endswith("running."):
                self.started[component] = record.created
                line = f"[{time.strftime('%H:%M:%S')}] {component} running"
            else:
                took = record.created - self.started.get(component, record.created)
                line = f"[{time.strftime('%H:%M:%S')}] {component} finished in {took:.1f} s"
        else:
            return
        self.stream.write(line + "\n")
        self.stream.flush()


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class HidePasswords(logging.Filter):
    """TFX logs ML Metadata's connection config, a MySQL password included: not in our logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "password" in message or "mysql://" in message:
            record.msg, record.args = metadata.hide_passwords(message), None
        return True


def configure_logging(terminal=None, log_file=None) -> None:
    """Every logger (ours, TFX's through absl, TensorFlow's, Beam's) goes to TerminalLog on
    `terminal` and, in full, to `log_file` (an open text file), with Python's warnings."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)  # TFX's component start/end records
    root = logging.getLogger()
    root.handlers[:] = [TerminalLog(terminal)]
    if log_file is not None:
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.handlers.append(handler)
    for handler in root.handlers:
        handler.addFilter(HidePasswords())
    root.setLevel(logging.INFO)
    for name in ("absl", "tensorflow"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.captureWarnings(True)


@contextlib.contextmanager
def terminal_and_log(log_path: str, verbose: bool = False):
    """Sends file descriptors 1 and 2 (print(), warnings, the C++ logs of TensorFlow and
    TFLite, Keras Tuner's summaries) to `log_path` and yields the real terminal, where
    TerminalLog writes; with `verbose`, the terminal keeps everything and the log file
    gets the logging records. Restores both descriptors on the way out, errors included."""
    from modules.learning import console

    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    with open(log_path, "a", buffering=1) as log:
        if not verbose:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        console.terminal = terminal
        try:
            yield terminal, log
        except BaseException:
            traceback.print_exc(file=log)  # the terminal gets it too, once restored
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            console.terminal = None
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()


@contextlib.contextmanager
def temp_folder_in(output: str):
    """The run's temporary files under `<output>/tmp`, deleted when it ends (errors included):
    TFX stages a 49 MB copy of itself for Beam workers in a new temp folder at every Beam
    component and never deletes it (three a default run, about 150 MB). Python's tempfile in
    this process and TMPDIR for the processes it starts (Beam workers) both point there."""
    folder = os.path.join(output, "tmp")
    os.makedirs(folder, exist_ok=True)
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = folder
    try:
        yield folder
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[1]
        shutil.rmtree(folder, ignore_errors=True)


def run(config: configs.PipelineConfig, runner: str, terminal=None, log_file=None) -> None:
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from modules import memory
    from pipeline.pipeline import create_pipeline

    configure_logging(terminal, log_file)
    dag = create_pipeline(config)
    with memory.startup_frozen():  # the imports the components need are done: see its docstring
        if runner == "beam":
            from apache_beam.options.pipeline_options import StandardOptions
            from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

            # BeamDagRunner runs the components as the steps of a Beam pipeline it makes
            # without options, so on Beam's default runner, the DirectRunner, which tries
            # Prism first (downloading it): the components would then run in a Prism worker
            # process. Name the in-process FnApiRunner instead, the engine the DirectRunner
            # falls back to.
            default = StandardOptions.DEFAULT_RUNNER
            StandardOptions.DEFAULT_RUNNER = configs.BEAM_RUNNER
            try:
                BeamDagRunner().run(dag)
            finally:
                StandardOptions.DEFAULT_RUNNER = default
        else:
            LocalDagRunner().run(dag)


def _user_error(error: BaseException) -> Optional[str]:
    """The one-line message of an error the user caused, found anywhere in the chain."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, UserError):
            return str(error)
        error = error.__cause__ or error.__context__
    return None


def explain(version_dir: str, output: Optional[str], uri: Optional[str] = None) -> None:
    """Prints the lineage of a pushed model version from ML Metadata."""
    from pipeline import lineage

    version_dir = os.path.abspath(version_dir.rstrip("/"))
    if not os.path.isdir(version_dir):
        raise UserInputError(f"--explain {version_dir}: no such folder; pass a pushed version "
                             f"folder such as <output>/serving/<version>")
    output = os.path.abspath(output) if output else os.path.dirname(os.path.dirname(version_dir))
    database = _metadata(uri, output)
    metadata.check_connection(database)  # a MySQL database; a SQLite file must exist:
    if not metadata.is_mysql(database) and not os.path.isfile(database):
        raise UserInputError(f"--explain: no ML Metadata at {database}; pass --output with "
                             f"the run's output folder, or the run's --metadata")
    text = lineage.explain(database, version_dir)
    if text is None:
        raise UserInputError(f"--explain {version_dir}: ML Metadata in "
                             f"{metadata.describe(database)} has no push to that folder")
    print(text)


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = parse_args(argv)
        if args.explain:
            explain(args.explain, args.output, args.metadata)
            return 0
        config = build_config(args)
        output = os.path.dirname(config.pipeline_root)
        with exclusive_output(output):
            started = time.time()
            log_path = os.path.join(output, "logs", "run.log")
            with terminal_and_log(log_path, args.verbose) as (terminal, log_file), \
                    temp_folder_in(output):
                run(config, args.runner, terminal, log_file)
                from pipeline import report

                summary = report.write_report(config.metadata, config.pipeline_name,
                                              os.path.join(output, "report"))
            print()
            print(report.terminal_text(summary))
            print(f"Pipeline finished in {time.time() - started:.1f} s; report: "
                  f"{os.path.join(output, 'report', 'index.html')}; log: {log_path}")
    except Exception as error:  # one line for what the user can fix, a traceback otherwise
        message = _user_error(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
