"""Quantizer executor: convert the pruned student in every mode to a raw-in TFLite model
(modules.compression.raw_tflite), write its contract, vocabulary and conformance kit, check
it against TFLite Micro, and measure it with the interpreter on raw validation rows (the
Evaluator reuses the sizes and latency, and measures the metrics on test). Integer modes also
keep today's vector-in model in `vector/`, for devices without floating point. Their weights are
rounded to the int8 grid on the calibration rows (`quantization.rounded_for_int8`, GPTQ) before
the converter sees them."""
import logging
import os
from typing import Any, Dict, Tuple

import numpy as np
import tensorflow as tf

from components.artifacts import write_report
from components.base import StepExecutor, StepInputs
from modules import edge, fileio
from modules.compression import conformance, quantization, raw_tflite
from modules.learning import console, training
from modules.models import export
from modules.models.hyperparameters import ModelConfig
from modules.reading import data
from modules.settings import Quantization
from modules.verdict import candidates, evaluation

log = logging.getLogger(__name__)


def input_contract(model: quantization.TFLiteModel, source: export.ExportedModel,
                   mode: str) -> Dict[str, Any]:
    """What a caller must feed the vector-in .tflite model and what it returns."""
    tensors = {k: vars(v) for k, v in model.contract().items()}
    return {
        "mode": mode,
        "input": {**tensors["input"], "description": (
            "one row per example: the preprocessed feature vector laid out as in 'features'"
            + ("; quantize as round(x / scale + zero_point), clipped to int8"
               if tensors["input"]["dtype"] == "int8" else ""))},
        "output": {**tensors["output"], "description": (
            "class logits in the order of 'classes'"
            + ("; dequantize as (q - zero_point) * scale"
               if tensors["output"]["dtype"] == "int8" else "")
            + "; softmax gives the probabilities, argmax the class")},
        "classes": source.classes,
        "features": source.preprocessor.layout(),
        "raw_features": {c.name: ("number, NaN if missing" if c.kind == data.NUMERIC
                                  else "string, empty if missing") for c in source.columns
                         if c.name in source.preprocessor.input_names},
    }


class Executor(StepExecutor):
    STAGE = Quantization

    def run(self, step: StepInputs) -> None:
        source, prepared, stage = step.model, step.prepared, step.stage
        output_uri = step.output_uri("quantized_model")
        inputs = raw_tflite.raw_inputs(source.preprocessor, source.classes)
        seed = step.settings.training.seed
        validation = prepared.raw(prepared.held_out_split)
        golden = conformance.golden_rows(validation, inputs, source.preprocessor)
        # Training rows, and the kit's rows: missing values and numbers far outside the
        # training range reach the preprocessing's clip bounds, which training rows rarely do
        golden_tensors = inputs.tensors(golden)
        calibration = [np.concatenate(pair) for pair in zip(
            inputs.tensors(prepared.raw(data.TRAIN).sample(CALIBRATION_ROWS, seed)),
            golden_tensors)]
        # The calibration rows as feature vectors: the integer modes' weights are rounded
        # on them, and the vector-in model calibrates on them
        tensors = [tf.constant(t) for t in calibration] + [None]
        vectors = raw_tflite.preprocess(source.preprocessor, tensors[0], tensors[1],
                                        inputs.offsets).numpy()
        report = {}
        for name in stage.modes:
            mode = candidates.mode(name)
            model = self._model_for(mode, step)
            representative = (quantization.representative_dataset(calibration)
                              if mode.integer else None)
            content = raw_tflite.convert(model, source.preprocessor, inputs, name,
                                         representative)
            if mode.integer and not mode.aware:  # QAT fixed its own int8 weights
                model, content = self._rounded(model, content, source, inputs, name,
                                               calibration, vectors, len(golden_tensors[0]))
            path = candidates.tflite_path(output_uri, name)
            fileio.write_bytes(path, content)
            folder = candidates.mode_folder(output_uri, name)
            if inputs.ids:
                fileio.write_json(os.path.join(folder, edge.VOCABULARY_FILE), inputs.vocabularies)
            tflite = edge.RawModel(content, inputs, tf.lite.Interpreter)
            kit = conformance.write_kit(folder, golden, tflite, source)
            # TFLite Micro's probabilities of the kit's rows against the Evaluator's interpreter
            micro = raw_tflite.micro_check(content, golden_tensors, tflite.invoke(golden_tensors))
            fileio.write_json(candidates.contract_path(output_uri, name), {
                "mode": name, **inputs.contract(), "tflite_micro": micro, "conformance": kit,
                "features": source.preprocessor.layout()})
            if mode.integer:  # the vector-in model, for devices without floating point,
                # calibrated on the same rows: the same network in int8 activations
                self._write_vector_model(folder, model, source, name, vectors)
            predict, single = evaluation.raw_predictor(tflite)
            report[name] = evaluation.evaluate_candidate(
                predict, single, validation, path, params=source.core.count_params())
            log.info("quantizer: %s: accuracy %.4f, AUC %.4f, %d bytes, TFLite Micro %s", name,
                     report[name]["accuracy"], report[name]["auc"], report[name]["size_bytes"],
                     f"arena {micro['arena_bytes']} bytes" if micro["runs"] else
                     f"cannot run it ({', '.join(micro['outside_tflite_micro']) or 'failed'})")
        fileio.write_json(os.path.join(output_uri, export.INFO_FILE), {
            "role": "tflite", "modes": list(stage.modes), "source_uri": step.uri("model"),
            "classes": source.classes, "metrics": report})
        write_report(step.output_dict["metrics"][0], report)

    @staticmethod
    def _rounded(model, content: bytes, source: export.ExportedModel, inputs, name: str,
                 calibration, vectors: np.ndarray, kit_rows: int):
        """(model, its raw-in flatbuffer): `model` with its weights rounded the GPTQ way on
        the calibration rows (`quantization.rounded_for_int8`) where
        `quantization.keeps_rounding` prefers its converted model to the converter's nearest
        rounding, from the largest probability difference from the float model over all
        calibration rows and over the conformance kit's (the last `kit_rows`); else `model`
        and `content` as they were. GPTQ lowers each layer's mean squared error, and neither
        the int16 activations between layers nor the kit's extreme rows weigh in it: on a
        linear model of taxi rows the kit came 0.0009 from serving_raw against 0.0158; on
        mlc_churn's 1x8 student GPTQ halved the calibration rows' error (0.0129 against
        0.0229) while a kit row moved 0.0101 against 0.0081."""
        exact = quantization.softmax(source.core(vectors, training=False).numpy())

        def farthest(flatbuffer: bytes) -> Tuple[float, float]:
            """(the largest probability difference from the float model over all calibration
            rows, over the kit's)."""
            raw = edge.RawModel(flatbuffer, inputs, tf.lite.Interpreter)
            rows = np.abs(raw.invoke(calibration) - exact).max(axis=1)
            return float(rows.max()), float(rows[-kit_rows:].max())

        rounded = quantization.rounded_for_int8(model, vectors)
        if rounded is model:
            return model, content
        rounded_content = raw_tflite.convert(rounded, source.preprocessor, inputs, name,
                                             quantization.representative_dataset(calibration))
        nearest, gptq = farthest(content), farthest(rounded_content)
        keep = quantization.keeps_rounding(nearest, gptq, conformance.TOLERANCE)
        log.info("quantizer: %s: weights rounded %s (largest probability difference from the "
                 "float model, calibration rows / kit rows: GPTQ %.4f / %.4f, nearest step "
                 "%.4f / %.4f)", name, "the GPTQ way" if keep else "to the nearest step",
                 *gptq, *nearest, extra=console.LOG_ONLY)
        return (rounded, rounded_content) if keep else (model, content)

    @staticmethod
    def _write_vector_model(folder: str, model, source: export.ExportedModel, name: str,
                            representative) -> None:
        content = quantization.convert(model, name, representative)
        fileio.write_bytes(os.path.join(folder, candidates.VECTOR_DIR, candidates.TFLITE_FILE),
                           content)
        fileio.write_json(os.path.join(folder, candidates.VECTOR_DIR, candidates.CONTRACT_FILE),
                          input_contract(quantization.TFLiteModel(content), source, name))

    @staticmethod
    def _model_for(mode: candidates.Mode, step: StepInputs):
        """The Keras model to convert: the source, or for a quantization-aware mode a QAT
        model fine-tuned by the same training call as every other step (the run's seed and
        strategy)."""
        source = step.model
        if not mode.aware:
            return source.core
        config = ModelConfig.from_dict(source.info.get("hyperparameters"))
        result = training.train_model(
            lambda: quantization.quantize_aware(source.core,
                                                preserve_sparsity=mode.preserve_sparsity),
            step.prepared, config, step.settings.training, epochs=step.stage.qat_epochs,
            early_stopping=False, verbose=step.settings.verbose)
        return result.model


CALIBRATION_ROWS = 500  # raw training rows that calibrate the int8 activation ranges

