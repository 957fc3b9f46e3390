"""Pusher: copies a blessed candidate to `<serving_dir>/<version>/`, atomically.

A version folder holds `saved_model/` (the pruned student's SavedModel), `model.tflite` (the
deployable TFLite model), `contract.json` (its input contract) and `model_card.json`
(metrics, hyperparameters, data and ML Metadata lineage ids). It is assembled in a temporary
folder and renamed into place, so a crash never leaves a half-pushed version, and an existing
version is never overwritten. Unblessed candidates are not pushed.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.artifacts import JsonReport
from components.pusher import executor


class PusherSpec(types.ComponentSpec):
    PARAMETERS = {
        "serving_dir": ExecutionParameter(type=str),
        "deploy_mode": ExecutionParameter(type=str),
    }
    INPUTS = {
        "quantized": ChannelParameter(type=standard_artifacts.Model),
        "pruned": ChannelParameter(type=standard_artifacts.Model),
        "teacher": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "evaluation": ChannelParameter(type=JsonReport),
    }
    OUTPUTS = {
        "pushed_model": ChannelParameter(type=standard_artifacts.PushedModel),
    }


class Pusher(base_component.BaseComponent):
    SPEC_CLASS = PusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, quantized: types.BaseChannel, pruned: types.BaseChannel,
                 teacher: types.BaseChannel, examples: types.BaseChannel,
                 blessing: types.BaseChannel, evaluation: types.BaseChannel, serving_dir: str,
                 deploy_mode: str = "int8"):
        super().__init__(spec=PusherSpec(
            quantized=quantized, pruned=pruned, teacher=teacher, examples=examples,
            blessing=blessing, evaluation=evaluation, serving_dir=serving_dir,
            deploy_mode=deploy_mode,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
