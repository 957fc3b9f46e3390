"""Baselines executor: trains the linear model and the trees, chooses the teacher, reports."""
import concurrent.futures
import logging
import os

from components.artifacts import write_report
from components.base import StepExecutor, StepInputs
from modules import fileio
from modules.learning import baselines, console
from modules.models import export
from modules.settings import Baselines
from modules.verdict import evaluation

log = logging.getLogger(__name__)


class Executor(StepExecutor):
    STAGE = Baselines
    MODEL_KEY = "network"

    def run(self, step: StepInputs) -> None:
        # TensorFlow Decision Forests: only the step that trains them
        from modules.models import trees

        network, prepared, stage = step.model, step.prepared, step.stage
        seed = step.settings.training.seed
        common = {"seed": seed, "rows": prepared.row_counts, "network_uri": step.uri("network")}
        # The trees train on a thread while the linear model trains here: YDF's C++ learner
        # runs outside the GIL and the small model's steps leave a core idle (taxi: 13.1-13.5 s
        # one after the other, 9.5-10.0 s so; the same models).
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="trees") as pool:
            training_trees = pool.submit(trees.train_trees, prepared, seed=seed,
                                         max_rows=stage.trees_sample_rows or prepared.train.rows)
            linear = baselines.train_linear(
                prepared, step.settings.training,
                run_dir=os.path.join(step.output_uri("report"), "linear"))
            forest = training_trees.result()
        scores = {"linear": linear.scores}
        export.export_model(step.output_uri("linear"), linear.core, prepared.preprocessor,
                            prepared.columns, prepared.label, prepared.classes, {
                                **common, "role": "linear", "kind": "linear",
                                "hyperparameters": {**baselines.LINEAR_CONFIG.to_dict(),
                                                    "l2": linear.l2},
                                "epochs_trained": linear.epochs_trained,
                                "history": linear.history,
                                "metrics": scores["linear"].metrics()})
        scores["trees"] = evaluation.keras_scores(forest, prepared.held_out)
        export.export_model(step.output_uri("trees"), forest, prepared.preprocessor,
                            prepared.columns, prepared.label, prepared.classes, {
                                **common, "role": "trees", "kind": "trees",
                                "hyperparameters": {"max_rows": stage.trees_sample_rows},
                                "trees": forest.info,
                                "metrics": scores["trees"].metrics()})
        scores["network"] = evaluation.keras_scores(network.core, prepared.held_out)
        choice = baselines.choose_teacher(scores, seed=seed)
        source = (step.uri("network") if choice.kind == "network"
                  else step.output_uri(choice.kind))
        teacher_uri = step.output_uri("teacher")
        fileio.copytree(source, teacher_uri)
        fileio.write_json(os.path.join(teacher_uri, export.INFO_FILE), {
            **export.read_info(source), "role": "teacher", "kind": choice.kind,
            "source_uri": source, "teacher_choice": choice.reason()})
        validation = {name: scored.metrics() for name, scored in scores.items()}
        write_report(step.output_dict["report"][0], {
            "teacher_kind": choice.kind, "reason": choice.reason(),
            "challenges": {name: vars(gap) for name, gap in choice.challenges.items()},
            "validation": validation, "linear_l2": linear.l2,
            "trees_sample_rows": stage.trees_sample_rows})
        for name, metrics in validation.items():
            log.info("baselines: %s: validation accuracy %.4f, AUC %.4f, log loss %.4f", name,
                     metrics["accuracy"], metrics["auc"], metrics["log_loss"])
        log.info("baselines: the teacher is %s", choice.reason(), extra=console.LOG_ONLY)
