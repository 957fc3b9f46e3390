"""Evaluator executor: measure every candidate, slice with TFMA, decide the blessing."""
import json
import os
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from components.artifacts import write_report
from modules import (blessing, data, evaluation, export, fileio, memory, quantization,
                     sliced_metrics, training)
from modules.settings import RunSettings

TFLITE_FILE = "model.tflite"
CANDIDATE_MODELS = ("teacher", "student_scratch", "student", "pruned")  # SavedModel inputs
EVALUATION_FILE = "evaluation.json"


def _tflite_path(quantized_uri: str, mode: str) -> str:
    return os.path.join(quantized_uri, mode, TFLITE_FILE)


def _evaluation_cache(settings: RunSettings, quantized_id: int) -> Optional[str]:
    """Where the evaluation that decided a candidate's blessing is kept between runs: a rerun
    whose candidate is that very model (all its training cached) reuses it."""
    folder = settings.work_subdir("evaluator", quantized_id)
    return os.path.join(folder, EVALUATION_FILE) if folder else None


def _previous_evaluation(input_dict, settings: RunSettings,
                         candidate_id: int) -> Optional[Dict[str, Any]]:
    """The evaluation that blessed the candidate itself in an earlier run, if it did."""
    if not input_dict.get("baseline"):
        return None
    if artifact_utils.get_single_instance(input_dict["baseline"]).id != candidate_id:
        return None
    path = _evaluation_cache(settings, candidate_id)
    if not path or not fileio.exists(path):
        return None
    return fileio.read_json(path)


class Executor(base_beam_executor.BaseBeamExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]):
        settings = RunSettings.from_exec_properties(exec_properties)
        quantized = artifact_utils.get_single_instance(input_dict["quantized"])
        report = _previous_evaluation(input_dict, settings, quantized.id)
        if report is not None:
            report["reasons"][-1] = ("ok: this is the model an earlier run blessed, unchanged "
                                     "(its evaluation is reused)")
            report["baseline"] = {"artifact_id": quantized.id, "uri": quantized.uri,
                                  "is_candidate": True}
        else:
            report = self._evaluate(input_dict, output_dict, settings, exec_properties,
                                    quantized)
            if report["blessed"] and _evaluation_cache(settings, quantized.id):
                fileio.write_json(_evaluation_cache(settings, quantized.id), report)
        self._write_blessing(output_dict, quantized, report)
        write_report(output_dict["evaluation"][0], report)
        print("evaluator: " + ("BLESSED" if report["blessed"] else "NOT blessed") + "; "
              + "; ".join(report["reasons"]), flush=True)

    def _evaluate(self, input_dict, output_dict, settings, exec_properties,
                  quantized) -> Dict[str, Any]:
        deploy_mode = exec_properties["deploy_mode"]
        uris = {name: artifact_utils.get_single_uri(input_dict[name]) for name in CANDIDATE_MODELS}
        modes = export.read_info(quantized.uri)["modes"]
        if deploy_mode not in modes:
            raise ValueError(f"deploy mode '{deploy_mode}' was not produced by the Quantizer "
                             f"(modes: {', '.join(modes)})")
        models = {name: export.load_model(uri) for name, uri in uris.items()}
        examples_uri = artifact_utils.get_single_uri(input_dict["examples"])
        eval_pattern = data.split_pattern(examples_uri, "eval")
        prepared = training.prepare_like(models["teacher"], examples_uri)
        pruned_params = models["pruned"].core.count_params()

        def measure_tflite(path: str) -> Dict[str, float]:
            predict, single = evaluation.tflite_predictor(quantization.TFLiteModel.from_file(path))
            return evaluation.evaluate_candidate(predict, single, prepared.x_eval,
                                                 prepared.y_eval, path, params=pruned_params)

        candidates: Dict[str, Dict[str, Any]] = {}
        for name, model in models.items():
            predict, single = evaluation.keras_predictor(model.core)
            candidates[name] = evaluation.evaluate_candidate(
                predict, single, prepared.x_eval, prepared.y_eval,
                os.path.join(uris[name], export.SERVING_DIR), params=model.core.count_params())
            candidates[name]["nonzero_params"] = evaluation.nonzero_params(
                model.core.get_weights())
        for mode in modes:
            candidates[mode] = measure_tflite(_tflite_path(quantized.uri, mode))
            candidates[mode]["nonzero_params"] = candidates["pruned"]["nonzero_params"]
        del models  # TFMA loads its own copies
        memory.release()

        baseline = None
        if input_dict.get("baseline"):
            baseline_artifact = artifact_utils.get_single_instance(input_dict["baseline"])
            path = _tflite_path(baseline_artifact.uri, deploy_mode)
            if fileio.exists(path):
                baseline = {"artifact_id": baseline_artifact.id, "uri": baseline_artifact.uri,
                            "is_candidate": baseline_artifact.id == quantized.id,
                            **measure_tflite(path)}
        majority_class, majority_accuracy = blessing.majority_rate(prepared.y_train,
                                                                   prepared.y_eval)
        blessed, reasons = blessing.decide(
            candidates[deploy_mode], candidates["teacher"], baseline,
            majority_accuracy=majority_accuracy, num_classes=prepared.num_classes,
            min_auc=exec_properties["min_auc"], max_auc_drop=exec_properties["max_auc_drop"],
            max_accuracy_drop=exec_properties["max_accuracy_drop"])

        slices = {}
        slice_features = [f for f in json.loads(exec_properties["slice_features"])
                          if f in {c.name for c in prepared.columns}]
        if sliced_metrics.supported(prepared.classes):
            tfma_dir = os.path.join(output_dict["evaluation"][0].uri, "tfma")
            labeled = os.path.join(tfma_dir, "labeled_eval_examples.gz")
            data.write_labeled_examples([eval_pattern], prepared.label, prepared.classes, labeled)
            slices = sliced_metrics.sliced_metrics(
                {name: os.path.join(uri, export.SERVING_DIR) for name, uri in uris.items()},
                labeled, settings.label, slice_features, tfma_dir,
                beam_args=self._beam_pipeline_args)
        return {"candidates": candidates, "deployable": deploy_mode, "blessed": blessed,
                "reasons": reasons, "baseline": baseline, "slices": slices,
                "thresholds": {"min_auc": exec_properties["min_auc"],
                               "max_auc_drop": exec_properties["max_auc_drop"],
                               "max_accuracy_drop": exec_properties["max_accuracy_drop"],
                               "noise_tolerance": blessing.NOISE_TOLERANCE},
                "majority_class": {"class": prepared.classes[majority_class],
                                   "eval_accuracy": majority_accuracy},
                "classes": prepared.classes, "auc_name": blessing.auc_name(prepared.num_classes),
                "rows": prepared.row_counts}

    @staticmethod
    def _write_blessing(output_dict, quantized, report: Dict[str, Any]) -> None:
        """A ModelBlessing as TFX's Evaluator writes it, so LatestBlessedModelStrategy finds
        the blessed deployable model (`current_model_id`)."""
        artifact = artifact_utils.get_single_instance(output_dict["blessing"])
        artifact.set_int_custom_property("blessed", int(report["blessed"]))
        artifact.set_int_custom_property("current_model_id", quantized.id)
        artifact.set_string_custom_property("current_model", quantized.uri)
        if report["baseline"]:
            artifact.set_int_custom_property("baseline_model_id",
                                             report["baseline"]["artifact_id"])
        fileio.write_text(os.path.join(artifact.uri,
                                       "BLESSED" if report["blessed"] else "NOT_BLESSED"),
                          "\n".join(report["reasons"]) + "\n")
