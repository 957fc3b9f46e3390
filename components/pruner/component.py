"""Pruner: magnitude pruning (Model Optimization Toolkit) of a model, fine-tuned with our loop.

Inputs: the `model` to prune (the Distiller's student), the Examples and the `teacher`: the
pruned model must stay within `PRUNE_BUDGET_SHARE` of the blessing budget against it, or a
lower sparsity is tried (`modules.compression.pruning.prune_within_budget`), and when the student
was
distilled, fine-tuning keeps distilling from it with the student's own alpha and temperature
(from its model_info.json). Outputs: the pruned
`model` (stripped of pruning wrappers, same serving signatures) and a per-layer `sparsity`
report.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter

from components.artifacts import JsonReport
from components.base import RUN_SETTINGS, json_parameter
from components.pruner import executor
from modules.settings import Blessing, Pruning, RunSettings


class PrunerSpec(types.ComponentSpec):
    PARAMETERS = {RUN_SETTINGS: json_parameter(), Pruning.KEY: json_parameter(),
                  Blessing.KEY: json_parameter()}
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "teacher": ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {
        "pruned_model": ChannelParameter(type=standard_artifacts.Model),
        "sparsity": ChannelParameter(type=JsonReport),
    }


class Pruner(base_component.BaseComponent):
    SPEC_CLASS = PrunerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel,
                 teacher: types.BaseChannel, run_settings: RunSettings, config: Pruning,
                 budget: Blessing):
        super().__init__(spec=PrunerSpec(
            model=model, examples=examples, teacher=teacher,
            **{RUN_SETTINGS: run_settings.to_json(), Pruning.KEY: config.to_json(),
               Blessing.KEY: budget.to_json()},
            pruned_model=types.Channel(type=standard_artifacts.Model),
            sparsity=types.Channel(type=JsonReport)))
