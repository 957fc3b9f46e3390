"""TFX's Tuner component, with an executor that also records every trial for the report."""
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components.tuner import executor


class Tuner(tfx.components.Tuner):
    """TFX Tuner; its `tuner_results` output also holds trials.json: every trial's
    hyperparameters, objective, status and epochs actually trained."""
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
