"""Distiller: the smallest student within the accuracy budget, distilled or from scratch.

Inputs: the teacher Model (our artifact layout, see modules.export), the Examples, and
optionally the Tuner's best hyperparameters (students reuse the tuned batch size and
activation). It searches the student's size from tiny upwards, then alpha and temperature,
and trains the chosen size from scratch on the labels alone as the control
(`modules.distillation.search_student`). Outputs: `student`, the better of the best distilled
student and the control (what the Pruner starts from); `student_scratch`, the control; both
with the teacher's serving signatures and preprocessing; and a `metrics` report of every
candidate tried and which one won by how much.
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
        # Unset: searched (DISTILLATION_GRID, STUDENT_SIZES); set: fixed.
        "alpha": ExecutionParameter(type=float, optional=True),
        "temperature": ExecutionParameter(type=float, optional=True),
        "student_layers": ExecutionParameter(type=int, optional=True),
        "student_units": ExecutionParameter(type=int, optional=True),
        "epochs": ExecutionParameter(type=int),
        # The blessing budget the student must stay within (its share: SEARCH_BUDGET_SHARE).
        "max_auc_drop": ExecutionParameter(type=float),
        "max_accuracy_drop": ExecutionParameter(type=float),
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


def _maybe(kind, value):
    return None if value is None else kind(value)


class Distiller(base_component.BaseComponent):
    SPEC_CLASS = DistillerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, teacher: types.BaseChannel, examples: types.BaseChannel,
                 custom_config: Dict[str, Any],
                 hyperparameters: Optional[types.BaseChannel] = None, *,
                 alpha: Optional[float] = None, temperature: Optional[float] = None,
                 student_layers: Optional[int] = None, student_units: Optional[int] = None,
                 epochs: int = 20, max_auc_drop: float = 0.005,
                 max_accuracy_drop: float = 0.01):
        super().__init__(spec=DistillerSpec(
            teacher=teacher, examples=examples, hyperparameters=hyperparameters,
            alpha=_maybe(float, alpha), temperature=_maybe(float, temperature),
            student_layers=_maybe(int, student_layers), student_units=_maybe(int, student_units),
            epochs=int(epochs), max_auc_drop=float(max_auc_drop),
            max_accuracy_drop=float(max_accuracy_drop),
            custom_config=json.dumps(custom_config, sort_keys=True),
            student=types.Channel(type=standard_artifacts.Model),
            student_scratch=types.Channel(type=standard_artifacts.Model),
            metrics=types.Channel(type=JsonReport)))
