"""Validates statistics against the schema with TFX's executor, then fails on anomalies."""
from typing import Any, Dict, List

from tfx import types
from tfx.components.example_validator import executor as tfx_executor

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
        self._anomalies: Dict[str, Any] = {}
        result = super().Do(input_dict, output_dict, exec_properties)
        found = {split: a for split, a in self._anomalies.items()
                 if a.anomaly_info or a.HasField("dataset_anomaly_info")}
        if found and exec_properties.get("fail_on_anomalies"):
            raise DataAnomaliesError(
                "the data does not match the schema given with --schema: "
                f"{describe_anomalies(found)}. Fix the data or update the curated schema.")
        return result

    def _Validate(self, inputs, outputs):
        anomalies = super()._Validate(inputs, outputs)
        split = outputs[tfx_executor.labels.SCHEMA_DIFF_PATH].rstrip("/").split("Split-")[-1]
        self._anomalies[split] = anomalies
        return anomalies
