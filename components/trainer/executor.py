"""TFX's GenericExecutor, handing `run_fn` the URI of the statistics input."""
import json
from typing import Any, Dict, List

from tfx import types
from tfx.components.trainer import executor as tfx_executor
from tfx.types import artifact_utils, standard_component_specs

from modules.learning.trainer import STATISTICS_URI

STATISTICS_KEY = "statistics"


def with_statistics_uri(input_dict: Dict[str, List[types.Artifact]],
                        exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    """`exec_properties` whose custom_config also holds the statistics artifact's URI, which
    fn_args (built by TFX from the stock inputs only) would not carry."""
    config = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
                        or "null") or {}
    config[STATISTICS_URI] = artifact_utils.get_single_uri(input_dict[STATISTICS_KEY])
    return {**exec_properties, standard_component_specs.CUSTOM_CONFIG_KEY: json.dumps(config)}


class Executor(tfx_executor.GenericExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]):
        super().Do(input_dict, output_dict, with_statistics_uri(input_dict, exec_properties))
