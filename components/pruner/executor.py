"""Pruner executor: prune while fine-tuning, within the budget; strip, export, report."""
import os

from components.artifacts import write_report
from components.base import StepExecutor, StepInputs
from modules.compression import distillation, pruning
from modules.models import export
from modules.models.hyperparameters import ModelConfig
from modules.settings import Pruning
from modules.verdict import evaluation


class Executor(StepExecutor):
    STAGE = Pruning

    def run(self, step: StepInputs) -> None:
        source, prepared, stage, budget = step.model, step.prepared, step.stage, step.budget
        config = ModelConfig.from_dict(source.info.get("hyperparameters"))
        teacher = step.load("teacher")
        distilling = {}
        if source.info.get("origin") == "distilled":  # keep learning as the student did
            prepared = distillation.with_teacher_logits(teacher.core, prepared)
            distilling = {"loss_fn": distillation.distillation_loss(source.info["alpha"],
                                                                    source.info["temperature"])}
        output_uri = step.output_uri("pruned_model")
        outcome = pruning.prune_within_budget(
            source.core, prepared, config, target_sparsity=stage.sparsity,
            teacher=evaluation.keras_scores(teacher.core, prepared.held_out), epochs=stage.epochs,
            run_dir=os.path.join(output_uri, "logs"), verbose=False,  # one line per attempt
            **distilling, run=step.settings.training, budget=budget)
        report = {"target_sparsity": stage.sparsity, "sparsity": outcome.chosen.sparsity,
                  **pruning.sparsity_report(outcome.model),
                  "attempts": [a.row() for a in outcome.attempts], "epochs": stage.epochs,
                  "distilled_from_teacher": bool(distilling)}
        export.export_model(output_uri, outcome.model, prepared.preprocessor, prepared.columns,
                            prepared.label, prepared.classes, {
                                **{k: v for k, v in source.info.items()
                                   if k in ("hyperparameters", "seed", "rows", "origin",
                                            "alpha", "temperature")},
                                "role": "pruned", "source_uri": step.uri("model"),
                                "sparsity": report,
                                "history": outcome.result.history if outcome.result else {},
                                "metrics": outcome.chosen.metrics})
        write_report(step.output_dict["sparsity"][0], report)
