"""Size, speed and quality of the compressed models against the teacher, on the default data.

Runs the pipeline's own steps in one process: teacher (Trainer defaults), the student the
Distiller would choose (size search, alpha/temperature grid, scratch control), pruned student (Pruner defaults: 80% sparsity, distilling while it
fine-tunes) and the int8 TFLite model (Quantizer). Every model is measured by
`modules.verdict.evaluation.evaluate_candidate`, the Evaluator's path: ROC AUC on the validation
split,
bytes on disk and gzip bytes (SavedModel folders tarred, .tflite files as they are), and
single-example CPU latency. The timed call takes one preprocessed float32 feature vector and
returns class probabilities: for Keras models one call of the compiled inference function, for
TFLite input quantization + invoke + reading the output (one interpreter thread); the
preprocessing, the same for every model, is not timed. Median of 300 calls after 50 warm-up.
Prints per-seed lines, then as its last line the means per model and the ratios.

    python benchmarks/compression.py [--seeds 3]
"""
import argparse
import os
import tempfile

from common import mean, prepared_default_data, print_result

from modules.compression import distillation, pruning, quantization
from modules.learning import training
from modules.models import export
from modules.models.hyperparameters import ModelConfig
from modules.models.model import build_core
from modules.settings import Blessing, Training
from modules.verdict import evaluation

MODELS = ("teacher", "distilled", "pruned", "int8")
KEYS = ("auc", "size_bytes", "gzip_bytes", "latency_ms_p50")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sparsity", type=float, default=0.8)
    p.add_argument("--prune-epochs", type=int, default=6)
    args = p.parse_args()
    prepared = prepared_default_data()
    dim, classes = prepared.dim, prepared.num_classes
    teacher_config = ModelConfig()
    per_seed = []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in range(args.seeds):
            teacher = training.train_model(
                lambda: build_core(dim, classes, teacher_config, seed=seed, name="teacher"),
                prepared, teacher_config, verbose=False, run=Training(seed=seed)).model
            config = distillation.student_config({"batch_size": teacher_config.batch_size,
                                                  "activation": teacher_config.activation},
                                                 "float32", 20)
            search = distillation.search_student(
                prepared, teacher, config, Blessing(max_auc_drop=0.005, max_accuracy_drop=0.01),
                Training(seed=seed))
            selected = search.selected
            student = distillation.rebuild(selected, prepared, config)
            distilling = ({"loss_fn": distillation.distillation_loss(selected.alpha,
                                                                     selected.temperature)}
                          if selected.origin == "distilled" else {})
            pruned, _ = pruning.prune(
                student, distillation.with_teacher_logits(teacher, prepared) if distilling
                else prepared, config, target_sparsity=args.sparsity,
                epochs=args.prune_epochs, verbose=False, **distilling, run=Training(seed=seed))
            results = {}
            for name, model in (("teacher", teacher), ("distilled", student),
                                ("pruned", pruned)):
                folder = os.path.join(workdir, f"{seed}-{name}")
                export.export_model(folder, model, prepared.preprocessor, prepared.columns,
                                    prepared.label, prepared.classes, {})
                predict, single = evaluation.keras_predictor(model)
                results[name] = evaluation.evaluate_candidate(
                    predict, single, prepared.held_out,
                    os.path.join(folder, export.SERVING_DIR), model.count_params())
            path = os.path.join(workdir, f"{seed}-int8.tflite")
            with open(path, "wb") as f:
                f.write(quantization.convert(pruned, "int8", quantization.representative_sample(
                    prepared.train, seed=seed)))
            predict, single = evaluation.tflite_predictor(quantization.TFLiteModel.from_file(path))
            results["int8"] = evaluation.evaluate_candidate(
                predict, single, prepared.held_out, path, pruned.count_params())
            results["sparsity"] = pruning.sparsity_report(pruned)["pruned_weights_sparsity"]
            results["student"] = selected.row()
            print("seed", seed, selected.size, selected.origin,
                  {m: {k: round(results[m][k], 5) for k in KEYS} for m in MODELS},
                  f"sparsity {results['sparsity']:.3f}", flush=True)
            per_seed.append(results)
    summary = {m: {k: mean([r[m][k] for r in per_seed]) for k in KEYS} for m in MODELS}
    summary["teacher_gzip_over_int8_gzip"] = (summary["teacher"]["gzip_bytes"]
                                              / summary["int8"]["gzip_bytes"])
    summary["teacher_p50_over_int8_p50"] = (summary["teacher"]["latency_ms_p50"]
                                            / summary["int8"]["latency_ms_p50"])
    summary["teacher_minus_int8_auc"] = summary["teacher"]["auc"] - summary["int8"]["auc"]
    summary["sparsity"] = mean([r["sparsity"] for r in per_seed])
    summary["seeds"] = args.seeds
    summary["students"] = [f"{r['student']['size']} {r['student']['origin']}" for r in per_seed]
    print_result(summary)


if __name__ == "__main__":
    main()
