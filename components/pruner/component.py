"""Pruner: magnitude pruning (Model Optimization Toolkit) of a model, fine-tuned with our loop.

Inputs: the `model` to prune (the Distiller's student), the Examples and, optionally, the
`teacher`: when the student was distilled, fine-tuning keeps distilling from it with the
student's own alpha and temperature (from its model_info.json). Outputs: the pruned
`model` (stripped of pruning wrappers, same serving signatures) and a per-layer `sparsity`
report.
"""
import json
from typing import Any, Dict, Optional

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
        "custom_config": ExecutionParameter(type=str),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "teacher": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        "pruned_model": ChannelParameter(type=standard_artifacts.Model),
        "sparsity": ChannelParameter(type=JsonReport),
    }


class Pruner(base_component.BaseComponent):
    SPEC_CLASS = PrunerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel,
                 custom_config: Dict[str, Any], teacher: Optional[types.BaseChannel] = None, *,
                 target_sparsity: float = 0.8, epochs: int = 6):
        super().__init__(spec=PrunerSpec(
            model=model, examples=examples, teacher=teacher,
            target_sparsity=float(target_sparsity), epochs=int(epochs),
            custom_config=json.dumps(custom_config, sort_keys=True),
            pruned_model=types.Channel(type=standard_artifacts.Model),
            sparsity=types.Channel(type=JsonReport)))
