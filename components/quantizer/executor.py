"""Quantizer executor: convert, write the input contract, check every model with the
interpreter on the validation split (the Evaluator reuses their sizes and latency, and
measures their metrics on test)."""
import logging
import os
from typing import Any, Dict

from components.artifacts import write_report
from components.base import StepExecutor, StepInputs
from modules import data, evaluation, export, fileio, quantization, training
from modules.model import ModelConfig
from modules.settings import Quantization

log = logging.getLogger(__name__)
TFLITE_FILE = "model.tflite"
CONTRACT_FILE = "contract.json"


def input_contract(model: quantization.TFLiteModel, source: export.ExportedModel,
                   mode: str) -> Dict[str, Any]:
    """What a caller must feed the .tflite model and what it returns."""
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
        report = {}
        for mode in stage.modes:
            model = self._model_for(mode, step)
            representative = (quantization.representative_sample(
                prepared.train, seed=step.settings.training.seed)
                if mode in quantization.INTEGER_MODES else None)
            content = quantization.convert(model, mode, representative)
            folder = os.path.join(output_uri, mode)
            path = os.path.join(folder, TFLITE_FILE)
            fileio.write_bytes(path, content)
            tflite = quantization.TFLiteModel(content)
            fileio.write_json(os.path.join(folder, CONTRACT_FILE),
                              input_contract(tflite, source, mode))
            predict, single = evaluation.tflite_predictor(tflite)
            report[mode] = evaluation.evaluate_candidate(
                predict, single, prepared.held_out, path,
                params=source.core.count_params())
            log.info("quantizer: %s: accuracy %.4f, AUC %.4f, %d bytes", mode,
                     report[mode]["accuracy"], report[mode]["auc"], report[mode]["size_bytes"])
        fileio.write_json(os.path.join(output_uri, export.INFO_FILE), {
            "role": "tflite", "modes": list(stage.modes), "source_uri": step.uri("model"),
            "classes": source.classes, "metrics": report})
        write_report(step.output_dict["metrics"][0], report)

    @staticmethod
    def _model_for(mode: str, step: StepInputs):
        """The Keras model to convert: the source, or a QAT model fine-tuned with the loop."""
        source = step.model
        if mode not in ("qat", "pqat"):
            return source.core
        config = ModelConfig.from_dict(source.info.get("hyperparameters"))
        result = training.train_model(
            lambda: quantization.quantize_aware(source.core, preserve_sparsity=mode == "pqat"),
            step.prepared, config, seed=step.settings.training.seed,
            epochs=step.stage.qat_epochs, early_stopping=False,
            verbose=step.settings.verbose)
        return result.model
