"""Distiller executor: searches the student, exports it and its control, reports the search."""
import logging
import os

from components.artifacts import write_report
from components.base import StepExecutor, StepInputs
from modules import fileio
from modules.compression import distillation
from modules.errors import UserError
from modules.learning import console
from modules.learning.trainer import hyperparameter_values
from modules.models import export
from modules.settings import Distillation

log = logging.getLogger(__name__)


class Executor(StepExecutor):
    STAGE = Distillation
    MODEL_KEY = "teacher"

    def run(self, step: StepInputs) -> None:
        stage, budget, teacher, prepared = step.stage, step.budget, step.model, step.prepared
        # Values fixed on the command line narrow the searches; unset ones are searched.
        grid = distillation.filter_choices(distillation.DISTILLATION_GRID, stage.alpha,
                                           stage.temperature)
        sizes = distillation.size_choices(stage.student_layers, stage.student_units)
        tuned = {}
        if step.input_dict.get("hyperparameters"):
            tuned = hyperparameter_values(fileio.read_json(os.path.join(
                step.uri("hyperparameters"), "best_hyperparameters.txt")))
        config = distillation.student_config(tuned, step.settings.training.precision,
                                             stage.epochs)
        teacher_params = teacher.core.count_params()
        if teacher.info.get("kind") != "trees":  # tree nodes do not compare with weights
            sizes = [size for size in sizes
                     if distillation.student_params(size, prepared, config) <= teacher_params]
        if not sizes:
            raise UserError(f"no student size asked for is as small as the teacher "
                            f"({teacher_params} parameters); lower --student-layers or "
                            f"--student-units")
        metrics_uri = step.output_uri("metrics")
        search = distillation.search_student(
            prepared, teacher.core, config, sizes=sizes, grid=grid,
            budget=budget, run=step.settings.training,
            run_dir=lambda name: os.path.join(metrics_uri, "candidates", name),
            linear=step.load("linear") if step.input_dict.get("linear") else None)
        common = {"seed": step.settings.training.seed, "rows": prepared.row_counts,
                  "teacher_uri": step.uri("teacher")}
        for key, candidate in (("student", search.selected), ("student_scratch", search.scratch)):
            sized = config.to_dict()
            sized.update(num_layers=candidate.layers, units=candidate.units)
            export.export_model(
                step.output_uri(key), distillation.rebuild(candidate, prepared, config),
                prepared.preprocessor, prepared.columns, prepared.label, prepared.classes, {
                    **common, "role": key, "hyperparameters": sized,
                    "origin": candidate.origin, "alpha": candidate.alpha,
                    "temperature": candidate.temperature,
                    "epochs_trained": candidate.epochs_trained, "history": candidate.history,
                    "metrics": candidate.metrics})
        report = search.report()
        report.update(teacher_params=teacher_params, student_params=search.selected.params,
                      param_ratio=teacher_params / search.selected.params)
        write_report(step.output_dict["metrics"][0], report)
        log.info("distiller: student %s (%s), %.0fx fewer parameters than the teacher",
                 search.selected.size, search.selected.how, report["param_ratio"],
                 extra=console.LOG_ONLY)
