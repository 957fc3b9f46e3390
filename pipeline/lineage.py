"""`--explain`: what produced a pushed model, read back from ML Metadata.

Per component: its execution, every setting it ran with (each stage config of
modules.settings it was given, wherever TFX keeps it: an execution property of its own, or
inside `custom_config`), the data it read and the artifacts it wrote."""
import json
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

from modules.settings import STAGES, RunSettings, value_text
from pipeline import metadata

STAGE_KEYS = tuple(stage.KEY for stage in STAGES) + (RunSettings.KEY,)
# Other execution properties worth showing; the rest is wiring.
_SHOWN = ("serving_dir",)


def explain(database: str, version_dir: str) -> Optional[str]:
    """The lineage of the model pushed to `version_dir`, from ML Metadata at `database` (a
    SQLite file or a mysql:// URI); None if it has no push there."""
    store = metadata.open_store(database)
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
    for record in sorted(records, key=lambda r: r.execution.id):  # in the order they ran
        run = record.execution
        lines.append(f"\n{record.component_id}: execution {run.id}, {record.state}, "
                     f"{record.seconds:.1f} s")
        properties = record.properties()
        lines.extend(f"  data: {path}" for path in _data_paths(properties))
        for key in _SHOWN:
            if key in properties:
                lines.append(f"  {key}: {properties[key]}")
        lines.extend(stage_lines(properties))
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


def _data_paths(properties: Dict[str, Any]) -> List[str]:
    """ExampleGen's input: its folder joined with each split's file pattern."""
    if "input_base" not in properties:
        return []
    splits = (_parsed(properties.get("input_config")) or {}).get("splits") or [{}]
    return [os.path.join(properties["input_base"], split.get("pattern", ""))
            for split in splits]


def stage_lines(properties: Dict[str, Any]) -> List[str]:
    """"  pruning: epochs=6 sparsity=0.8" for every stage config among an execution's
    properties, in the order of modules.settings.STAGES."""
    found = dict(_stages(properties))
    return [f"  {key}: " + " ".join(f"{name}={_text(value)}"
                                     for name, value in sorted(found[key].items()))
            for key in STAGE_KEYS if key in found]


def _stages(value: Any) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """(stage key, its fields) wherever a stage config sits in `value`: properties hold
    JSON text, which may hold more JSON text (custom_config) or a proto's JSON (ExampleGen's
    custom_config is a Struct in an Any)."""
    value = _parsed(value)
    if isinstance(value, dict):
        for key, inner in value.items():
            parsed = _parsed(inner)
            if key in STAGE_KEYS and isinstance(parsed, dict):
                yield key, parsed
            else:
                yield from _stages(inner)


def _parsed(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _text(value: Any) -> str:
    if isinstance(value, dict):  # run_settings' training: its own fields
        return "{" + ", ".join(f"{k}={_text(v)}" for k, v in sorted(value.items())) + "}"
    return value_text(value)
