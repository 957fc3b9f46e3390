"""Evaluator executor: measure every candidate, slice with TFMA, decide the blessing."""
import logging
import os
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from components.artifacts import write_report
from components.base import StepExecutor, StepInputs
from modules import (blessing, data, evaluation, export, fileio, memory, quantization,
                     sliced_metrics, training)
from modules.settings import Blessing, RunSettings

log = logging.getLogger(__name__)

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


def _previous_evaluation(step: StepInputs, candidate_id: int) -> Optional[Dict[str, Any]]:
    """The evaluation that blessed the candidate itself in an earlier run, if it did."""
    if not step.input_dict.get("baseline"):
        return None
    if artifact_utils.get_single_instance(step.input_dict["baseline"]).id != candidate_id:
        return None
    path = _evaluation_cache(step.settings, candidate_id)
    if not path or not fileio.exists(path):
        return None
    return fileio.read_json(path)


class Executor(StepExecutor, base_beam_executor.BaseBeamExecutor):
    STAGE = Blessing
    MODEL_KEY = "teacher"

    def run(self, step: StepInputs) -> None:
        quantized = artifact_utils.get_single_instance(step.input_dict["quantized"])
        report = _previous_evaluation(step, quantized.id)
        if report is not None:
            report["reasons"][-1] = ("ok: this is the model an earlier run blessed, unchanged "
                                     "(its evaluation is reused)")
            report["baseline"] = {"artifact_id": quantized.id, "uri": quantized.uri,
                                  "is_candidate": True}
        else:
            report = self._evaluate(step, quantized)
            cache = _evaluation_cache(step.settings, quantized.id)
            if report["blessed"] and cache:
                fileio.write_json(cache, report)
        self._write_blessing(step.output_dict, quantized, report)
        write_report(step.output_dict["evaluation"][0], report)
        log.info("evaluator: %s; %s", "BLESSED" if report["blessed"] else "NOT blessed",
                 "; ".join(report["reasons"]))

    def _evaluate(self, step: StepInputs, quantized) -> Dict[str, Any]:
        deploy_mode, thresholds = step.exec_properties["deploy_mode"], step.stage
        info = export.read_info(quantized.uri)
        if deploy_mode not in info["modes"]:
            raise ValueError(f"deploy mode '{deploy_mode}' was not produced by the Quantizer "
                             f"(modes: {', '.join(info['modes'])})")
        prepared = step.prepared
        candidates: Dict[str, Dict[str, Any]] = {}
        predictors: Dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        for name in CANDIDATE_MODELS:
            model = step.load(name)
            predict, single = evaluation.keras_predictor(model.core)
            candidates[name] = evaluation.evaluate_candidate(
                predict, single, prepared.eval,
                os.path.join(step.uri(name), export.SERVING_DIR),
                params=model.core.count_params(), metrics=model.info.get("metrics"))
            candidates[name]["nonzero_params"] = evaluation.nonzero_params(
                model.core.get_weights())
            if name == "teacher":
                predictors[name] = predict
        for mode in info["modes"]:  # measured by the Quantizer on this very split
            candidates[mode] = {**info["metrics"][mode],
                                "nonzero_params": candidates["pruned"]["nonzero_params"]}
        slices, slice_sample = self._slices(step, predictors, deploy_mode,
                                            _tflite_path(quantized.uri, deploy_mode), thresholds)
        predictors.clear()
        step.unload_models()
        memory.release()

        baseline = None
        if step.input_dict.get("baseline"):
            baseline_artifact = artifact_utils.get_single_instance(step.input_dict["baseline"])
            path = _tflite_path(baseline_artifact.uri, deploy_mode)
            if fileio.exists(path):
                # The same eval rows, preprocessed as the baseline was trained: it may have
                # had other columns (--drop) or statistics than the candidate.
                source = export.load_model(export.read_info(baseline_artifact.uri)["source_uri"])
                own = training.prepare_like(source, step.input_dict["examples"],
                                            step.settings.training.cache_mb,
                                            step.settings.work_subdir("label_counts"))
                predict, single = evaluation.tflite_predictor(
                    quantization.TFLiteModel.from_file(path))
                baseline = {"artifact_id": baseline_artifact.id, "uri": baseline_artifact.uri,
                            "is_candidate": baseline_artifact.id == quantized.id,
                            **evaluation.evaluate_candidate(
                                predict, single, own.eval, path,
                                params=source.core.count_params())}
        majority_class, majority_accuracy = blessing.majority_rate(prepared.counts("train"),
                                                                   prepared.counts("eval"))
        blessed, reasons = blessing.decide(
            candidates[deploy_mode], candidates["teacher"], baseline,
            majority_accuracy=majority_accuracy, num_classes=prepared.num_classes,
            min_auc=thresholds.min_auc, max_auc_drop=thresholds.max_auc_drop,
            max_accuracy_drop=thresholds.max_accuracy_drop)

        return {"candidates": candidates, "deployable": deploy_mode, "blessed": blessed,
                "reasons": reasons, "baseline": baseline, "slices": slices,
                "slice_sample": slice_sample,
                "thresholds": {**thresholds.to_dict(),
                               "noise_tolerance": blessing.NOISE_TOLERANCE},
                "majority_class": {"class": prepared.classes[majority_class],
                                   "eval_accuracy": majority_accuracy},
                "classes": prepared.classes, "auc_name": blessing.auc_name(prepared.num_classes),
                "rows": prepared.row_counts}

    def _slices(self, step: StepInputs, predictors: Dict[str, Callable[[np.ndarray], np.ndarray]],
                deploy_mode: str, deployed_path: str,
                thresholds: Blessing) -> Tuple[Dict[str, Any], Optional[Dict[str, int]]]:
        """TFMA's metrics per slice of `predictors` (the teacher's; preprocessed rows ->
        probabilities) and of the deployed TFLite model, on a uniform sample of at most
        `--slice-rows` eval rows; see modules.sliced_metrics."""
        prepared = step.prepared
        if not sliced_metrics.supported(prepared.classes):
            return {}, None
        predictors = {**predictors, deploy_mode: quantization.TFLiteModel.from_file(
            deployed_path).probabilities}
        tfma_dir = os.path.join(step.output_uri("evaluation"), "tfma")
        scored = os.path.join(tfma_dir, "scored_eval_examples.gz")
        eval_rows = prepared.row_counts["eval_rows"]
        fraction = (min(1.0, thresholds.slice_rows / eval_rows)
                    if thresholds.slice_rows and eval_rows else 1.0)

        def scores(serialized, class_ids):
            x = prepared.features(serialized).numpy()
            return {sliced_metrics.LABEL_KEY: class_ids.astype(np.float32),
                    **{sliced_metrics.prediction_key(name): predict(x)[:, 1]
                       for name, predict in predictors.items()}}

        sample = {"rows": data.write_labeled_examples(
            data.split_files(step.input_dict["examples"], "eval"), prepared.label,
            prepared.classes, scored, fraction, seed=step.settings.training.seed,
            added=scores), "of": eval_rows}
        slice_features = [f for f in thresholds.slice_features
                          if f in {c.name for c in prepared.columns}]
        return sliced_metrics.sliced_metrics(list(predictors), scored, slice_features,
                                             tfma_dir, beam_args=self._beam_pipeline_args), sample

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
