"""Baselines: the standard models every run is measured against, and the teacher's choice.

Inputs: the Trainer's tuned network (our Model layout, see modules.models.export) and the Examples.
It trains a linear model (logistic regression by our loop, its weight decay chosen on
validation) and gradient-boosted trees (TensorFlow Decision Forests, on a bounded sample of
the training rows), both on the network's preprocessed features (`modules.learning.baselines`).
Outputs: `linear` and `trees` (Model artifacts the Evaluator scores like every candidate),
`teacher` (the linear model, unless the network or the trees have a lower validation log
loss beyond noise, then the lower of those: what the Distiller, Pruner and Evaluator take as
the teacher) and a `report` of the validation figures and the choice.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter

from components.artifacts import JsonReport
from components.base import RUN_SETTINGS, json_parameter
from components.baselines import executor
from modules.settings import Baselines as BaselinesStage
from modules.settings import RunSettings


class BaselinesSpec(types.ComponentSpec):
    PARAMETERS = {RUN_SETTINGS: json_parameter(), BaselinesStage.KEY: json_parameter()}
    INPUTS = {
        "network": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        "linear": ChannelParameter(type=standard_artifacts.Model),
        "trees": ChannelParameter(type=standard_artifacts.Model),
        "teacher": ChannelParameter(type=standard_artifacts.Model),
        "report": ChannelParameter(type=JsonReport),
    }


class Baselines(base_component.BaseComponent):
    SPEC_CLASS = BaselinesSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, network: types.BaseChannel, examples: types.BaseChannel,
                 run_settings: RunSettings, config: BaselinesStage):
        super().__init__(spec=BaselinesSpec(
            network=network, examples=examples,
            **{RUN_SETTINGS: run_settings.to_json(), BaselinesStage.KEY: config.to_json()},
            linear=types.Channel(type=standard_artifacts.Model),
            trees=types.Channel(type=standard_artifacts.Model),
            teacher=types.Channel(type=standard_artifacts.Model),
            report=types.Channel(type=JsonReport)))
