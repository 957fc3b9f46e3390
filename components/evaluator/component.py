"""Evaluator: every candidate on the test split, which no other step reads, through one path,
then the blessing.

Candidates: the teacher (the Baselines' choice), those of the tuned network, the linear model
and the trees that are not the teacher, the student from scratch, the distilled student, the
pruned student (SavedModels) and each TFLite model of the Quantizer. All are measured by
`modules.verdict.evaluation` (metrics, sizes, latency); TFMA adds per-slice metrics of the
SavedModels.
The deployable candidate (the `deploy_mode` TFLite model with its pruned SavedModel) is blessed
by `modules.verdict.blessing.decide`, against the teacher and the last blessed model of this
pipeline
(`baseline`, resolved by TFX's LatestBlessedModelStrategy and re-evaluated on this test split;
when the baseline is the candidate itself, the evaluation that blessed it, kept in the work
dir, is reused).
"""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.artifacts import JsonReport
from components.base import RUN_SETTINGS, json_parameter
from components.evaluator import executor
from modules.settings import Blessing, RunSettings
from modules.verdict.candidates import SAVED_MODELS


class EvaluatorSpec(types.ComponentSpec):
    PARAMETERS = {
        RUN_SETTINGS: json_parameter(),
        Blessing.KEY: json_parameter(),
        "deploy_mode": ExecutionParameter(type=str),  # from the Quantization stage
    }
    INPUTS = {
        **{name: ChannelParameter(type=standard_artifacts.Model) for name in SAVED_MODELS},
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

    def __init__(self, *, teacher: types.BaseChannel, network: types.BaseChannel,
                 trees: types.BaseChannel, linear: types.BaseChannel,
                 student_scratch: types.BaseChannel,
                 student: types.BaseChannel, pruned: types.BaseChannel,
                 quantized: types.BaseChannel, examples: types.BaseChannel,
                 run_settings: RunSettings, config: Blessing, deploy_mode: str,
                 baseline: Optional[types.BaseChannel] = None):
        super().__init__(spec=EvaluatorSpec(
            teacher=teacher, network=network, trees=trees, linear=linear,
            student_scratch=student_scratch, student=student, pruned=pruned,
            quantized=quantized, examples=examples, baseline=baseline,
            **{RUN_SETTINGS: run_settings.to_json(), Blessing.KEY: config.to_json()},
            deploy_mode=deploy_mode,
            evaluation=types.Channel(type=JsonReport),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing)))
