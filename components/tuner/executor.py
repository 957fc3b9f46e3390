"""TFX's tuner executor, handing `tuner_fn` the statistics input, plus the trials table
(modules.learning.tuner.trials_table)."""
from typing import Any, Dict, List

from tfx import types
from tfx.components.tuner import executor as tfx_executor
from tfx.types import artifact_utils, standard_component_specs

from components.trainer.executor import with_statistics_uri
from modules.learning.tuner import write_trials_table


class Executor(tfx_executor.Executor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]):
        tuner = tfx_executor.search(input_dict, with_statistics_uri(input_dict, exec_properties),
                                    self._get_tmp_dir())
        tfx_executor.write_best_hyperparameters(tuner, output_dict)
        write_trials_table(tuner, artifact_utils.get_single_uri(
            output_dict[standard_component_specs.TUNER_RESULTS_KEY]))
