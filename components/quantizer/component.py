"""Quantizer: TFLite models of a Keras model in the modes a user picks
(modules.compression.quantization).

Inputs: the `model` to convert (the pruned student) and the Examples (representative rows of
the train split for int8 calibration, the validation split to check every result). Output: a Model
artifact with one folder per mode (`<mode>/model.tflite` and `<mode>/contract.json`, the
input contract), and a `metrics` report. Every .tflite is loaded and evaluated by the TFLite
interpreter here; one that fails to convert, load or run fails the component.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter

from components.artifacts import JsonReport
from components.base import RUN_SETTINGS, json_parameter
from components.quantizer import executor
from modules.settings import Quantization, RunSettings


class QuantizerSpec(types.ComponentSpec):
    PARAMETERS = {RUN_SETTINGS: json_parameter(), Quantization.KEY: json_parameter()}
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
                 run_settings: RunSettings, config: Quantization):
        super().__init__(spec=QuantizerSpec(
            model=model, examples=examples,
            **{RUN_SETTINGS: run_settings.to_json(), Quantization.KEY: config.to_json()},
            quantized_model=types.Channel(type=standard_artifacts.Model),
            metrics=types.Channel(type=JsonReport)))
