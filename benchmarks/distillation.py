"""Teacher vs student from scratch vs distilled student, over seeds, on the default data.

Each seed trains the teacher (the Trainer's default configuration), then runs the Distiller's
search (`modules.compression.distillation.search_student`) at one fixed student size: every
alpha/temperature of the grid (or the one given) and the control (same architecture, budget
and seed, labels only). Prints per-seed values, then as its last line the means:
{"teacher_auc", "scratch_auc", "distilled_auc" (the best grid point on the validation split),
 "param_ratio", ...}.

    python benchmarks/distillation.py [--seeds 3] [--student-units 16] [--alpha A --temperature T]
"""
import argparse

from common import mean, prepared_default_data, print_result

from modules.compression import distillation
from modules.learning import training
from modules.models.hyperparameters import ModelConfig
from modules.models.model import build_core
from modules.settings import Blessing, Training


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--student-layers", type=int, default=1)
    p.add_argument("--student-units", type=int, default=16)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--epochs", type=int, default=20)
    args = p.parse_args()
    prepared = prepared_default_data()
    dim, classes = prepared.dim, prepared.num_classes
    teacher_config = ModelConfig()
    grid = distillation.filter_choices(distillation.DISTILLATION_GRID, args.alpha,
                                       args.temperature)
    rows = []
    for seed in range(args.seeds):
        teacher = training.train_model(
            lambda: build_core(dim, classes, teacher_config, seed=seed, name="teacher"),
            prepared, teacher_config, verbose=False, run=Training(seed=seed)).model
        config = distillation.student_config({"batch_size": teacher_config.batch_size,
                                              "activation": teacher_config.activation},
                                             "float32", args.epochs)
        search = distillation.search_student(
            prepared, teacher, config, sizes=[(args.student_layers, args.student_units)],
            grid=grid, run=Training(seed=seed),
            budget=Blessing(max_auc_drop=0.005, max_accuracy_drop=0.01))
        best = max(search.grid, key=distillation.rank)
        row = {"seed": seed, "teacher_auc": search.teacher_metrics["auc"],
               "scratch_auc": search.scratch.metrics["auc"],
               "distilled_auc": best.metrics["auc"],
               "teacher_accuracy": search.teacher_metrics["accuracy"],
               "scratch_accuracy": search.scratch.metrics["accuracy"],
               "distilled_accuracy": best.metrics["accuracy"],
               "teacher_params": teacher.count_params(), "student_params": best.params}
        row["param_ratio"] = row["teacher_params"] / row["student_params"]
        print("seed", row, "best alpha/T", (best.alpha, best.temperature), flush=True)
        rows.append(row)
    result = {key: mean([r[key] for r in rows]) for key in rows[0] if key != "seed"}
    result.update({"seeds": args.seeds, "grid": grid,
                   "student": f"{args.student_layers}x{args.student_units}",
                   "distilled_minus_scratch": result["distilled_auc"] - result["scratch_auc"],
                   "teacher_minus_distilled": result["teacher_auc"] - result["distilled_auc"]})
    print_result(result)


if __name__ == "__main__":
    main()
