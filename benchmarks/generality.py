"""The default preset on more than the taxi data, against scikit-learn on the very same split.

For each data set (the taxi CSV, and scikit-learn's bundled iris, wine and breast cancer sets
written to CSV at run time with string labels and 2% of the feature cells left empty), runs
`local_runner.py` with its defaults in a subprocess, timed, with the peak resident memory of
that run (the process and everything it waited for, from `os.wait4`). Then it reads back the
train and eval splits CsvExampleGen wrote and fits two anchors on the train split, scored on
the eval split (rows with a class the training split lacks are left out, as the pipeline does):
LogisticRegression (median imputation, standard scaling, one-hot text) and
HistGradientBoostingClassifier (native missing values and categories).

Prints a table, then as its last line one JSON object:
{"<set>": {"teacher_acc", "deployed_acc", "anchor_acc", "teacher_auc", "deployed_auc",
           "blessed", "seconds", "peak_rss_mb", ...}, ...}

    python benchmarks/generality.py [--sets taxi,iris,wine,breast_cancer] [--seed 42]
        [--workdir runs/generality] [-- extra local_runner.py flags]
"""
import argparse
import glob
import json
import os
import shutil
import sys

from common import ROOT, print_result, run_pipeline

sys.path.insert(0, os.path.join(ROOT, "tests"))
from csv_samples import SKLEARN_SETS, sklearn_csv  # noqa: E402

from pipeline import configs  # noqa: E402

SETS = ("taxi", *SKLEARN_SETS)


def read_split(examples_uri, split):
    """A split of CsvExampleGen's output as a DataFrame (None for missing values)."""
    import pandas as pd
    import tensorflow as tf

    from common import examples_artifact
    from modules import data, fileio

    [pattern] = data.split_files(examples_artifact(examples_uri), split)
    files = sorted(fileio.glob(pattern))
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        row = {}
        for name, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value) if kind else []
            value = values[0] if values else None
            row[name] = value.decode("utf-8") if isinstance(value, bytes) else value
        rows.append(row)
    return pd.DataFrame(rows)


def anchor_scores(train, evaluation, label, drop):
    """Accuracy of LogisticRegression and HistGradientBoosting fitted on train, on eval."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    train = train[train[label].notna() & (train[label] != "")]
    evaluation = evaluation[evaluation[label].isin(set(train[label]))]
    features = [c for c in train.columns if c != label and c not in drop]
    text = [c for c in features if train[c].dtype == object]
    numeric = [c for c in features if c not in text]

    def frame(df):
        out = df[features].copy()
        for c in text:
            out[c] = out[c].fillna("").astype(str)
        for c in numeric:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
        return out

    x_train, x_eval = frame(train), frame(evaluation)
    y_train, y_eval = train[label].astype(str), evaluation[label].astype(str)
    logistic = make_pipeline(ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("text", OneHotEncoder(handle_unknown="ignore", min_frequency=5), text)]),
        LogisticRegression(max_iter=5000))
    boosting = make_pipeline(ColumnTransformer([
        ("text", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan),
         text)], remainder="passthrough"),
        HistGradientBoostingClassifier(categorical_features=list(range(len(text))),
                                       random_state=0))
    scores = {}
    for name, model in (("logistic", logistic), ("boosting", boosting)):
        model.fit(x_train, y_train)
        scores[name] = float((model.predict(x_eval) == y_eval.to_numpy()).mean())
    return scores, len(train), len(evaluation)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workdir", default=os.path.join(ROOT, "runs", "generality"))
    p.add_argument("extra", nargs="*", help="more local_runner.py flags (after --)")
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    results = {}
    for name in args.sets.split(","):
        if name not in SETS:
            sys.exit(f"--sets: unknown set '{name}'; choose from {', '.join(SETS)}")
        output = os.path.join(args.workdir, name)
        shutil.rmtree(output, ignore_errors=True)
        if name == "taxi":
            data, label, drop = configs.default_data_path(), configs.DEFAULT_LABEL, ["tips"]
        else:
            (data, label), drop = sklearn_csv(name, args.workdir, seed=args.seed), []
        flags = ["--data", data, "--label", label, "--drop", ",".join(drop), "--output", output,
                 "--seed", str(args.seed), *args.extra]
        code, seconds, rss = run_pipeline(flags, os.path.join(args.workdir, f"{name}.log"))
        summary_path = os.path.join(output, "report", "summary.json")
        if code != 0 or not os.path.exists(summary_path):
            print(f"{name}: the run failed (exit {code}); see {args.workdir}/{name}.log")
            results[name] = {"failed": True, "exit_code": code, "seconds": round(seconds, 1)}
            continue
        summary = json.load(open(summary_path))
        candidates, deployed = summary["candidates"], summary["deployable"]
        [examples] = glob.glob(os.path.join(output, "pipeline_root", "CsvExampleGen",
                                            "examples", "*"))
        anchors, train_rows, eval_rows = anchor_scores(
            read_split(examples, "train"), read_split(examples, "eval"), label, drop)
        results[name] = {
            "teacher_acc": candidates["teacher"]["accuracy"],
            "deployed_acc": candidates[deployed]["accuracy"],
            "anchor_acc": max(anchors.values()),
            "logistic_acc": anchors["logistic"], "boosting_acc": anchors["boosting"],
            "teacher_auc": candidates["teacher"]["auc"],
            "deployed_auc": candidates[deployed]["auc"],
            "deployed_gzip_bytes": candidates[deployed]["gzip_bytes"],
            "teacher_gzip_bytes": candidates["teacher"]["gzip_bytes"],
            "blessed": bool(summary["blessed"] and summary["pushed_to"]),
            "seconds": round(seconds, 1), "peak_rss_mb": round(rss),
            "train_rows": train_rows, "eval_rows": eval_rows,
        }
        print(f"{name}: done in {seconds:.0f} s", flush=True)
    header = ("set", "train/eval", "teacher acc", "deployed acc", "anchor acc (LR/HGB)",
              "teacher AUC", "deployed AUC", "blessed", "s", "MB")
    lines = [header]
    for name, r in results.items():
        if r.get("failed"):
            lines.append((name, "failed", *[""] * 8))
            continue
        lines.append((name, f"{r['train_rows']}/{r['eval_rows']}", f"{r['teacher_acc']:.4f}",
                      f"{r['deployed_acc']:.4f}",
                      f"{r['anchor_acc']:.4f} ({r['logistic_acc']:.3f}/{r['boosting_acc']:.3f})",
                      f"{r['teacher_auc']:.4f}", f"{r['deployed_auc']:.4f}", str(r["blessed"]),
                      f"{r['seconds']:.0f}", str(r["peak_rss_mb"])))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)))
    print_result(results)


if __name__ == "__main__":
    main()
