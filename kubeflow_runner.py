"""Compiles the pipeline for Kubeflow Pipelines: TFX's KubeflowV2DagRunner on the same DAG
(`pipeline.pipeline.create_pipeline`) that local_runner.py runs. Nothing runs here.

    python kubeflow_runner.py --image REGISTRY/tfx-compress:TAG \\
        --pipeline-root gs://BUCKET/tfx-compress --data-root gs://BUCKET/data
    python kubeflow_runner.py --help

Writes pipeline.json (a PipelineJob) and pipeline.yaml (its PipelineSpec, for upload in the
Kubeflow Pipelines UI) into --output-dir. See "Running on Kubeflow Pipelines" in README.md.
"""
import argparse
import os
import posixpath
import re
import sys
import time
from typing import List, Optional

import modules  # noqa: F401  (selects tf_keras before TensorFlow loads)
from modules import settings
from pipeline import configs
from modules.errors import UserError
from pipeline.inputs import UserInputError

# The taxi CSV, copied into the image by the Dockerfile: the default --data-root.
IMAGE_DATA_ROOT = "/pipeline/data/taxi"
_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_NAME}(?:/{_NAME})*"
                    r"(?::[\w][\w.-]{0,127})?(?:@[a-z0-9]+:[0-9a-f]{32,})?$")
_REMOTE = re.compile(r"^(gs|s3)://[^/\s]+(/\S*)?$")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = settings.FlagParser(description="Compile the pipeline for Kubeflow Pipelines "
                            "(KubeflowV2DagRunner) into pipeline.json and pipeline.yaml.")
    p.add_argument("--image", required=True, help="the pipeline's container image every task "
                   "runs, e.g. REGISTRY/tfx-compress:TAG (build it with `make image`)")
    p.add_argument("--pipeline-root", required=True, help="where the cluster keeps artifacts: "
                   "gs://BUCKET/PATH, s3://BUCKET/PATH or an absolute path mounted in every pod")
    p.add_argument("--data-root", default=IMAGE_DATA_ROOT, help="the folder of CSV files "
                   "(*.csv, same header), as the cluster sees it (default: %(default)s, the "
                   "Chicago taxi CSV inside the image)")
    p.add_argument("--output-dir", default=os.path.join("runs", "kubeflow"),
                   help="where pipeline.json and pipeline.yaml are written "
                   "(default: %(default)s)")
    p.add_argument("--serving-dir", default=None, help="where blessed models are pushed "
                   "(default: <pipeline-root>/serving)")
    p.add_argument("--no-baseline-resolver", action="store_true",
                   help="leave out the TFX Resolver that finds the last blessed model (the "
                   "open-source Kubeflow Pipelines backend cannot run resolvers; Vertex AI "
                   "Pipelines can); blessing then rests on the test-split criteria alone")
    p.add_argument("--dry-run", metavar="DIR", help="after compiling, execute the compiled "
                   "pipeline.json on this machine as the Kubeflow Pipelines v2 backend would "
                   "(each task's container command with its ExecutorInput, in a subprocess); "
                   "task folders and logs go to DIR. Needs a local --pipeline-root (and "
                   "--data-root, default: the taxi CSV); implies --no-baseline-resolver")
    configs.add_shared_flags(p, "--beam-arg=--runner=DataflowRunner --beam-arg=--project=P")
    return p.parse_args(argv)


def _cluster_path(flag: str, value: str) -> str:
    """A URI or absolute path every pod can read; relative paths mean nothing in a pod."""
    if _REMOTE.match(value) or (value.startswith("/") and "://" not in value):
        return value.rstrip("/") or "/"
    raise UserInputError(f"{flag} {value}: use gs://BUCKET/PATH, s3://BUCKET/PATH or an "
                         f"absolute path mounted in every pod")


def build_config(args: argparse.Namespace) -> configs.PipelineConfig:
    """Validates the flags (the data lives in the cluster: no CSV checks here)."""
    if not _IMAGE.match(args.image):
        raise UserInputError(f"--image {args.image}: not an image reference; use "
                             f"REGISTRY/NAME:TAG (lowercase name)")
    root = _cluster_path("--pipeline-root", args.pipeline_root)
    data_root = _cluster_path("--data-root", args.data_root)
    taxi = data_root == IMAGE_DATA_ROOT  # the default data: drop tips by default
    if args.dry_run:
        if taxi:  # the image's copy of the taxi CSV is this one
            data_root = os.path.dirname(configs.default_data_path())
        if "://" in root:
            raise UserInputError(f"--pipeline-root {root}: a dry run runs here; pass a "
                                 f"folder of this machine")
        if not os.path.isdir(data_root):
            raise UserInputError(f"--data-root {data_root}: no such folder here; a dry run "
                                 f"reads the CSV files from this machine")
        if not args.no_baseline_resolver:
            # The backend runs resolvers itself, and the open-source one cannot.
            print("note: --dry-run compiles without the baseline resolver, as "
                  "--no-baseline-resolver does: the open-source Kubeflow Pipelines backend "
                  "cannot run resolver tasks", file=sys.stderr)
    serving_dir = _cluster_path("--serving-dir",
                                args.serving_dir or posixpath.join(root, "serving"))
    label, drop = configs.label_and_drop(args, default_data=taxi)
    beam_args = configs.beam_args(args)
    stages = settings.stages_from_flags(args, quick=args.quick)
    return configs.PipelineConfig(
        pipeline_root=root, data_root=data_root, data_pattern="*.csv", serving_dir=serving_dir,
        work_dir=posixpath.join(root, "work"), metadata=None,  # the cluster's MLMD
        label=label, drop=drop, beam_args=beam_args,
        resolve_baseline=not (args.no_baseline_resolver or args.dry_run), **stages)


def compile_pipeline(config: configs.PipelineConfig, image: str, output_dir: str) -> List[str]:
    """Writes pipeline.json (the PipelineJob) and pipeline.yaml (its PipelineSpec); returns
    their paths."""
    import json

    import yaml
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    # Schema 2.1 (parameterType, not the deprecated type): what KFP 2.x SDK and backend use.
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True))
    job = runner.run(create_pipeline(config), write_out=False)
    # The YAML has no runtimeConfig: carry the root in the spec (the KFP UI pre-fills it).
    job["pipelineSpec"]["defaultPipelineRoot"] = config.pipeline_root
    os.makedirs(output_dir, exist_ok=True)
    json_path, yaml_path = (os.path.join(output_dir, n) for n in ("pipeline.json",
                                                                   "pipeline.yaml"))
    with open(json_path, "w") as f:
        json.dump(job, f, indent=1, sort_keys=True)
    with open(yaml_path, "w") as f:
        f.write(f"# PIPELINE DEFINITION\n# Name: {config.pipeline_name}\n")
        yaml.safe_dump(job["pipelineSpec"], f, sort_keys=True)
    return [json_path, yaml_path]


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = parse_args(argv)
        config = build_config(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if config.training.strategy == "multi_worker":
        print("note: --strategy multi_worker: the training tasks fail unless their pods get "
              "TF_CONFIG (see 'Running on Kubeflow Pipelines' in README.md)", file=sys.stderr)
    json_path, yaml_path = compile_pipeline(config, args.image, args.output_dir)
    print(f"Wrote {json_path} (PipelineJob) and {yaml_path} (upload in the Kubeflow "
          f"Pipelines UI); image {args.image}, pipeline root {config.pipeline_root}")
    if args.dry_run:
        try:
            dry_run(json_path, os.path.abspath(args.dry_run))
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    return 0


def dry_run(json_path: str, directory: str) -> None:
    """Executes the compiled pipeline as the backend would and prints the run table."""
    from pipeline import kubeflow_dry_run, report

    started = time.time()
    runs = kubeflow_dry_run.execute(json_path, directory)
    summary = report.build_summary(kubeflow_dry_run.execution_records(runs))
    print()
    print(report.terminal_text(summary))
    print(f"Dry run finished in {time.time() - started:.1f} s; task folders and logs: "
          f"{directory}")


if __name__ == "__main__":
    sys.exit(main())
