"""Evaluator: every candidate on the same eval split through one path, then the blessing.

Candidates: the teacher, the student from scratch, the distilled student, the pruned student
(SavedModels) and each TFLite model of the Quantizer. All are measured by
`modules.evaluation` (metrics, sizes, latency); TFMA adds per-slice metrics of the SavedModels.
The deployable candidate (the `deploy_mode` TFLite model with its pruned SavedModel) is blessed
by `modules.blessing.decide`, against the teacher and the last blessed model of this pipeline
(`baseline`, resolved by TFX's LatestBlessedModelStrategy and re-evaluated on this eval split;
when the baseline is the candidate itself, the evaluation that blessed it, kept in the work
dir, is reused).
"""
import json
from typing import Any, Dict, Optional, Sequence

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.artifacts import JsonReport
from components.evaluator import executor
from components.evaluator.executor import CANDIDATE_MODELS


class EvaluatorSpec(types.ComponentSpec):
    PARAMETERS = {
        "min_auc": ExecutionParameter(type=float),
        "max_auc_drop": ExecutionParameter(type=float),
        "max_accuracy_drop": ExecutionParameter(type=float),
        "deploy_mode": ExecutionParameter(type=str),
        "slice_features": ExecutionParameter(type=str),  # JSON list
        "custom_config": ExecutionParameter(type=str),
    }
    INPUTS = {
        **{name: ChannelParameter(type=standard_artifacts.Model) for name in CANDIDATE_MODELS},
        "quantized": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "baseline": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        "evaluation": ChannelParameter(type=JsonReport),
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class Evaluator(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, *, teacher: types.BaseChannel, student_scratch: types.BaseChannel,
                 student: types.BaseChannel, pruned: types.BaseChannel,
                 quantized: types.BaseChannel, examples: types.BaseChannel,
                 custom_config: Dict[str, Any], baseline: Optional[types.BaseChannel] = None,
                 min_auc: float = 0.9, max_auc_drop: float = 0.005,
                 max_accuracy_drop: float = 0.01, deploy_mode: str = "int8",
                 slice_features: Sequence[str] = ("payment_type",)):
        super().__init__(spec=EvaluatorSpec(
            teacher=teacher, student_scratch=student_scratch, student=student, pruned=pruned,
            quantized=quantized, examples=examples, baseline=baseline,
            min_auc=float(min_auc), max_auc_drop=float(max_auc_drop),
            max_accuracy_drop=float(max_accuracy_drop), deploy_mode=deploy_mode,
            slice_features=json.dumps(list(slice_features)),
            custom_config=json.dumps(custom_config, sort_keys=True),
            evaluation=types.Channel(type=JsonReport),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing)))
