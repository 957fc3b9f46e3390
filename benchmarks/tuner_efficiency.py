"""RandomSearch against Hyperband on the same search space and data, over search seeds.

RandomSearch: 20 trials of 10 epochs; Hyperband: max_epochs 10, factor 3 (one iteration).
Both use the Tuner's own `LoopTuner` (trials train with the project's loop; Hyperband continues
promoted trials from their checkpoints). Epochs are those actually trained: an epoch
continued from a checkpoint is not counted twice. Early stopping is off, so a trial trains
every epoch it is given. Prints per-seed lines, then as its last line the means:
{"random_best", "random_epochs", "hyperband_best", "hyperband_epochs", ...}.

    python benchmarks/tuner_efficiency.py [--seeds 3]
"""
import argparse
import tempfile

from common import mean, median, prepared_default_data, print_result

from modules.learning.tuner import make_tuner, trials_table
from modules.models.hyperparameters import DEFAULT_SEARCH_SPACE
from modules.settings import RunSettings, Training, Tuning


def search(prepared, kind: str, seed: int, directory: str, trials: int, max_epochs: int):
    # patience >= epochs turns early stopping off inside trials: each trains what it is given
    space = {**DEFAULT_SEARCH_SPACE, "early_stopping_patience": max_epochs}
    settings = RunSettings(label="big_tipper", training=Training(seed=seed), verbose=False)
    tuner = make_tuner(prepared, settings, Tuning(tuner=kind, trials=trials,
                                                  max_epochs=max_epochs, search_space=space),
                       directory, project_name=kind)
    tuner.search(verbose=0)
    table = [row for row in trials_table(tuner) if row["status"] == "COMPLETED"]
    return {"best": max(row["score"] for row in table),
            "epochs": sum(row["epochs_trained"] for row in table),
            "trials": len(table), "median_score": median([row["score"] for row in table])}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--random-trials", type=int, default=20)
    p.add_argument("--max-epochs", type=int, default=10)
    args = p.parse_args()
    prepared = prepared_default_data()
    rows = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as directory:
            random = search(prepared, "random", seed, directory, args.random_trials,
                            args.max_epochs)
            hyperband = search(prepared, "hyperband", seed, directory, 1000, args.max_epochs)
        row = {"seed": seed, **{f"random_{k}": v for k, v in random.items()},
               **{f"hyperband_{k}": v for k, v in hyperband.items()}}
        print("seed", row, flush=True)
        rows.append(row)
    result = {key: mean([r[key] for r in rows]) for key in rows[0] if key != "seed"}
    result["hyperband_epochs_over_random"] = result["hyperband_epochs"] / result["random_epochs"]
    result["random_minus_hyperband_best"] = result["random_best"] - result["hyperband_best"]
    result["seeds"] = args.seeds
    print_result(result)


if __name__ == "__main__":
    main()
