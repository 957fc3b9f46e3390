"""TFX's Tuner component, with one more input (StatisticsGen's statistics: the preprocessing
is fitted from them, as in `components.trainer`) and an executor that also records every
trial for the report."""
from typing import Any, Dict, Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

from components.trainer.executor import STATISTICS_KEY
from components.tuner import executor


class TunerSpec(standard_component_specs.TunerSpec):
    INPUTS = {**standard_component_specs.TunerSpec.INPUTS,
              STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics)}


class Tuner(base_component.BaseComponent):
    """TFX Tuner (`tuner_fn`); its `tuner_results` output also holds trials.json: every
    trial's hyperparameters, objective, status and epochs actually trained."""
    SPEC_CLASS = TunerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, schema: types.BaseChannel,
                 statistics: types.BaseChannel, tuner_fn: str,
                 train_args: Optional[trainer_pb2.TrainArgs] = None,
                 eval_args: Optional[trainer_pb2.EvalArgs] = None,
                 custom_config: Optional[Dict[str, Any]] = None):
        super().__init__(spec=TunerSpec(
            examples=examples, schema=schema, statistics=statistics, tuner_fn=tuner_fn,
            train_args=train_args or trainer_pb2.TrainArgs(),
            eval_args=eval_args or trainer_pb2.EvalArgs(),
            custom_config=json_utils.dumps(custom_config),
            best_hyperparameters=types.Channel(type=standard_artifacts.HyperParameters),
            tuner_results=types.Channel(type=standard_artifacts.TunerResults)))
