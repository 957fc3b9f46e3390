"""Distiller executor: loads the teacher, trains student and control, exports both."""
import os
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.artifacts import write_report
from modules import distillation, export, fileio, training
from modules.errors import UserError
from modules.model import ModelConfig, build_core
from modules.settings import RunSettings
from modules.trainer import hyperparameter_values

# The student keeps the teacher's batch size and activation, not its shape, regularization
# or learning rate: a model this small underfits rather than overfits, and learns fast.
STUDENT_FIXED = {"cross_rank": 0, "dropout": 0.0, "learning_rate": 3e-3}


def student_config(tuned: Dict[str, Any], overrides: Dict[str, Any], layers: int, units: int,
                   epochs: int) -> ModelConfig:
    return ModelConfig.from_dict(tuned, **{**overrides, **STUDENT_FIXED, "num_layers": layers,
                                           "units": units, "epochs": epochs})


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]):
        settings = RunSettings.from_exec_properties(exec_properties)
        alpha, temperature = exec_properties["alpha"], exec_properties["temperature"]
        distillation.check_distillation_params(alpha, temperature)
        teacher_uri = artifact_utils.get_single_uri(input_dict["teacher"])
        teacher = export.load_model(teacher_uri)
        tuned = {}
        if input_dict.get("hyperparameters"):
            path = os.path.join(artifact_utils.get_single_uri(input_dict["hyperparameters"]),
                                "best_hyperparameters.txt")
            tuned = hyperparameter_values(fileio.read_json(path))
        config = student_config(tuned, settings.model_overrides,
                                exec_properties["student_layers"],
                                exec_properties["student_units"], exec_properties["epochs"])
        examples_uri = artifact_utils.get_single_uri(input_dict["examples"])
        prepared = training.prepare_like(teacher, examples_uri)
        teacher_params = teacher.core.count_params()
        student_params = build_core(prepared.x_train.shape[1], prepared.num_classes,
                                    config).count_params()
        if student_params >= teacher_params:
            raise UserError(f"the student ({student_params} parameters) is not smaller than "
                            f"the teacher ({teacher_params}); lower --student-layers or "
                            f"--student-units")
        outputs = {key: artifact_utils.get_single_uri(output_dict[key])
                   for key in ("student", "student_scratch")}
        result = distillation.train_students(
            prepared, teacher.core, config, alpha=alpha, temperature=temperature,
            seed=settings.seed, strategy=settings.strategy,
            run_dirs={k: os.path.join(uri, "logs") for k, uri in outputs.items()},
            verbose=settings.verbose)
        common = {"hyperparameters": config.to_dict(), "seed": settings.seed,
                  "rows": prepared.row_counts, "teacher_uri": teacher_uri}
        for key, trained in (("student", result.distilled), ("student_scratch", result.scratch)):
            extra = {"alpha": alpha, "temperature": temperature} if key == "student" else {}
            export.export_model(outputs[key], trained.model, prepared.preprocessor,
                                prepared.columns, prepared.label, prepared.classes, {
                                    **common, **extra, "role": key,
                                    "epochs_trained": trained.epochs_trained,
                                    "best_epoch": trained.best_epoch,
                                    "history": trained.history,
                                    "eval_metrics": trained.eval_metrics})
        write_report(output_dict["metrics"][0], {
            "alpha": alpha, "temperature": temperature, "student": config.to_dict(),
            "teacher_params": teacher_params, "student_params": student_params,
            "param_ratio": teacher_params / student_params,
            "teacher_val_auc": teacher.info.get("eval_metrics", {}).get("val_auc"),
            "distilled_val_auc": result.distilled.eval_metrics["val_auc"],
            "scratch_val_auc": result.scratch.eval_metrics["val_auc"]})
