"""Quantizer executor: convert, write the input contract, check every model with the
interpreter on the eval split."""
import json
import os
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.artifacts import write_report
from modules import data, evaluation, export, fileio, quantization, training
from modules.model import ModelConfig
from modules.settings import RunSettings

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
            "class probabilities in the order of 'classes'"
            + ("; dequantize as (q - zero_point) * scale"
               if tensors["output"]["dtype"] == "int8" else ""))},
        "classes": source.classes,
        "features": source.preprocessor.layout(),
        "raw_features": {c.name: ("number, NaN if missing" if c.kind == data.NUMERIC
                                  else "string, empty if missing") for c in source.columns
                         if c.name in source.preprocessor.input_names},
    }


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]):
        settings = RunSettings.from_exec_properties(exec_properties)
        modes = quantization.check_modes(json.loads(exec_properties["modes"]))
        source_uri = artifact_utils.get_single_uri(input_dict["model"])
        source = export.load_model(source_uri)
        examples_uri = artifact_utils.get_single_uri(input_dict["examples"])
        prepared = training.prepare_like(source, examples_uri)
        output_uri = artifact_utils.get_single_uri(output_dict["quantized_model"])
        report = {}
        for mode in modes:
            model = self._model_for(mode, source, prepared, settings,
                                    exec_properties["qat_epochs"])
            representative = (quantization.representative_sample(prepared.x_train,
                                                                 seed=settings.seed)
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
                predict, single, prepared.x_eval, prepared.y_eval, path,
                params=evaluation.nonzero_params(source.core.get_weights()))
            print(f"quantizer: {mode}: auc {report[mode]['auc']:.4f}, "
                  f"{report[mode]['size_bytes']} bytes", flush=True)
        fileio.write_json(os.path.join(output_uri, export.INFO_FILE), {
            "role": "tflite", "modes": modes, "source_uri": source_uri,
            "classes": source.classes, "metrics": report})
        write_report(output_dict["metrics"][0], report)

    @staticmethod
    def _model_for(mode, source, prepared, settings, qat_epochs):
        """The Keras model to convert: the source, or a QAT model fine-tuned with the loop."""
        if mode not in ("qat", "pqat"):
            return source.core
        config = ModelConfig.from_dict(source.info.get("hyperparameters"))
        result = training.train_model(
            lambda: quantization.quantize_aware(source.core, preserve_sparsity=mode == "pqat"),
            prepared, config, seed=settings.seed, epochs=qat_epochs, early_stopping=False,
            verbose=settings.verbose)
        return result.model
