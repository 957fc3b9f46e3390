"""Artifact types of our components that TFX has no standard type for."""
import json
import os
from typing import Any

from tfx.types.artifact import Artifact

REPORT_FILE = "report.json"


class JsonReport(Artifact):
    """A JSON document (`report.json`): metrics, sparsity, evaluation results."""
    TYPE_NAME = "components.JsonReport"  # Kubeflow V2 needs an importable "module.Class"


def write_report(artifact: Artifact, payload: Any) -> str:
    path = os.path.join(artifact.uri, REPORT_FILE)
    os.makedirs(artifact.uri, exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=float)
    return path


def read_report(uri: str) -> Any:
    with open(os.path.join(uri, REPORT_FILE)) as f:
        return json.load(f)
