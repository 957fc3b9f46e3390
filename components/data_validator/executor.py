"""Validates statistics against the schema with TFX's executor, then fails on anomalies."""
import os
from typing import Any, Dict, List

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.components.example_validator import executor as tfx_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from modules.errors import UserError


class DataAnomaliesError(UserError):
    """The data does not match the curated schema."""


def describe_anomalies(anomalies_by_split: Dict[str, Any]) -> str:
    """One line naming every anomalous feature and what is wrong with it."""
    parts = []
    for split, anomalies in sorted(anomalies_by_split.items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            parts.append(f"{feature} [{split}]: {info.short_description or info.description}")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            parts.append(f"<dataset> [{split}]: {info.short_description or info.description}")
    return "; ".join(parts)


class Executor(tfx_executor.Executor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]):
        result = super().Do(input_dict, output_dict, exec_properties)
        found = {split: anomalies for split, anomalies in read_anomalies(
                     output_dict[standard_component_specs.ANOMALIES_KEY]).items()
                 if anomalies.anomaly_info or anomalies.HasField("dataset_anomaly_info")}
        if found and exec_properties.get("fail_on_anomalies"):
            raise DataAnomaliesError(
                "the data does not match the schema given with --schema: "
                f"{describe_anomalies(found)}. Fix the data or update the curated schema.")
        return result


def read_anomalies(artifacts: List[types.Artifact]) -> Dict[str, anomalies_pb2.Anomalies]:
    """Each split's Anomalies, as TFX's ExampleValidator wrote them into its artifact."""
    artifact = artifact_utils.get_single_instance(artifacts)
    return {split: anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(os.path.join(
                artifact_utils.get_split_uri(artifacts, split), tfx_executor.DEFAULT_FILE_NAME)))
            for split in artifact_utils.decode_split_names(artifact.split_names)}
