"""Pusher executor: assemble the version in a temporary folder, then rename it into place."""
import datetime
import logging
import os
import time
from typing import Any, Dict, List, Optional

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.artifacts import read_report
from modules import fileio
from modules.models import export
from modules.verdict import candidates

log = logging.getLogger(__name__)
TEMP_PREFIX = ".incomplete-"


def free_version(serving_dir: str) -> str:
    """A new version name: the Unix time in seconds, bumped while a folder has it."""
    version = int(time.time())
    while fileio.exists(os.path.join(serving_dir, str(version))):
        version += 1
    return str(version)


def remove_incomplete(serving_dir: str) -> None:
    """Temporary folders left by a push that crashed are never versions; remove them."""
    for path in fileio.glob(os.path.join(serving_dir, TEMP_PREFIX + "*")):
        fileio.rmtree(path)


def already_pushed(serving_dir: str, quantized_artifact_id: int) -> Optional[str]:
    """The version folder that already holds this deployable model, if any."""
    for card_path in fileio.glob(os.path.join(serving_dir, "*", "model_card.json")):
        try:
            lineage = fileio.read_json(card_path).get("lineage", {})
        except (OSError, ValueError, tf.errors.OpError):
            continue
        if lineage.get("quantized_artifact_id") == quantized_artifact_id:
            return os.path.dirname(card_path)
    return None


def push_atomically(serving_dir: str, write_version) -> str:
    """Calls write_version(temp_folder, version), then renames it to the version folder."""
    fileio.makedirs(serving_dir)
    remove_incomplete(serving_dir)
    version = free_version(serving_dir)
    temp = os.path.join(serving_dir, f"{TEMP_PREFIX}{version}-{os.getpid()}")
    try:
        fileio.makedirs(temp)
        write_version(temp, version)
        target = os.path.join(serving_dir, version)
        if fileio.exists(target):  # someone took the name meanwhile: never overwrite
            raise FileExistsError(f"{target} appeared during the push")
        fileio.rename(temp, target)
        return target
    finally:
        fileio.rmtree(temp)


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]):
        artifacts = {key: artifact_utils.get_single_instance(input_dict[key])
                     for key in ("quantized", "pruned", "teacher", "examples", "blessing",
                                 "evaluation")}
        pushed = artifact_utils.get_single_instance(output_dict["pushed_model"])
        evaluation = read_report(artifacts["evaluation"].uri)
        if not artifacts["blessing"].get_int_custom_property("blessed"):
            pushed.set_int_custom_property("pushed", 0)
            log.info("pusher: not pushed, the candidate is not blessed: %s",
                     "; ".join(r for r in evaluation["reasons"] if r.startswith("FAILED")))
            return
        mode = exec_properties["deploy_mode"]
        existing = already_pushed(exec_properties["serving_dir"], artifacts["quantized"].id)
        if existing:  # the same model, blessed again by a rerun: never push a duplicate
            pushed.set_int_custom_property("pushed", 1)
            pushed.set_string_custom_property("pushed_destination", existing)
            pushed.set_string_custom_property("pushed_version", os.path.basename(existing))
            log.info("pusher: already pushed as %s; nothing new to push", existing)
            return
        card = self._model_card(artifacts, evaluation, mode)

        def write_version(folder: str, version: str) -> None:
            fileio.copytree(os.path.join(artifacts["pruned"].uri, export.SERVING_DIR),
                            os.path.join(folder, "saved_model"))
            source = candidates.mode_folder(artifacts["quantized"].uri, mode)
            for name in candidates.DEPLOYED_FILES:
                path = os.path.join(source, name)
                if fileio.isdir(path):
                    fileio.copytree(path, os.path.join(folder, name))
                elif fileio.exists(path):
                    fileio.copy(path, os.path.join(folder, name))
            fileio.write_json(os.path.join(folder, "model_card.json"),
                              {**card, "version": version})

        target = push_atomically(exec_properties["serving_dir"], write_version)
        pushed.set_int_custom_property("pushed", 1)
        pushed.set_string_custom_property("pushed_destination", target)
        pushed.set_string_custom_property("pushed_version", os.path.basename(target))
        log.info("pusher: pushed to %s", target)

    def _model_card(self, artifacts, evaluation, mode) -> Dict[str, Any]:
        pruned_info = export.read_info(artifacts["pruned"].uri)
        teacher_info = export.read_info(artifacts["teacher"].uri)
        contract = fileio.read_json(candidates.contract_path(artifacts["quantized"].uri, mode))
        return {
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "files": {"tflite": candidates.TFLITE_FILE, "contract": candidates.CONTRACT_FILE,
                      "vocabulary": candidates.VOCABULARY_FILE,
                      "conformance_kit": [candidates.GOLDEN_ROWS_FILE,
                                          candidates.GOLDEN_PROBABILITIES_FILE],
                      "vector_model": f"{candidates.VECTOR_DIR}/{candidates.TFLITE_FILE}",
                      "saved_model": "saved_model/"},
            "deploy_mode": mode,
            "tflite_micro": contract.get("tflite_micro"),
            "classes": pruned_info["classes"], "label": pruned_info["label"]["name"],
            "metrics": {name: evaluation["candidates"][name]
                        for name in ("teacher", "pruned", mode)},
            "blessing": evaluation["reasons"],
            "hyperparameters": {"teacher": teacher_info.get("hyperparameters"),
                                "student": pruned_info.get("hyperparameters")},
            "sparsity": pruned_info.get("sparsity", {}).get("pruned_weights_sparsity"),
            "data": {"examples_uri": artifacts["examples"].uri, "rows": evaluation.get("rows")},
            "lineage": {"pipeline_run_id": getattr(self._context, "pipeline_run_id", None),
                        **{f"{key}_artifact_id": a.id for key, a in artifacts.items()}},
        }
