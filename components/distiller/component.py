"""Distiller: trains a small student from the teacher's softened logits, with a control.

Inputs: the teacher Model (our artifact layout, see modules.export), the Examples, and
optionally the Tuner's best hyperparameters (the student reuses the tuned learning rate,
batch size and activation). Outputs: the distilled `student`, the `student_scratch` control
(same architecture, budget and seed, labels only), both with the teacher's serving signatures
and preprocessing, and a `metrics` report comparing teacher, control and student.
"""
import json
from typing import Any, Dict, Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.artifacts import JsonReport
from components.distiller import executor


class DistillerSpec(types.ComponentSpec):
    PARAMETERS = {
        "alpha": ExecutionParameter(type=float),
        "temperature": ExecutionParameter(type=float),
        "student_layers": ExecutionParameter(type=int),
        "student_units": ExecutionParameter(type=int),
        "epochs": ExecutionParameter(type=int),
        "custom_config": ExecutionParameter(type=str),
    }
    INPUTS = {
        "teacher": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "hyperparameters": ChannelParameter(type=standard_artifacts.HyperParameters,
                                            optional=True),
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
                 custom_config: Dict[str, Any],
                 hyperparameters: Optional[types.BaseChannel] = None, *, alpha: float = 0.3,
                 temperature: float = 4.0, student_layers: int = 1, student_units: int = 16,
                 epochs: int = 20):
        super().__init__(spec=DistillerSpec(
            teacher=teacher, examples=examples, hyperparameters=hyperparameters,
            alpha=float(alpha), temperature=float(temperature),
            student_layers=int(student_layers), student_units=int(student_units),
            epochs=int(epochs), custom_config=json.dumps(custom_config, sort_keys=True),
            student=types.Channel(type=standard_artifacts.Model),
            student_scratch=types.Channel(type=standard_artifacts.Model),
            metrics=types.Channel(type=JsonReport)))
