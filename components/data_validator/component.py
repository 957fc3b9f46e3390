"""DataValidator: TFX's ExampleValidator that can stop the pipeline on anomalies.

TFX's ExampleValidator records anomalies and lets the pipeline go on. Against a curated
schema (`--schema`), anomalies mean the data drifted from what the model was built for, so
training must not start: with `fail_on_anomalies` the component fails, naming each feature.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.data_validator import executor


class DataValidatorSpec(types.ComponentSpec):
    PARAMETERS = {
        "exclude_splits": ExecutionParameter(type=str, optional=True),
        "fail_on_anomalies": ExecutionParameter(type=int),
    }
    INPUTS = {
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
    }
    OUTPUTS = {
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
    }


class DataValidator(base_component.BaseComponent):
    SPEC_CLASS = DataValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, statistics: types.BaseChannel, schema: types.BaseChannel,
                 fail_on_anomalies: bool = False):
        super().__init__(spec=DataValidatorSpec(
            statistics=statistics, schema=schema, fail_on_anomalies=int(fail_on_anomalies),
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies)))
