"""Distiller: the smallest student within the accuracy budget, distilled or from scratch.

Inputs: the teacher Model (our artifact layout, see modules.models.export), the Examples, and
optionally the Tuner's best hyperparameters (students reuse the tuned batch size and
activation) and the Baselines' linear model. It searches the student's size (the smallest
within budget), then alpha and temperature, and trains the chosen size from scratch on the
labels alone as the control; a linear student's control is the linear baseline itself
(`modules.compression.distillation.search_student`). Outputs: `student`, the better of the best
distilled
student and the control (what the Pruner starts from); `student_scratch`, the control; both
with the teacher's serving signatures and preprocessing; and a `metrics` report of every
candidate tried and which one won by how much.
"""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter

from components.artifacts import JsonReport
from components.base import RUN_SETTINGS, json_parameter
from components.distiller import executor
from modules.settings import Blessing, Distillation, RunSettings


class DistillerSpec(types.ComponentSpec):
    PARAMETERS = {RUN_SETTINGS: json_parameter(), Distillation.KEY: json_parameter(),
                  Blessing.KEY: json_parameter()}
    INPUTS = {
        "teacher": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "hyperparameters": ChannelParameter(type=standard_artifacts.HyperParameters,
                                            optional=True),
        "linear": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        "student": ChannelParameter(type=standard_artifacts.Model),
        "student_scratch": ChannelParameter(type=standard_artifacts.Model),
        "metrics": ChannelParameter(type=JsonReport),
    }


class Distiller(base_component.BaseComponent):
    SPEC_CLASS = DistillerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, teacher: types.BaseChannel, examples: types.BaseChannel,
                 run_settings: RunSettings, config: Distillation, budget: Blessing,
                 hyperparameters: Optional[types.BaseChannel] = None,
                 linear: Optional[types.BaseChannel] = None):
        super().__init__(spec=DistillerSpec(
            teacher=teacher, examples=examples, hyperparameters=hyperparameters, linear=linear,
            **{RUN_SETTINGS: run_settings.to_json(), Distillation.KEY: config.to_json(),
               Blessing.KEY: budget.to_json()},
            student=types.Channel(type=standard_artifacts.Model),
            student_scratch=types.Channel(type=standard_artifacts.Model),
            metrics=types.Channel(type=JsonReport)))
