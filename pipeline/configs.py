"""What a runner decides (paths, Beam, caching) composed with the stage configs of
`modules.settings`, which own every setting of the steps. `create_pipeline` turns a
`PipelineConfig` into the DAG."""
import dataclasses
import os
from typing import Optional, Sequence, Tuple

from modules.settings import (Blessing, Csv, Distillation, Pruning, Quantization,
                              RunSettings, Teacher, Training, Tuning)

PIPELINE_NAME = "tfx-compress"
DEFAULT_LABEL = "big_tipper"
DEFAULT_DROP = ("tips",)  # determines big_tipper: a feature made of the label leaks it
TAXI_CSV = os.path.join("examples", "chicago_taxi_pipeline", "data", "big_tipper_label",
                        "data.csv")
TRAIN_EVAL_BUCKETS = (4, 1)  # 80% train, 20% eval, by hash of the row

# Beam on one machine (the DirectRunner): in-process is fastest for small inputs (worker
# processes cost more than they save). From LARGE_INPUT_BYTES of CSV on, CsvExampleGen and
# StatisticsGen, which read every row, run on one worker process per core
# (`data_beam_args`, their component-level Beam args); the Evaluator's TFMA reads a bounded
# sample and stays in-process. --beam-arg adds to or overrides these (a Beam mode or runner
# given there replaces the large-input choice); other runners (Dataflow, Flink, Spark) are
# chosen with it too (README).
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
LARGE_INPUT_BYTES = 32 * 2 ** 20
_RUNNER_ARGS = ("--runner", "--direct_running_mode", "--direct_num_workers")


def data_beam_args(input_bytes: int, user_args: Sequence[str] = ()) -> Tuple[str, ...]:
    """CsvExampleGen's and StatisticsGen's own Beam args for `input_bytes` of CSV here: a
    worker process per core for large inputs, unless `user_args` chose the runner or mode."""
    if input_bytes < LARGE_INPUT_BYTES or any(
            arg.split("=", 1)[0] in _RUNNER_ARGS for arg in user_args):
        return ()
    return ("--direct_running_mode=multi_processing",
            f"--direct_num_workers={os.cpu_count() or 1}")


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
    metadata_path: Optional[str] = None  # ML Metadata SQLite file; None on Kubeflow
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
    training: Training = Training()
    tuning: Tuning = Tuning()
    teacher: Teacher = Teacher()
    distillation: Distillation = Distillation()
    pruning: Pruning = Pruning()
    quantization: Quantization = Quantization()
    blessing: Blessing = Blessing()

    @property
    def run_settings(self) -> RunSettings:
        """What every model component is told."""
        return RunSettings(label=self.label, drop=tuple(self.drop), training=self.training,
                           work_dir=self.work_dir, verbose=self.verbose)
