"""Pruner executor: prune while fine-tuning, strip the wrappers, export, report sparsity."""
import os
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.artifacts import write_report
from modules import distillation, export, pruning, training
from modules.model import ModelConfig
from modules.settings import RunSettings


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]):
        settings = RunSettings.from_exec_properties(exec_properties)
        target = exec_properties["target_sparsity"]
        pruning.check_sparsity(target)
        source_uri = artifact_utils.get_single_uri(input_dict["model"])
        source = export.load_model(source_uri)
        examples_uri = artifact_utils.get_single_uri(input_dict["examples"])
        prepared = training.prepare_like(source, examples_uri)
        config = ModelConfig.from_dict(source.info.get("hyperparameters"))
        loss_fn, targets = None, None
        if input_dict.get("teacher") and source.info.get("origin", "distilled") == "distilled":
            teacher = export.load_model(artifact_utils.get_single_uri(input_dict["teacher"]))
            loss_fn = distillation.distillation_loss(source.info["alpha"],
                                                     source.info["temperature"])
            targets = distillation.teacher_targets(teacher.core, prepared)
        output_uri = artifact_utils.get_single_uri(output_dict["pruned_model"])
        stripped, result = pruning.prune(
            source.core, prepared, config, target_sparsity=target,
            epochs=exec_properties["epochs"], seed=settings.seed,
            **({"loss_fn": loss_fn, "extra_targets": targets} if loss_fn else {}),
            strategy=settings.strategy, run_dir=os.path.join(output_uri, "logs"),
            verbose=settings.verbose)
        report = {"target_sparsity": target, **pruning.sparsity_report(stripped),
                  "epochs": exec_properties["epochs"], "distilled_from_teacher": bool(loss_fn)}
        export.export_model(output_uri, stripped, prepared.preprocessor, prepared.columns,
                            prepared.label, prepared.classes, {
                                **{k: v for k, v in source.info.items()
                                   if k in ("hyperparameters", "seed", "rows", "origin",
                                            "alpha", "temperature")},
                                "role": "pruned", "source_uri": source_uri,
                                "sparsity": report, "history": result.history,
                                "eval_metrics": result.eval_metrics})
        write_report(output_dict["sparsity"][0], report)
