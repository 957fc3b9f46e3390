"""What the executors of our model components share: the run settings and the stage config
parsed, the input model and the examples opened once (on first use), handed to the step."""
import functools
from typing import Any, ClassVar, Dict, List, Optional, Type

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.types.component_spec import ExecutionParameter

from modules import memory
from modules.learning import training
from modules.models import export
from modules.reading import data
from modules.settings import Blessing, RunSettings, Stage

RUN_SETTINGS = RunSettings.KEY  # the execution property holding RunSettings (JSON)


def json_parameter() -> ExecutionParameter:
    """An execution property holding a stage config or the run settings, as JSON."""
    return ExecutionParameter(type=str)


class StepInputs:
    """Everything a step starts from. `model` (input `model_key`) and `prepared` (the train
    split and the `held_out` split, prepared exactly as that model was trained) are loaded on
    first use, once."""

    def __init__(self, settings: RunSettings, stage: Optional[Stage], model_key: str,
                 input_dict: Dict[str, List[types.Artifact]],
                 output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any],
                 held_out: str = data.VALIDATION):
        self.settings, self.stage, self.model_key = settings, stage, model_key
        self.held_out = held_out
        self.input_dict, self.output_dict = input_dict, output_dict
        self.exec_properties = exec_properties
        self._models: Dict[str, export.ExportedModel] = {}

    def uri(self, key: str) -> str:
        return artifact_utils.get_single_uri(self.input_dict[key])

    def output_uri(self, key: str) -> str:
        return artifact_utils.get_single_uri(self.output_dict[key])

    def load(self, key: str) -> export.ExportedModel:
        """The Model artifact of input `key`, loaded once."""
        if key not in self._models:
            self._models[key] = export.load_model(self.uri(key))
        return self._models[key]

    def unload_models(self) -> None:
        """Lets the loaded models go (the prepared data stays)."""
        self._models.clear()

    @property
    def model(self) -> export.ExportedModel:
        return self.load(self.model_key)

    @functools.cached_property
    def prepared(self) -> training.PreparedData:
        return self.prepare_like(self.model)

    def prepare_like(self, model: export.ExportedModel) -> training.PreparedData:
        """The train and held-out splits of the examples, prepared as `model` was trained."""
        return training.prepare_like(model, self.input_dict["examples"],
                                     self.settings.training.cache_mb,
                                     self.settings.work_subdir("label_counts"), self.held_out)

    @property
    def budget(self) -> Blessing:
        """The blessing budget, for steps that compress within it."""
        return Blessing.from_json(self.exec_properties[Blessing.KEY])


class StepExecutor(base_executor.BaseExecutor):
    """Parses `run_settings` and the stage config (`STAGE.KEY`) and calls `run` with the
    step's inputs; the model of input `MODEL_KEY` is the one the examples are prepared like.
    Steps score on the `HELD_OUT` split: validation, except the Evaluator's test."""
    STAGE: ClassVar[Optional[Type[Stage]]] = None
    MODEL_KEY: ClassVar[str] = "model"
    HELD_OUT: ClassVar[str] = data.VALIDATION

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]):
        settings = RunSettings.from_json(exec_properties[RUN_SETTINGS])
        stage = self.STAGE.from_json(exec_properties[self.STAGE.KEY]) if self.STAGE else None
        # A component in its own process (Kubeflow) has imported what it runs by now.
        with memory.startup_frozen():
            self.run(StepInputs(settings, stage, self.MODEL_KEY, input_dict, output_dict,
                                exec_properties, self.HELD_OUT))

    def run(self, step: StepInputs) -> None:
        raise NotImplementedError
