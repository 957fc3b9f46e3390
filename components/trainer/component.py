"""TFX's Trainer (GenericExecutor and a `run_fn`), with one more input: StatisticsGen's
statistics, from which `modules.learning.trainer` fits the preprocessing (computed on Beam, not in
the Trainer's memory). The stock Trainer has no such input."""
from typing import Any, Dict, Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

from components.trainer import executor

STATISTICS = executor.STATISTICS_KEY


class TrainerSpec(standard_component_specs.TrainerSpec):
    INPUTS = {**standard_component_specs.TrainerSpec.INPUTS,
              STATISTICS: ChannelParameter(type=standard_artifacts.ExampleStatistics)}


class Trainer(base_component.BaseComponent):
    """The Trainer: `run_fn` trains on `examples`, preprocessed from `statistics`."""
    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, schema: types.BaseChannel,
                 statistics: types.BaseChannel, run_fn: str,
                 hyperparameters: Optional[types.BaseChannel] = None,
                 train_args: Optional[trainer_pb2.TrainArgs] = None,
                 eval_args: Optional[trainer_pb2.EvalArgs] = None,
                 custom_config: Optional[Dict[str, Any]] = None):
        super().__init__(spec=TrainerSpec(
            examples=examples, schema=schema, statistics=statistics,
            hyperparameters=hyperparameters, run_fn=run_fn,
            train_args=train_args or trainer_pb2.TrainArgs(),
            eval_args=eval_args or trainer_pb2.EvalArgs(),
            custom_config=json_utils.dumps(custom_config),
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun)))
