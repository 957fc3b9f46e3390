"""The run report: a terminal table, `<output>/report/summary.json` and `index.html`.

Everything comes from ML Metadata and the artifacts it points to, so the report describes the
run that actually happened (cached components included).
"""
import base64
import html
import io
import json
import os
from typing import Any, Dict, List, Optional

from tabulate import tabulate

from modules.verdict.candidates import ORDER as CANDIDATE_ORDER  # SavedModels, then TFLite
from pipeline import metadata
# (key, header, format); a key with a "<key>_ci" interval shows it after the value.
TABLE_COLUMNS = (("auc", "AUC (95% CI)", ".4f"), ("accuracy", "accuracy (95% CI)", ".4f"),
                 ("log_loss", "log loss (95% CI)", ".4f"),
                 ("precision", "precision", ".3f"), ("recall", "recall", ".3f"),
                 ("params", "params", "d"),
                 ("size_bytes", "bytes", "d"), ("gzip_bytes", "gzip bytes", "d"),
                 ("latency_ms_p50", "p50 ms", ".3f"))


def _read_json(path: str) -> Optional[Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _output_uri(record: Optional[metadata.ExecutionRecord], key: str) -> Optional[str]:
    if record is None or not record.outputs.get(key):
        return None
    return record.outputs[key][0].uri


def build_summary(records: List[metadata.ExecutionRecord]) -> Dict[str, Any]:
    """summary.json: candidates, blessing, push, timings, plus what the plots need."""
    by_id = {r.component_id: r for r in records}
    evaluation = _read_json(os.path.join(_output_uri(by_id.get("Evaluator"), "evaluation") or "",
                                         "report.json")) or {}
    candidates = {name: evaluation["candidates"][name] for name in CANDIDATE_ORDER
                  if name in evaluation.get("candidates", {})}
    pushed_to = None
    pusher = by_id.get("Pusher")
    if pusher and pusher.outputs.get("pushed_model"):
        from tfx.types import standard_artifacts  # reads either encoding of the property

        pushed = standard_artifacts.PushedModel()
        pushed.set_mlmd_artifact(pusher.outputs["pushed_model"][0])
        pushed_to = (pushed.get_custom_property("pushed_destination")
                     if pushed.has_custom_property("pushed_destination") else None)
    histories = {}
    for component, key, name in (("Trainer", "model", "teacher"),
                                 ("Distiller", "student", "student"),
                                 ("Distiller", "student_scratch", "student_scratch"),
                                 ("Pruner", "pruned_model", "pruned")):
        info = _read_json(os.path.join(_output_uri(by_id.get(component), key) or "",
                                       "model_info.json"))
        if info and info.get("history"):
            histories[name] = info["history"]
    deployable = evaluation.get("deployable")
    return {
        "candidates": candidates,
        "deployable": deployable,
        "blessed": bool(evaluation.get("blessed", False)),
        "reasons": evaluation.get("reasons", ["the Evaluator did not run"]),
        "pushed_to": pushed_to,
        "timings_s": {r.component_id: round(r.seconds, 2) for r in records},
        "states": {r.component_id: r.state for r in records},
        "baseline": evaluation.get("baseline"),
        "slices": evaluation.get("slices", {}),
        "slice_sample": evaluation.get("slice_sample"),
        "rows": evaluation.get("rows"),
        "histories": histories,
        "tuner_trials": _read_json(os.path.join(_output_uri(by_id.get("Tuner"), "tuner_results")
                                                or "", "trials.json")) or [],
        "sparsity": _read_json(os.path.join(_output_uri(by_id.get("Pruner"), "sparsity") or "",
                                            "report.json")),
        "distillation": _read_json(os.path.join(_output_uri(by_id.get("Distiller"), "metrics")
                                                or "", "report.json")),
        "missing_values": missing_values(by_id.get("StatisticsGen")),
        "columns": column_report(by_id),
        "majority_class": evaluation.get("majority_class"),
        "teacher_kind": evaluation.get("teacher_kind"),
        "device": evaluation.get("device"),
        "baselines": _read_json(os.path.join(_output_uri(by_id.get("Baselines"), "report")
                                             or "", "report.json")),
        "trivial_model": evaluation.get("trivial_model"),
        "split": evaluation.get("split"),
        "test_rows": (evaluation.get("rows") or {}).get("test_rows"),
        "interval": (evaluation.get("thresholds") or {}).get("interval"),
    }


def missing_values(record: Optional[metadata.ExecutionRecord]) -> Dict[str, int]:
    """Per column, how many values were missing (empty, or a --na-values marker) in the
    rows CsvExampleGen wrote, from StatisticsGen's statistics of every split."""
    if record is None or not record.outputs.get("statistics"):
        return {}
    from tfx.components.statistics_gen import stats_artifact_utils
    from tfx.types import artifact_utils, standard_artifacts

    artifact = standard_artifacts.ExampleStatistics()
    artifact.set_mlmd_artifact(record.outputs["statistics"][0])
    counts: Dict[str, int] = {}
    for split in artifact_utils.decode_split_names(artifact.split_names):
        for dataset in stats_artifact_utils.load_statistics(artifact, split).proto().datasets:
            for feature in dataset.features:
                stats = feature.num_stats if feature.HasField("num_stats") else (
                    feature.string_stats)
                name = feature.path.step[0] if feature.path.step else feature.name
                counts[name] = counts.get(name, 0) + int(stats.common_stats.num_missing)
    return dict(sorted(counts.items()))


def column_report(by_id: Dict[str, metadata.ExecutionRecord]) -> List[Dict[str, Any]]:
    """What each CSV column became: its type as read, the role it got and why, its range
    or number of values, its missing count, and a flag on a text column whose values are
    mostly numbers. From CsvExampleGen's column plan (columns.json), the run's label and
    --drop, and the preprocessor the Trainer fitted (preprocessor.json); [] when a part is
    missing (a run from before the plan existed)."""
    from modules.reading.csvfile import COLUMNS_FILE
    from modules.models.export import PREPROCESSOR_FILE
    from modules.settings import RunSettings

    plan = _read_json(os.path.join(_output_uri(by_id.get("CsvExampleGen"), "examples") or "",
                                   COLUMNS_FILE))
    preprocessor = _read_json(os.path.join(_output_uri(by_id.get("Trainer"), "model") or "",
                                           PREPROCESSOR_FILE))
    evaluator = by_id.get("Evaluator")
    if not plan or not preprocessor or evaluator is None:
        return []
    run = RunSettings.from_json(evaluator.properties()[RunSettings.KEY])
    numeric = {spec["name"] for spec in preprocessor["numeric"]}
    categorical = {spec["name"]: spec for spec in preprocessor["categorical"]}
    report = []
    for column in plan["columns"]:
        name, row = column["name"], {k: column[k] for k in (
            "name", "type", "values", "missing", "min", "max", "distinct")}
        if column["left_out"] or name in run.drop:
            row.update(role="left out", why=column["left_out"] or "--drop")
        elif name == run.label:
            row.update(role="label")
        elif name in numeric:
            row.update(role="numeric")
        elif name in categorical:
            spec = categorical[name]
            row.update(role="categorical", vocabulary=len(spec["vocabulary"]),
                       why="integer codes" if spec["source"] == "numeric" else None)
        else:
            row.update(role="unused", why="no values" if not column["values"]
                       else "not in the schema")
        if column["type"] == "string" and column["numbers"] * 2 >= column["values"] > 0:
            row["flag"] = (f"read as text, but {column['numbers']} of its {column['values']} "
                           f"values are numbers")
        report.append(row)
    return report


def column_lines(columns: List[Dict[str, Any]]) -> List[str]:
    """The column report in the terminal: one line per role, and one for flagged columns."""
    if not columns:
        return []

    def described(row: Dict[str, Any]) -> str:
        if row["role"] == "categorical":
            codes = row.get("why") == "integer codes" or row.get("distinct") is None
            count = row["vocabulary"] if codes else row["distinct"]
            unit = ("code" if codes else "value") + ("" if count == 1 else "s")
            return f"{row['name']} ({count} {unit})"
        if row["role"] in ("left out", "unused"):
            return f"{row['name'] or '(no name)'} ({row['why']})"
        return row["name"]

    lines = ["Columns:"]
    for role in ("label", "numeric", "categorical", "left out", "unused"):
        rows = [r for r in columns if r["role"] == role]
        if rows:
            count = "" if role == "label" else f" {len(rows)}"
            lines.append(f"  {role}{count}: " + ", ".join(described(r) for r in rows))
    flagged = [r for r in columns if r.get("flag")]
    if flagged:
        lines.append("  flagged: " + "; ".join(f"{r['name']} {r['flag']}" for r in flagged))
    return lines


# The terminal shows the paired drops from the teacher instead of precision and recall (the
# HTML and summary.json have everything).
TERMINAL_COLUMNS = tuple(c for c in TABLE_COLUMNS if c[0] not in ("precision", "recall"))


def _cell(metrics: Dict[str, Any], key: str, fmt: str) -> str:
    """A value, with its 95% interval where the metrics hold one: "0.9531 (0.944-0.961)"."""
    if metrics.get(key) is None:
        return "-"
    text = format(metrics[key], fmt)
    interval = metrics.get(f"{key}_ci")
    if interval and None not in interval:
        text += f" ({interval[0]:.3f}-{interval[1]:.3f})"
    return text


def _drop_cell(metrics: Dict[str, Any], key: str) -> str:
    """A paired drop from the teacher with its interval: "+0.0050 (-0.002-+0.012)"."""
    if metrics.get(f"{key}_drop") is None:
        return "-"
    low, high = metrics[f"{key}_drop_ci"]
    return f"{metrics[f'{key}_drop']:+.4f} ({low:+.3f}-{high:+.3f})"


def candidate_table(summary: Dict[str, Any]) -> str:
    rows = []
    for name, metrics in summary["candidates"].items():
        status = ""
        if name == summary["deployable"]:
            status = "BLESSED" if summary["blessed"] else "not blessed"
        rows.append([name] + [_cell(metrics, key, fmt) for key, _, fmt in TERMINAL_COLUMNS]
                    + [_drop_cell(metrics, "accuracy"), _drop_cell(metrics, "auc"), status])
    return tabulate(rows, headers=["candidate"] + [h for _, h, _ in TERMINAL_COLUMNS]
                    + ["acc drop (95% CI)", "AUC drop (95% CI)", ""],
                    disable_numparse=True)


def split_line(summary: Dict[str, Any]) -> Optional[str]:
    """What the table's figures are measured on, and the trivial model to beat."""
    if not summary.get("test_rows"):
        return None
    interval = summary.get("interval") or {}
    line = (f"On the test split ({summary['test_rows']:,} rows, read by the Evaluator alone); "
            f"95% intervals: {interval.get('method', 'bootstrap')}, "
            f"{interval.get('resamples', '?')} resamples")
    trivial = summary.get("trivial_model")
    if trivial:
        line += (f". Trivial model (the training class frequencies): log loss "
                 f"{trivial['log_loss']:.4f}")
    return line


def distillation_lines(distillation: Optional[Dict[str, Any]]) -> List[str]:
    """The student search and the distilled-or-scratch decision, in words."""
    if not distillation or "selected" not in distillation:
        return []
    share = distillation["budget_share"]

    def listed(rows):
        return ", ".join(f"{row['size']} {row['budget_left']:+.2f}" for row in rows)

    tried = listed([row for row in distillation["sizes"] if not row.get("synthetic_rows")])
    synthetic = [row for row in distillation["sizes"] if row.get("synthetic_rows")]
    if synthetic:
        tried += (f"; again with {synthetic[0]['synthetic_rows']} synthetic rows the teacher "
                  f"labels: {listed(synthetic)}")
    selected = distillation["selected"]
    verdict = ("the first within" if distillation["size_within_budget"]
               else "none within; kept the best of")
    lines = [f"Student size search (budget left, need >= {share:.2f}): {tried}: {verdict} "
             f"{share:.0%} of the blessing budget -> {selected['size']} "
             f"({selected['params']} parameters, {distillation['param_ratio']:.0f}x fewer than "
             f"the teacher)"]
    scratch = distillation["scratch"]
    best = max(distillation["grid"], key=lambda r: (r["budget_left"], -r["val_log_loss"]))
    winner, loser = (best, scratch) if selected["origin"] == "distilled" else (scratch, best)
    lines.append(f"Student: {winner['how']} beat {loser['how']}"
                 f"{' (the control)' if loser is scratch else ''}: validation accuracy "
                 f"{winner['val_accuracy'] - loser['val_accuracy']:+.4f}, AUC "
                 f"{winner['val_auc'] - loser['val_auc']:+.4f}; the Pruner starts from it")
    return lines


def pruning_lines(sparsity: Optional[Dict[str, Any]]) -> List[str]:
    """The sparsities tried and the one kept."""
    if not sparsity or not sparsity.get("attempts"):
        return []
    tried = ", ".join(f"{a['sparsity']:.2f} {a['budget_left']:+.2f}"
                      for a in sparsity["attempts"])
    kept = sparsity["sparsity"]
    return [f"Pruning (budget left per sparsity): {tried} -> "
            + (f"sparsity {kept:.2f}" if kept else "kept dense")
            + ("" if kept == sparsity["target_sparsity"] else
               f" (target {sparsity['target_sparsity']:.2f} took too much of the budget)")]


def terminal_text(summary: Dict[str, Any]) -> str:
    lines = [line for line in [split_line(summary)] if line]
    lines += [candidate_table(summary), ""]
    lines += column_lines(summary.get("columns") or [])
    missing = {k: v for k, v in (summary.get("missing_values") or {}).items() if v}
    if missing:
        lines.append("Missing values (empty or a --na-values marker): "
                     + ", ".join(f"{name} {count}" for name, count in missing.items()))
    if summary.get("baselines"):
        lines.append(f"Teacher: {summary['baselines']['reason']}")
    lines += distillation_lines(summary.get("distillation"))
    lines += pruning_lines(summary.get("sparsity"))
    verdict = "blessed" if summary["blessed"] else "NOT blessed"
    lines.append(f"Deployable candidate ({summary['deployable']}): {verdict}")
    lines += [f"  - {reason}" for reason in summary["reasons"]]
    device = summary.get("device") or {}
    micro = device.get("tflite_micro") or {}
    if micro:
        lines.append(
            f"On a device: {summary['deployable']} takes raw features; TFLite Micro "
            + (f"runs it in a {micro['arena_bytes']:,}-byte arena"
               + (f", within {micro['max_abs_difference']:.1e} of the evaluated probabilities"
                  if micro.get("max_abs_difference") is not None else "")
               if micro.get("runs") else
               f"cannot run it ({', '.join(micro.get('outside_tflite_micro') or []) or 'failed'})")
            + f"; conformance kit within {device.get('conformance_max_abs_difference', 0):.4f}"
              f" of serving_raw")
    lines.append(f"Pushed to: {summary['pushed_to'] or 'nothing pushed'}")
    cached = [k for k, state in summary["states"].items() if state == "cached"]
    if cached:  # each component's time is on its "finished" line; the HTML has them all
        lines.append(f"Cached (not run again): {', '.join(cached)}")
    return "\n".join(lines)


# -- HTML ------------------------------------------------------------------------------------

def _figure_html(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{encoded}">'


def _plots(summary: Dict[str, Any]) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    if summary["histories"]:
        figure, axes = plt.subplots(1, 2, figsize=(11, 3.6))
        for name, history in summary["histories"].items():
            epochs = range(1, len(history.get("val_auc", [])) + 1)
            axes[0].plot(list(epochs), history.get("val_auc", []), marker="o", ms=3, label=name)
            axes[1].plot(list(range(1, len(history.get("loss", [])) + 1)), history.get("loss", []),
                         marker="o", ms=3, label=name)
        axes[0].set(title="Validation ROC AUC per epoch", xlabel="epoch", ylabel="AUC")
        axes[1].set(title="Training loss per epoch", xlabel="epoch", ylabel="loss")
        axes[0].legend()
        figures.append(_figure_html(figure))
    trials = [t for t in summary["tuner_trials"] if t.get("score") is not None]
    if trials:
        figure, axis = plt.subplots(figsize=(11, 3.2))
        ids = [int(t["trial_id"]) for t in trials]
        sizes = [20 + 25 * t["epochs_trained"] for t in trials]
        axis.scatter(ids, [t["score"] for t in trials], s=sizes, alpha=0.7)
        best = min(trials, key=lambda t: t["score"])
        axis.annotate("best", (int(best["trial_id"]), best["score"]))
        axis.set(title="Tuner trials: best validation log loss (marker size: epochs trained)",
                 xlabel="trial", ylabel="val log loss")
        figures.append(_figure_html(figure))
    if summary["candidates"]:
        figure, axis = plt.subplots(figsize=(11, 3.6))
        for name, metrics in summary["candidates"].items():
            axis.scatter(metrics["gzip_bytes"], metrics["accuracy"], s=40)
            axis.annotate(f"{name} (AUC {metrics['auc']:.3f})",
                          (metrics["gzip_bytes"], metrics["accuracy"]), fontsize=8,
                          xytext=(4, 4), textcoords="offset points")
        axis.set_xscale("log")
        axis.set(title="Accuracy against gzip-compressed size", xlabel="gzip bytes (log)",
                 ylabel="accuracy")
        figures.append(_figure_html(figure))
    return figures


def _table_html(headers: List[str], rows: List[List[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(summary: Dict[str, Any]) -> str:
    candidates = [[name] + [_cell(m, k, f) for k, _, f in TABLE_COLUMNS]
                  + [_drop_cell(m, "accuracy"), _drop_cell(m, "auc")]
                  for name, m in summary["candidates"].items()]
    slices = []
    for model, per_slice in summary["slices"].items():
        for slice_name, metrics in per_slice.items():
            slices.append([model, slice_name, metrics.get("examples"),
                           _fmt(metrics.get("auc")), _fmt(metrics.get("accuracy"))])
    verdict = "BLESSED" if summary["blessed"] else "NOT BLESSED"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Run report</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "th{background:#eee}.bad{color:#a00}.good{color:#070}</style></head><body>",
        "<h1>Run report</h1>",
        f"<h2 class='{'good' if summary['blessed'] else 'bad'}'>Deployable candidate "
        f"({html.escape(str(summary['deployable']))}): {verdict}</h2><ul>",
        "".join(f"<li>{html.escape(r)}</li>" for r in summary["reasons"]), "</ul>",
        f"<p>Pushed to: <code>{html.escape(summary['pushed_to'] or 'nothing pushed')}</code></p>",
        "<h2>Candidates (test split)</h2>",
        f"<p>{html.escape(split_line(summary) or '')}</p>",
        _table_html(["candidate"] + [h for _, h, _ in TABLE_COLUMNS]
                    + ["accuracy drop from the teacher (95% CI)",
                       "AUC drop from the teacher (95% CI)"], candidates),
        *([f"<h2>Teacher</h2><p>{html.escape(summary['baselines']['reason'])}</p>"]
          if summary.get("baselines") else []),
        *_distillation_html(summary.get("distillation"), summary.get("sparsity")),
        "<h2>Plots</h2>", *_plots(summary),
        *_columns_html(summary),
        "<h2>Slices (TFMA{})</h2>".format(
            ", on a uniform sample of {rows:,} of the {of:,} test rows".format(
                **summary["slice_sample"]) if summary.get("slice_sample")
            and summary["slice_sample"]["rows"] < summary["slice_sample"]["of"] else ""),
        _table_html(["model", "slice", "examples", "AUC", "accuracy"], slices),
        "<h2>Component times</h2>",
        _table_html(["component", "seconds", "state"],
                    [[k, v, summary["states"].get(k)] for k, v in summary["timings_s"].items()]),
        "</body></html>"]
    return "".join(parts)


def _columns_html(summary: Dict[str, Any]) -> List[str]:
    columns = summary.get("columns")
    if not columns:
        return ["<h2>Missing values per column (empty or a --na-values marker)</h2>",
                _table_html(["column", "missing values"],
                            [[k, v] for k, v in (summary.get("missing_values") or {}).items()])]
    rows = [[c["name"] or "(no name)", c["role"], c["type"],
             f"{_number(c['min'])} to {_number(c['max'])}" if c.get("min") is not None else "",
             c.get("distinct") if c.get("distinct") is not None else "",
             c.get("vocabulary", ""), c["values"], c["missing"],
             "; ".join(x for x in (c.get("why"), c.get("flag")) if x)] for c in columns]
    return ["<h2>Columns (every row of the CSV)</h2>",
            _table_html(["column", "role", "type read", "range", "distinct values",
                         "vocabulary", "values", "missing (empty or a --na-values marker)",
                         "note"], rows)]


def _distillation_html(distillation: Optional[Dict[str, Any]],
                       sparsity: Optional[Dict[str, Any]]) -> List[str]:
    if not distillation or "selected" not in distillation:
        return []
    rows = [[stage, r["size"], r["params"], r["how"], _fmt(r["val_accuracy"]),
             _fmt(r["val_auc"]), f"{r['budget_left']:+.2f}",
             "selected" if r == distillation["selected"] else ""]
            for stage, group in (("size search", distillation["sizes"]),
                                 ("alpha/T grid", distillation["grid"]),
                                 ("control", [distillation["scratch"]]))
            for r in group]
    return ["<h2>Student search</h2>",
            "".join(f"<p>{html.escape(line)}</p>"
                    for line in distillation_lines(distillation)
                    + pruning_lines(sparsity)),
            _table_html(["stage", "size", "params", "learned", "accuracy", "AUC",
                         "budget left", ""], rows)]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def write_report(database: str, pipeline_name: str, report_dir: str) -> Dict[str, Any]:
    """Builds the summary of the latest run in ML Metadata at `database` (a SQLite file or a
    mysql:// URI) and writes summary.json and index.html."""
    store = metadata.open_store(database)
    summary = build_summary(metadata.latest_run(store, pipeline_name))
    os.makedirs(report_dir, exist_ok=True)
    with open(os.path.join(report_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=float)
    with open(os.path.join(report_dir, "index.html"), "w") as f:
        f.write(render_html(summary))
    return summary
