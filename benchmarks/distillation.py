"""Teacher vs student from scratch vs distilled student, over seeds, on the default data.

Each seed trains the teacher (the Trainer's default configuration), then the distilled student
and the control (same architecture, budget and seed, labels only) exactly as the Distiller
does. Prints per-seed values, then as its last line the means:
{"teacher_auc", "scratch_auc", "distilled_auc", "param_ratio", ...}.

    python benchmarks/distillation.py [--seeds 3] [--student-units 16] [--alpha 0.3] [--temperature 4]
"""
import argparse

from common import mean, prepared_default_data, print_result

from components.distiller.executor import student_config
from modules import distillation, evaluation, training
from modules.model import ModelConfig, build_core


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--student-layers", type=int, default=1)
    p.add_argument("--student-units", type=int, default=16)
    p.add_argument("--alpha", type=float, default=0.3)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--epochs", type=int, default=20)
    args = p.parse_args()
    prepared = prepared_default_data()
    dim, classes = prepared.x_train.shape[1], prepared.num_classes
    teacher_config = ModelConfig()
    rows = []
    for seed in range(args.seeds):
        teacher = training.train_model(
            lambda: build_core(dim, classes, teacher_config, seed=seed, name="teacher"),
            prepared, teacher_config, seed=seed, verbose=False).model
        config = student_config({"batch_size": teacher_config.batch_size,
                                 "activation": teacher_config.activation}, {},
                                args.student_layers, args.student_units, args.epochs)
        students = distillation.train_students(prepared, teacher, config, alpha=args.alpha,
                                               temperature=args.temperature, seed=seed,
                                               verbose=False)

        def auc(model):
            predict, _ = evaluation.keras_predictor(model)
            return evaluation.classification_metrics(prepared.y_eval,
                                                     predict(prepared.x_eval))["auc"]

        row = {"seed": seed, "teacher_auc": auc(teacher),
               "scratch_auc": auc(students.scratch.model),
               "distilled_auc": auc(students.distilled.model),
               "teacher_params": teacher.count_params(),
               "student_params": students.distilled.model.count_params()}
        row["param_ratio"] = row["teacher_params"] / row["student_params"]
        print("seed", row, flush=True)
        rows.append(row)
    result = {key: mean([r[key] for r in rows]) for key in rows[0] if key != "seed"}
    result.update({"seeds": args.seeds, "alpha": args.alpha, "temperature": args.temperature,
                   "student": f"{args.student_layers}x{args.student_units}",
                   "distilled_minus_scratch": result["distilled_auc"] - result["scratch_auc"],
                   "teacher_minus_distilled": result["teacher_auc"] - result["distilled_auc"]})
    print_result(result)


if __name__ == "__main__":
    main()
