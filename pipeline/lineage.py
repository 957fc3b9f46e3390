"""`--explain`: what produced a pushed model, read back from ML Metadata."""
import json
from typing import Optional

from pipeline import metadata

# Execution properties worth showing per component; the rest is wiring.
_SHOWN = ("input_base", "input_config", "custom_config", "alpha", "temperature",
          "student_layers", "student_units", "epochs", "target_sparsity", "modes",
          "min_auc", "max_auc_drop", "max_accuracy_drop", "deploy_mode", "serving_dir")


def explain(metadata_path: str, version_dir: str) -> Optional[str]:
    store = metadata.open_store(metadata_path)
    pushed = metadata.find_pushed_model(store, version_dir)
    if pushed is None:
        return None
    lines = [f"Pushed model {version_dir} (ML Metadata artifact {pushed.id})"]
    records, seen = [], set()
    for record in metadata.producers(store, pushed.id):
        if record.component_id in seen:  # cached reruns repeat a component; show its first run
            continue
        seen.add(record.component_id)
        records.append(record)
    for record in reversed(records):
        run = record.execution
        lines.append(f"\n{record.component_id}: execution {run.id}, {record.state}, "
                     f"{record.seconds:.1f} s")
        for key, value in sorted(record.properties().items()):
            if key in _SHOWN:
                lines.append(f"  {key}: {_compact(value)}")
        for key, artifacts in sorted(record.outputs.items()):
            for artifact in artifacts:
                lines.append(f"  -> {key}: artifact {artifact.id} {artifact.uri}")
        if record.component_id == "Tuner":
            lines.extend(_best_hyperparameters(record))
    return "\n".join(lines)


def _best_hyperparameters(record: metadata.ExecutionRecord):
    for artifact in record.outputs.get("best_hyperparameters", []):
        try:
            with open(f"{artifact.uri}/best_hyperparameters.txt") as f:
                values = json.load(f).get("values", {})
        except (OSError, ValueError):
            continue
        yield "  best hyperparameters: " + ", ".join(
            f"{k}={v}" for k, v in values.items() if not k.startswith("tuner/"))


def _compact(value) -> str:
    if isinstance(value, str):
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    return str(value)
