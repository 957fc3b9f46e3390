"""Evaluator executor: measure every candidate, slice with TFMA, decide the blessing."""
import dataclasses
import logging
import os
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from components.artifacts import write_report
from components.base import StepExecutor, StepInputs
from modules import fileio, memory
from modules.learning import console, training
from modules.models import export
from modules.reading import data
from modules.settings import Blessing, RunSettings
from modules.verdict import blessing, evaluation, intervals, sliced_metrics
from modules.compression import quantization
from modules.verdict.candidates import (CONTRACT_FILE, SAVED_MODELS, TFLITE_FILE, VECTOR_DIR,
                                       mode_folder, tflite_path)

log = logging.getLogger(__name__)

EVALUATION_FILE = "evaluation.json"


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


def _row_counts(step: StepInputs, prepared) -> Dict[str, int]:
    """Labeled rows of known classes per split, and the rows left out, over all three
    splits (label counts only: the validation split's were counted by the steps before)."""
    counts: Dict[str, int] = {"dropped_missing_label": 0, "dropped_unseen_class": 0}
    for split in data.SPLITS:
        labels = data.label_counts(data.split_files(step.input_dict["examples"], split),
                                   prepared.label,
                                   cache_dir=step.settings.work_subdir("label_counts"))
        counts[f"{split}_rows"] = sum(n for c, n in labels.items() if c in prepared.classes)
        counts["dropped_missing_label"] += labels.get("", 0)
        counts["dropped_unseen_class"] += sum(n for c, n in labels.items()
                                              if c and c not in prepared.classes)
    return counts


class Executor(StepExecutor, base_beam_executor.BaseBeamExecutor):
    STAGE = Blessing
    MODEL_KEY = "teacher"
    HELD_OUT = data.TEST  # the one step that reads the test split

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
                 "; ".join(report["reasons"]), extra=console.LOG_ONLY)

    def _evaluate(self, step: StepInputs, quantized) -> Dict[str, Any]:
        deploy_mode, thresholds = step.exec_properties["deploy_mode"], step.stage
        info = export.read_info(quantized.uri)
        if deploy_mode not in info["modes"]:
            raise ValueError(f"deploy mode '{deploy_mode}' was not produced by the Quantizer "
                             f"(modes: {', '.join(info['modes'])})")
        prepared = step.prepared  # the test split, prepared as the teacher was trained
        candidates: Dict[str, Dict[str, Any]] = {}
        scores: Dict[str, evaluation.Scores] = {}
        predictors: Dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        teacher_kind = step.load("teacher").info.get("kind", "network")
        for name in SAVED_MODELS:
            if name == teacher_kind:
                continue  # the teacher itself
            model = step.load(name)
            predict, single = evaluation.keras_predictor(model.core)
            scores[name] = evaluation.split_scores(predict, prepared.held_out)
            candidates[name] = evaluation.evaluate_candidate(
                predict, single, prepared.held_out,
                os.path.join(step.uri(name), export.SERVING_DIR),
                params=model.core.count_params(), metrics=scores[name].metrics())
            candidates[name]["nonzero_params"] = evaluation.nonzero_params(
                model.core.get_weights())
            if name == "teacher":
                predictors[name] = predict
        for mode in info["modes"]:  # sizes and latency as the Quantizer measured them
            # exactly the deployable file, fed raw test rows as a device would
            predict, _, rows = evaluation.tflite_candidate(mode_folder(quantized.uri, mode),
                                                           prepared)
            scores[mode] = evaluation.split_scores(predict, rows)
            candidates[mode] = {**info["metrics"][mode], **scores[mode].metrics(),
                                "nonzero_params": candidates["pruned"]["nonzero_params"]}
        device = self._device(quantized.uri, deploy_mode, prepared)
        slices, slice_sample = self._slices(step, predictors, deploy_mode,
                                            mode_folder(quantized.uri, deploy_mode), thresholds)
        predictors.clear()
        step.unload_models()
        memory.release()

        baseline, baseline_scores = None, None
        if step.input_dict.get("baseline"):
            baseline_artifact = artifact_utils.get_single_instance(step.input_dict["baseline"])
            path = tflite_path(baseline_artifact.uri, deploy_mode)
            if fileio.exists(path):
                # The same test rows, read as the baseline was trained: it may have had
                # other columns (--drop) or statistics than the candidate.
                source = export.load_model(export.read_info(baseline_artifact.uri)["source_uri"])
                own = step.prepare_like(source)
                predict, single, rows = evaluation.tflite_candidate(
                    mode_folder(baseline_artifact.uri, deploy_mode), own)
                baseline_scores = evaluation.split_scores(predict, rows)
                baseline = {"artifact_id": baseline_artifact.id, "uri": baseline_artifact.uri,
                            "is_candidate": baseline_artifact.id == quantized.id,
                            **evaluation.evaluate_candidate(
                                predict, single, rows, path,
                                params=source.core.count_params(),
                                metrics=baseline_scores.metrics())}
        train_counts = prepared.counts(data.TRAIN)
        evidence, trivial = self._with_intervals(candidates, scores, baseline, baseline_scores,
                                                 train_counts, deploy_mode,
                                                 step.settings.training.seed)
        blessed, reasons = blessing.decide(
            evidence, num_classes=prepared.num_classes, budget=thresholds)
        majority_class, majority_accuracy = blessing.majority_rate(
            train_counts, prepared.counts(data.TEST))
        return {"candidates": candidates, "deployable": deploy_mode, "blessed": blessed,
                "teacher_kind": teacher_kind,
                "reasons": reasons, "baseline": baseline, "slices": slices,
                "slice_sample": slice_sample, "split": data.TEST,
                "thresholds": {**thresholds.to_dict(),
                               "noise_tolerance": blessing.NOISE_TOLERANCE,
                               "interval": {
                                   "level": intervals.LEVEL, "resamples": intervals.RESAMPLES,
                                   "method": "percentile bootstrap over test rows, paired",
                                   "seed": step.settings.training.seed}},
                "trivial_model": trivial,
                "majority_class": {"class": prepared.classes[majority_class],
                                   "test_accuracy": majority_accuracy},
                "classes": prepared.classes, "auc_name": blessing.auc_name(prepared.num_classes),
                "rows": _row_counts(step, prepared), "device": device}

    @staticmethod
    def _device(quantized_uri: str, deploy_mode: str, prepared) -> Dict[str, Any]:
        """What a device team needs to know of the deployable model: its TFLite Micro check
        and conformance kit (from its contract), and the vector-in model kept beside it
        (integer modes) measured on the same test rows, for the comparison."""
        folder = mode_folder(quantized_uri, deploy_mode)
        contract = fileio.read_json(os.path.join(folder, CONTRACT_FILE))
        kit = contract.get("conformance", {})
        device = {"tflite_micro": contract.get("tflite_micro"),
                  "conformance_max_abs_difference": kit.get("max_abs_difference"),
                  "conformance_tolerance": kit.get("tolerance")}
        vector = os.path.join(folder, VECTOR_DIR, TFLITE_FILE)
        if fileio.exists(vector):
            predict, single = evaluation.tflite_predictor(
                quantization.TFLiteModel.from_file(vector))
            device["vector_model"] = evaluation.evaluate_candidate(
                predict, single, prepared.held_out, vector, params=0)
        return device

    @staticmethod
    def _with_intervals(candidates: Dict[str, Dict[str, Any]],
                        scores: Dict[str, evaluation.Scores], baseline: Optional[Dict[str, Any]],
                        baseline_scores: Optional[evaluation.Scores], train_counts: np.ndarray,
                        deploy_mode: str, seed: int
                        ) -> Tuple[blessing.Evidence, Dict[str, Any]]:
        """Adds every candidate's 95% intervals on test (`*_ci`), its paired drops from the
        teacher (`accuracy_drop`, `auc_drop`, with `_ci`) and its log-loss gain over the
        trivial model (`log_loss_gain`, `_ci`), all from the same resampled rows; returns the
        deployable candidate's `blessing.Evidence` and the trivial model's figures."""
        labels = scores["teacher"].labels
        for name, scored in scores.items():
            if not np.array_equal(scored.labels, labels):
                raise ValueError(f"candidate {name} was scored on other test rows than the "
                                 f"teacher")
        # The last blessed model is compared on the same rows when it knows the same classes
        # (the rows kept depend on them); otherwise by its point estimates alone.
        paired_baseline = (baseline_scores is not None
                           and np.array_equal(baseline_scores.labels, labels))
        models = {name: scored.probabilities for name, scored in scores.items()}
        models["trivial"] = blessing.trivial_probabilities(train_counts, len(labels))
        if paired_baseline:
            models["baseline"] = baseline_scores.probabilities
        pairs = [("teacher", name) for name in scores if name != "teacher"]
        pairs += [("trivial", name) for name in scores]
        pairs += [pair for pair in blessing.evidence_pairs(deploy_mode, paired_baseline)
                  if pair not in pairs]
        cis, differences = intervals.bootstrap(labels, models, pairs, seed=seed)
        for name, metrics in candidates.items():
            metrics.update({f"{m}_ci": cis[name][m] for m in intervals.METRICS})
            if name != "teacher":
                for m in ("accuracy", "auc"):
                    drop = differences[("teacher", name)][m]
                    metrics[f"{m}_drop"] = drop["estimate"]
                    metrics[f"{m}_drop_ci"] = [drop["low"], drop["high"]]
            gain = differences[("trivial", name)]["log_loss"]
            metrics["log_loss_gain"] = gain["estimate"]
            metrics["log_loss_gain_ci"] = [gain["low"], gain["high"]]
        deployed = candidates[deploy_mode]
        evidence = blessing.evidence_from(differences, deploy_mode, metrics=deployed,
                                          rows=len(labels), with_baseline=paired_baseline)
        if baseline is not None and not paired_baseline:
            evidence = dataclasses.replace(evidence, vs_baseline={
                m: blessing.Difference(*[baseline[m] - deployed[m]] * 3)
                for m in ("accuracy", "auc")})
        trivial_log_loss = evidence.trivial_log_loss
        frequencies = (np.asarray(train_counts, np.float64) / np.sum(train_counts)).tolist()
        return evidence, {"log_loss": trivial_log_loss, "class_frequencies": frequencies,
                          "log_loss_ci": cis["trivial"]["log_loss"]}

    def _slices(self, step: StepInputs, predictors: Dict[str, Callable[[np.ndarray], np.ndarray]],
                deploy_mode: str, deployed_folder: str,
                thresholds: Blessing) -> Tuple[Dict[str, Any], Optional[Dict[str, int]]]:
        """TFMA's metrics per slice of `predictors` (the teacher's; preprocessed rows ->
        probabilities) and of the deployed TFLite model (raw rows), on a uniform sample of at
        most `--slice-rows` test rows; see modules.verdict.sliced_metrics."""
        prepared = step.prepared
        if not sliced_metrics.supported(prepared.classes):
            return {}, None
        deployed, _, rows = evaluation.tflite_candidate(deployed_folder, prepared)
        tfma_dir = os.path.join(step.output_uri("evaluation"), "tfma")
        scored = os.path.join(tfma_dir, "scored_eval_examples.gz")
        test_rows = prepared.row_counts["test_rows"]
        fraction = (min(1.0, thresholds.slice_rows / test_rows)
                    if thresholds.slice_rows and test_rows else 1.0)

        def scores(serialized, class_ids):
            x = prepared.features(serialized).numpy()
            raw = rows.parse(serialized) if isinstance(rows, training.RawRows) else x
            return {sliced_metrics.LABEL_KEY: class_ids.astype(np.float32),
                    sliced_metrics.prediction_key(deploy_mode): deployed(raw)[:, 1],
                    **{sliced_metrics.prediction_key(name): predict(x)[:, 1]
                       for name, predict in predictors.items()}}

        slice_features = [f for f in thresholds.slice_features
                          if f in {c.name for c in prepared.columns}]
        sample = {"rows": data.write_labeled_examples(
            data.split_files(step.input_dict["examples"], data.TEST), prepared.label,
            prepared.classes, scored, fraction, seed=step.settings.training.seed,
            added=scores, features=slice_features), "of": test_rows}
        return sliced_metrics.sliced_metrics([*predictors, deploy_mode], scored, slice_features,
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
