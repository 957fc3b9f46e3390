"""Artifact types of our components that TFX has no standard type for."""
import os
from typing import Any

from tfx.types.artifact import Artifact

from modules import fileio

REPORT_FILE = "report.json"


class JsonReport(Artifact):
    """A JSON document (`report.json`): metrics, sparsity, evaluation results."""
    TYPE_NAME = "components.JsonReport"  # Kubeflow V2 needs an importable "module.Class"


def write_report(artifact: Artifact, payload: Any) -> str:
    path = os.path.join(artifact.uri, REPORT_FILE)
    fileio.write_json(path, payload)
    return path


def read_report(uri: str) -> Any:
    return fileio.read_json(os.path.join(uri, REPORT_FILE))
