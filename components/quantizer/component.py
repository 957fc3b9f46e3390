"""Quantizer: TFLite models of a Keras model in the modes a user picks (modules.quantization).

Inputs: the `model` to convert (the pruned student) and the Examples (representative rows of
the train split for int8 calibration, the eval split to check every result). Output: a Model
artifact with one folder per mode (`<mode>/model.tflite` and `<mode>/contract.json`, the
input contract), and a `metrics` report. Every .tflite is loaded and evaluated by the TFLite
interpreter here; one that fails to convert, load or run fails the component.
"""
import json
from typing import Any, Dict, Sequence

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.artifacts import JsonReport
from components.quantizer import executor


class QuantizerSpec(types.ComponentSpec):
    PARAMETERS = {
        "modes": ExecutionParameter(type=str),  # JSON list, see modules.quantization.MODES
        "qat_epochs": ExecutionParameter(type=int),
        "custom_config": ExecutionParameter(type=str),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        "quantized_model": ChannelParameter(type=standard_artifacts.Model),
        "metrics": ChannelParameter(type=JsonReport),
    }


class Quantizer(base_component.BaseComponent):
    SPEC_CLASS = QuantizerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel,
                 custom_config: Dict[str, Any], *,
                 modes: Sequence[str] = ("dynamic", "float16", "int8"), qat_epochs: int = 2):
        super().__init__(spec=QuantizerSpec(
            model=model, examples=examples, modes=json.dumps(list(modes)),
            qat_epochs=int(qat_epochs), custom_config=json.dumps(custom_config, sort_keys=True),
            quantized_model=types.Channel(type=standard_artifacts.Model),
            metrics=types.Channel(type=JsonReport)))
