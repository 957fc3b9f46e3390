"""Distiller executor: loads the teacher, searches the student, exports it and its control."""
import os
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.artifacts import write_report
from modules import distillation, export, fileio, training
from modules.errors import UserError
from modules.settings import RunSettings
from modules.trainer import hyperparameter_values


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]):
        settings = RunSettings.from_exec_properties(exec_properties)
        # Values fixed on the command line narrow the searches; unset ones are searched.
        grid = distillation.filter_choices(distillation.DISTILLATION_GRID,
                                           exec_properties.get("alpha"),
                                           exec_properties.get("temperature"))
        sizes = distillation.filter_choices(distillation.STUDENT_SIZES,
                                            exec_properties.get("student_layers"),
                                            exec_properties.get("student_units"))
        teacher_uri = artifact_utils.get_single_uri(input_dict["teacher"])
        teacher = export.load_model(teacher_uri)
        tuned = {}
        if input_dict.get("hyperparameters"):
            path = os.path.join(artifact_utils.get_single_uri(input_dict["hyperparameters"]),
                                "best_hyperparameters.txt")
            tuned = hyperparameter_values(fileio.read_json(path))
        config = distillation.student_config(tuned, settings.model_overrides,
                                             exec_properties["epochs"])
        examples_uri = artifact_utils.get_single_uri(input_dict["examples"])
        prepared = training.prepare_like(teacher, examples_uri)
        teacher_params = teacher.core.count_params()
        sizes = [size for size in sizes if distillation.student_params(
            size, prepared, config) < teacher_params]
        if not sizes:
            raise UserError(f"no student size asked for is smaller than the teacher "
                            f"({teacher_params} parameters); lower --student-layers or "
                            f"--student-units")
        metrics_uri = artifact_utils.get_single_uri(output_dict["metrics"])
        search = distillation.search_student(
            prepared, teacher.core, config, sizes=sizes, grid=grid,
            max_auc_drop=exec_properties["max_auc_drop"],
            max_accuracy_drop=exec_properties["max_accuracy_drop"], seed=settings.seed,
            strategy=settings.strategy, verbose=settings.verbose,
            run_dir=lambda name: os.path.join(metrics_uri, "candidates", name))
        common = {"seed": settings.seed, "rows": prepared.row_counts, "teacher_uri": teacher_uri}
        for key, candidate in (("student", search.selected), ("student_scratch", search.scratch)):
            sized = config.to_dict()
            sized.update(num_layers=candidate.layers, units=candidate.units)
            export.export_model(
                artifact_utils.get_single_uri(output_dict[key]),
                distillation.rebuild(candidate, prepared, config), prepared.preprocessor,
                prepared.columns, prepared.label, prepared.classes, {
                    **common, "role": key, "hyperparameters": sized,
                    "origin": candidate.origin, "alpha": candidate.alpha,
                    "temperature": candidate.temperature,
                    "epochs_trained": candidate.epochs_trained, "history": candidate.history,
                    "eval_metrics": candidate.metrics})
        report = search.report()
        report.update(teacher_params=teacher_params,
                      student_params=search.selected.params,
                      param_ratio=teacher_params / search.selected.params)
        write_report(output_dict["metrics"][0], report)
        print(f"distiller: student {search.selected.size} ({search.selected.origin}"
              + (f", alpha {search.selected.alpha:g}, T {search.selected.temperature:g}"
                 if search.selected.origin == "distilled" else "")
              + f"), {report['param_ratio']:.0f}x fewer parameters than the teacher", flush=True)
