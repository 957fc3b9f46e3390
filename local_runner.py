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
import sys
import time
from typing import List, Optional

import modules  # noqa: F401  (selects tf_keras before TensorFlow loads)
from pipeline import configs
from modules.errors import UserError
from pipeline.inputs import UserInputError, check_csv


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Tune, train, distill, prune and quantize a Keras classifier with TFX.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", help="a CSV file or a folder of CSV files with the same header "
                   "(default: the Chicago taxi CSV shipped inside tfx)")
    p.add_argument("--label", default=configs.DEFAULT_LABEL, help="the column to predict")
    p.add_argument("--drop", default=None, metavar="COL[,COL...]",
                   help="columns never used as features (default with the taxi data: tips, "
                        "which determines big_tipper; otherwise none)")
    p.add_argument("--output", help="holds the pipeline root, the ML Metadata SQLite file, "
                   "the serving directory and the report (default: runs/<pipeline name>)")
    p.add_argument("--runner", default="local", help="local (LocalDagRunner) or beam "
                   "(BeamDagRunner); both execute Beam steps on the DirectRunner")
    p.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                   help="passed to Beam, repeatable, e.g. --beam-arg="
                        "--direct_running_mode=multi_processing")
    p.add_argument("--schema", help="a curated schema.pbtxt: the data is validated against it "
                   "and anomalies stop the run before training")
    p.add_argument("--quick", action="store_true",
                   help="a small preset (few trials and epochs) for smoke runs and tests")
    p.add_argument("--no-cache", action="store_true",
                   help="run every component even if an identical run is cached")
    p.add_argument("--seed", type=int, default=42, help="seed of every random choice")
    p.add_argument("--tuner", default="hyperband",
                   help="hyperparameter search: random, hyperband, bayesian or none")
    p.add_argument("--trials", type=int, default=None, help="tuner trials (default: 10; "
                   "2 with --quick)")
    p.add_argument("--epochs", type=int, default=None, help="teacher training epochs "
                   "(default: the tuned or built-in value)")
    p.add_argument("--precision", default=None,
                   help="float32, mixed_float16 or mixed_bfloat16 (default: float32)")
    p.add_argument("--strategy", default="none", help="tf.distribute strategy for training: "
                   "none, mirrored or multi_worker (reads TF_CONFIG)")
    p.add_argument("--search-space", metavar="JSON_FILE", help="replaces the tuner's search "
                   "space; see modules/tuner.py DEFAULT_SEARCH_SPACE for the format")
    p.add_argument("--student-layers", type=int, default=None,
                   help="student depth (DenseBlocks); default: the size search picks the "
                        "smallest student within half the blessing budget of the teacher")
    p.add_argument("--student-units", type=int, default=None,
                   help="student width; default: searched with the depth")
    p.add_argument("--alpha", type=float, default=None, help="distillation: weight of the "
                   "label cross-entropy, 1 - alpha weighs the teacher's soft targets; "
                   "default: chosen on the eval split from a small grid")
    p.add_argument("--temperature", type=float, default=None,
                   help="distillation temperature T (> 0) that softens the logits; default: "
                        "chosen with alpha")
    p.add_argument("--sparsity", type=float, default=0.8,
                   help="pruning target: fraction of the student's weights set to zero, [0, 1)")
    p.add_argument("--quantize", default="dynamic,float16,int8", metavar="MODE[,MODE...]",
                   help="TFLite models to produce: dynamic, float16, int8, qat, pqat")
    p.add_argument("--deploy-mode", default="int8",
                   help="the TFLite model that is blessed and pushed (one of --quantize)")
    p.add_argument("--min-auc", type=float, default=0.9,
                   help="the deployable model is blessed only with at least this ROC AUC")
    p.add_argument("--max-auc-drop", type=float, default=0.005,
                   help="... and at most this much below the teacher's ROC AUC")
    p.add_argument("--max-accuracy-drop", type=float, default=0.01,
                   help="... and at most this much below the teacher's accuracy")
    p.add_argument("--explain", metavar="VERSION_DIR", help="print, from ML Metadata, the data, "
                   "hyperparameters and component runs that produced a pushed model, then exit")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> configs.PipelineConfig:
    """Validates the flags and the data, and returns the pipeline's configuration."""
    if args.runner not in ("local", "beam"):
        raise UserInputError(f"--runner {args.runner}: unknown runner; use local or beam")
    if args.tuner not in configs.TUNERS:
        raise UserInputError(f"--tuner {args.tuner}: unknown tuner; use one of "
                             f"{', '.join(configs.TUNERS)}")
    if args.trials is not None and args.trials < 1:
        raise UserInputError(f"--trials {args.trials}: the tuner needs at least 1 trial")
    data = args.data or configs.default_data_path()
    if args.drop is None:
        drop = configs.DEFAULT_DROP if args.data is None else ()
    else:
        drop = tuple(c.strip() for c in args.drop.split(",") if c.strip())
    source = check_csv(data, args.label, drop)
    output = os.path.abspath(args.output or os.path.join("runs", configs.PIPELINE_NAME))
    overrides = {}
    if args.quick:
        overrides = configs.quick_overrides()
    model_overrides = dict(overrides.pop("model_overrides", {}))
    if args.epochs is not None:
        model_overrides["epochs"] = args.epochs
    if args.precision is not None:
        model_overrides["precision"] = args.precision
    _check_model_overrides(model_overrides)
    if args.trials is not None:
        overrides["trials"] = args.trials
    modes = tuple(m.strip() for m in args.quantize.split(",") if m.strip())
    _check_compression(args, modes)
    return configs.PipelineConfig(
        pipeline_root=os.path.join(output, "pipeline_root"),
        metadata_path=os.path.join(output, "metadata.sqlite"),
        serving_dir=os.path.join(output, "serving"),
        work_dir=os.path.join(output, "work"),
        data_root=source.data_root, data_pattern=source.pattern,
        label=args.label, drop=drop,
        schema_path=_check_schema(args.schema),
        beam_args=tuple(configs.DEFAULT_BEAM_ARGS) + tuple(args.beam_arg),
        enable_cache=not args.no_cache, seed=args.seed, strategy=_check_strategy(args.strategy),
        tuner=args.tuner, model_overrides=model_overrides,
        search_space=_read_search_space(args.search_space),
        student_layers=args.student_layers, student_units=args.student_units, alpha=args.alpha,
        temperature=args.temperature, sparsity=args.sparsity, quantization_modes=modes,
        deploy_mode=args.deploy_mode, min_auc=args.min_auc, max_auc_drop=args.max_auc_drop,
        max_accuracy_drop=args.max_accuracy_drop,
        **overrides)


def _check_compression(args: argparse.Namespace, modes) -> None:
    from modules import distillation, pruning, quantization

    checks = [(lambda: distillation.check_distillation_params(
                   0.5 if args.alpha is None else args.alpha,
                   1.0 if args.temperature is None else args.temperature),
               "--alpha/--temperature"),
              (lambda: pruning.check_sparsity(args.sparsity), "--sparsity"),
              (lambda: quantization.check_modes(modes), "--quantize")]
    for check, flag in checks:
        try:
            check()
        except ValueError as e:
            raise UserInputError(f"{flag}: {e}") from None
    if any(value is not None and value < 1 for value in (args.student_layers,
                                                         args.student_units)):
        raise UserInputError("--student-layers and --student-units must be at least 1")
    if args.deploy_mode not in modes:
        raise UserInputError(f"--deploy-mode {args.deploy_mode}: not among --quantize "
                             f"({', '.join(modes)}); add it there")
    if not 0.0 <= args.min_auc <= 1.0 or args.max_auc_drop < 0.0 or args.max_accuracy_drop < 0:
        raise UserInputError("--min-auc must be in [0, 1], --max-auc-drop and "
                             "--max-accuracy-drop >= 0")


def _read_search_space(path: Optional[str]) -> Optional[dict]:
    if path is None:
        return None
    import json

    from modules.tuner import check_search_space

    try:
        with open(path) as f:
            space = json.load(f)
        if not isinstance(space, dict):
            raise ValueError("the file must hold a JSON object")
        check_search_space(space)
    except (OSError, ValueError) as e:
        raise UserInputError(f"--search-space {path}: {e}") from None
    return space


def _check_model_overrides(model_overrides: dict) -> None:
    from modules.model import ModelConfig

    try:
        ModelConfig.from_dict({}, **model_overrides)
    except ValueError as e:
        raise UserInputError(f"{e}; fix the flag") from None


def _check_strategy(name: str) -> str:
    from modules.training import STRATEGIES

    if name not in STRATEGIES:
        raise UserInputError(f"--strategy {name}: unknown strategy; use one of "
                             f"{', '.join(STRATEGIES)}")
    if name == "multi_worker" and "TF_CONFIG" not in os.environ:
        raise UserInputError("--strategy multi_worker: TF_CONFIG is not set; it describes the "
                             "cluster (a Kubeflow training job sets it)")
    return name


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


class _ProgressFilter(logging.Filter):
    """Shows which component starts and ends, out of TFX's INFO logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.endswith((" is running.", " is finished.")):
            component = message.split()[1]
            state = "running" if message.endswith("running.") else "finished"
            print(f"[{time.strftime('%H:%M:%S')}] {component} {state}", flush=True)
        return False


def run(config: configs.PipelineConfig, runner: str) -> None:
    from absl import logging as absl_logging
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    absl_logging.set_verbosity(absl_logging.INFO)
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_ProgressFilter())
    absl_logging.get_absl_logger().addHandler(handler)
    absl_logging.get_absl_logger().propagate = False
    dag = create_pipeline(config)
    if runner == "beam":
        from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

        BeamDagRunner().run(dag)
    else:
        tfx.orchestration.LocalDagRunner().run(dag)


def _user_error(error: BaseException) -> Optional[str]:
    """The one-line message of an error the user caused, found anywhere in the chain."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, UserError):
            return str(error)
        error = error.__cause__ or error.__context__
    return None


def explain(version_dir: str, output: Optional[str]) -> None:
    """Prints the lineage of a pushed model version from ML Metadata."""
    from pipeline import lineage

    version_dir = os.path.abspath(version_dir.rstrip("/"))
    if not os.path.isdir(version_dir):
        raise UserInputError(f"--explain {version_dir}: no such folder; pass a pushed version "
                             f"folder such as <output>/serving/<version>")
    output = os.path.abspath(output) if output else os.path.dirname(os.path.dirname(version_dir))
    metadata_path = os.path.join(output, "metadata.sqlite")
    if not os.path.isfile(metadata_path):
        raise UserInputError(f"--explain: no ML Metadata at {metadata_path}; pass --output with "
                             f"the run's output folder")
    text = lineage.explain(metadata_path, version_dir)
    if text is None:
        raise UserInputError(f"--explain {version_dir}: ML Metadata in {metadata_path} has no "
                             f"push to that folder")
    print(text)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.explain:
            explain(args.explain, args.output)
            return 0
        config = build_config(args)
        output = os.path.dirname(config.pipeline_root)
        with exclusive_output(output):
            started = time.time()
            run(config, args.runner)
            from pipeline import report

            summary = report.write_report(config.metadata_path, config.pipeline_name,
                                          os.path.join(output, "report"))
            print()
            print(report.terminal_text(summary))
            print(f"Pipeline finished in {time.time() - started:.1f} s; report: "
                  f"{os.path.join(output, 'report', 'index.html')}")
    except Exception as error:  # one line for what the user can fix, a traceback otherwise
        message = _user_error(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
