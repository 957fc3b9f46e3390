"""Defaults of the pipeline, in one place. The runners turn command-line flags into a
`PipelineConfig`; `create_pipeline` turns that into the DAG."""
import dataclasses
import os
from typing import Dict, Optional, Tuple

PIPELINE_NAME = "tfx-compress"
DEFAULT_LABEL = "big_tipper"
DEFAULT_DROP = ("tips",)  # determines big_tipper: a feature made of the label leaks it
TAXI_CSV = os.path.join("examples", "chicago_taxi_pipeline", "data", "big_tipper_label",
                        "data.csv")
TRAIN_EVAL_BUCKETS = (4, 1)  # 80% train, 20% eval, by hash of the row
TUNERS = ("random", "hyperband", "bayesian", "none")
QUANTIZATION_MODES = ("dynamic", "float16", "int8", "qat", "pqat")

# Beam on one machine: in-process is fastest for data this size (multi_processing costs
# more than it saves on 2 cores); --beam-arg adds to or overrides these.
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


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
    enable_cache: bool = True
    seed: int = 42
    strategy: str = "none"
    verbose: bool = True
    # Tuner
    tuner: str = "hyperband"
    trials: int = 10
    tuner_max_epochs: int = 9
    search_space: Optional[Dict[str, object]] = None  # None: modules.tuner.DEFAULT_SEARCH_SPACE
    # Teacher (Trainer): ModelConfig fields fixed on the command line, e.g. epochs, precision
    model_overrides: Dict[str, object] = dataclasses.field(default_factory=dict)
    # Distiller
    # None: searched (modules.distillation STUDENT_SIZES and DISTILLATION_GRID)
    student_layers: Optional[int] = None
    student_units: Optional[int] = None
    alpha: Optional[float] = None
    temperature: Optional[float] = None
    distill_epochs: int = 20
    # Pruner and Quantizer
    sparsity: float = 0.8
    prune_epochs: int = 6
    quantization_modes: Tuple[str, ...] = ("dynamic", "float16", "int8")
    # Evaluator and Pusher
    # Compare with the last blessed model (TFX Resolver). The open-source Kubeflow Pipelines
    # backend cannot run resolvers: there the thresholds alone decide.
    resolve_baseline: bool = True
    min_auc: float = 0.9
    max_auc_drop: float = 0.005
    max_accuracy_drop: float = 0.01
    deploy_mode: str = "int8"  # the TFLite model that is blessed and pushed
    slice_features: Tuple[str, ...] = ("payment_type",)  # TFMA slices, where the column exists


def quick_overrides() -> Dict[str, object]:
    """The --quick preset: a smoke run in well under a minute of training."""
    return {"trials": 2, "tuner_max_epochs": 2, "distill_epochs": 12, "prune_epochs": 4,
            "model_overrides": {"epochs": 3}}
