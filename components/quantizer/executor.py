"""Quantizer executor: convert, write the input contract, check every model with the
interpreter on the validation split (the Evaluator reuses their sizes and latency, and
measures their metrics on test)."""
import logging
import os
from typing import Any, Dict

from components.artifacts import write_report
from components.base import StepExecutor, StepInputs
from modules import fileio
from modules.compression import quantization
from modules.learning import training
from modules.models import export
from modules.models.hyperparameters import ModelConfig
from modules.reading import data
from modules.settings import Quantization
from modules.verdict import candidates, evaluation

log = logging.getLogger(__name__)


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
        for name in stage.modes:
            mode = candidates.mode(name)
            representative = (quantization.representative_sample(
                prepared.train, seed=step.settings.training.seed) if mode.integer else None)
            content = quantization.convert(self._model_for(mode, step), name, representative)
            path = candidates.tflite_path(output_uri, name)
            fileio.write_bytes(path, content)
            tflite = quantization.TFLiteModel(content)
            fileio.write_json(candidates.contract_path(output_uri, name),
                              input_contract(tflite, source, name))
            predict, single = evaluation.tflite_predictor(tflite)
            report[name] = evaluation.evaluate_candidate(
                predict, single, prepared.held_out, path,
                params=source.core.count_params())
            log.info("quantizer: %s: accuracy %.4f, AUC %.4f, %d bytes", name,
                     report[name]["accuracy"], report[name]["auc"], report[name]["size_bytes"])
        fileio.write_json(os.path.join(output_uri, export.INFO_FILE), {
            "role": "tflite", "modes": list(stage.modes), "source_uri": step.uri("model"),
            "classes": source.classes, "metrics": report})
        write_report(step.output_dict["metrics"][0], report)

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
