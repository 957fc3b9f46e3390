"""Pruner: magnitude pruning (Model Optimization Toolkit) of a model, fine-tuned with our loop.

Inputs: the `model` to prune (the Distiller's student), the Examples and the `teacher`: the
pruned model must stay within `PRUNE_BUDGET_SHARE` of the blessing budget against it, or a
lower sparsity is tried (`modules.pruning.prune_within_budget`), and when the student was
distilled, fine-tuning keeps distilling from it with the student's own alpha and temperature
(from its model_info.json). Outputs: the pruned
`model` (stripped of pruning wrappers, same serving signatures) and a per-layer `sparsity`
report.
"""
import json
from typing import Any, Dict

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.artifacts import JsonReport
from components.pruner import executor


class PrunerSpec(types.ComponentSpec):
    PARAMETERS = {
        "target_sparsity": ExecutionParameter(type=float),
        "epochs": ExecutionParameter(type=int),
        "max_auc_drop": ExecutionParameter(type=float),
        "max_accuracy_drop": ExecutionParameter(type=float),
        "custom_config": ExecutionParameter(type=str),
    }
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
                 custom_config: Dict[str, Any], teacher: types.BaseChannel, *,
                 target_sparsity: float = 0.8, epochs: int = 6, max_auc_drop: float = 0.005,
                 max_accuracy_drop: float = 0.01):
        super().__init__(spec=PrunerSpec(
            model=model, examples=examples, teacher=teacher,
            target_sparsity=float(target_sparsity), epochs=int(epochs),
            max_auc_drop=float(max_auc_drop), max_accuracy_drop=float(max_accuracy_drop),
            custom_config=json.dumps(custom_config, sort_keys=True),
            pruned_model=types.Channel(type=standard_artifacts.Model),
            sparsity=types.Channel(type=JsonReport)))
