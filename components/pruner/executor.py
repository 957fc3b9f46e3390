"""Pruner executor: prune while fine-tuning, within the budget; strip, export, report."""
import os
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.artifacts import write_report
from modules import distillation, evaluation, export, pruning, training
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
        teacher = export.load_model(artifact_utils.get_single_uri(input_dict["teacher"]))
        distilling = {}
        if source.info.get("origin") == "distilled":  # keep learning as the student did
            distilling = {"loss_fn": distillation.distillation_loss(source.info["alpha"],
                                                                    source.info["temperature"]),
                          "extra_targets": distillation.teacher_targets(teacher.core, prepared)}
        output_uri = artifact_utils.get_single_uri(output_dict["pruned_model"])
        outcome = pruning.prune_within_budget(
            source.core, prepared, config, target_sparsity=target,
            teacher_metrics=evaluation.keras_metrics(teacher.core, prepared.x_eval,
                                                     prepared.y_eval),
            max_auc_drop=exec_properties["max_auc_drop"],
            max_accuracy_drop=exec_properties["max_accuracy_drop"],
            epochs=exec_properties["epochs"], seed=settings.seed, strategy=settings.strategy,
            run_dir=os.path.join(output_uri, "logs"), verbose=settings.verbose, **distilling)
        report = {"target_sparsity": target, "sparsity": outcome.chosen.sparsity,
                  **pruning.sparsity_report(outcome.model),
                  "attempts": [a.row() for a in outcome.attempts],
                  "epochs": exec_properties["epochs"], "distilled_from_teacher": bool(distilling)}
        export.export_model(output_uri, outcome.model, prepared.preprocessor, prepared.columns,
                            prepared.label, prepared.classes, {
                                **{k: v for k, v in source.info.items()
                                   if k in ("hyperparameters", "seed", "rows", "origin",
                                            "alpha", "temperature")},
                                "role": "pruned", "source_uri": source_uri,
                                "sparsity": report,
                                "history": outcome.result.history if outcome.result else {},
                                "eval_metrics": outcome.chosen.metrics})
        write_report(output_dict["sparsity"][0], report)
