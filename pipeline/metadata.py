"""Reading what a run did from ML Metadata: executions per component, their artifacts, lineage."""
import dataclasses
from typing import Dict, List, Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

STATES = {metadata_store_pb2.Execution.COMPLETE: "complete",
          metadata_store_pb2.Execution.CACHED: "cached",
          metadata_store_pb2.Execution.FAILED: "failed",
          metadata_store_pb2.Execution.RUNNING: "running",
          metadata_store_pb2.Execution.NEW: "new",
          metadata_store_pb2.Execution.CANCELED: "canceled"}
INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def open_store(sqlite_path: str, read_only: bool = True) -> mlmd.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = sqlite_path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY if read_only
        else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    return mlmd.MetadataStore(config)


def property_value(value: metadata_store_pb2.Value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclasses.dataclass
class ExecutionRecord:
    component_id: str
    state: str
    seconds: float
    execution: metadata_store_pb2.Execution
    inputs: Dict[str, List[metadata_store_pb2.Artifact]]
    outputs: Dict[str, List[metadata_store_pb2.Artifact]]

    def properties(self) -> Dict[str, object]:
        return {k: property_value(v) for k, v in self.execution.custom_properties.items()
                if not k.startswith("__")}


def component_id(store: mlmd.MetadataStore, execution_id: int) -> str:
    for context in store.get_contexts_by_execution(execution_id):
        if context.type == "node":
            return context.name.split(".", 1)[-1]
    return "?"


def execution_record(store: mlmd.MetadataStore,
                     execution: metadata_store_pb2.Execution) -> ExecutionRecord:
    events = store.get_events_by_execution_ids([execution.id])
    artifacts = {a.id: a for a in store.get_artifacts_by_id(list({e.artifact_id for e in events}))}
    inputs: Dict[str, list] = {}
    outputs: Dict[str, list] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else "?"
        target = inputs if event.type in INPUT_EVENTS else outputs
        target.setdefault(key, []).append(artifacts[event.artifact_id])
    seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
    return ExecutionRecord(component_id(store, execution.id),
                           STATES.get(execution.last_known_state, "unknown"), seconds,
                           execution, inputs, outputs)


def latest_run(store: mlmd.MetadataStore, pipeline_name: str) -> List[ExecutionRecord]:
    """The executions of the newest run of `pipeline_name`, in execution order."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return []
    runs = [c for c in store.get_children_contexts_by_context(pipeline.id)
            if c.type == "pipeline_run"] or store.get_contexts_by_type("pipeline_run")
    if not runs:
        return []
    run = max(runs, key=lambda c: c.create_time_since_epoch)
    executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
    return [execution_record(store, e) for e in executions]


def find_pushed_model(store: mlmd.MetadataStore, version_dir: str
                      ) -> Optional[metadata_store_pb2.Artifact]:
    for artifact in store.get_artifacts_by_type("PushedModel"):
        destination = artifact.custom_properties.get("pushed_destination")
        if destination is not None and destination.string_value.rstrip("/") == version_dir:
            return artifact
    return None


def producers(store: mlmd.MetadataStore, artifact_id: int) -> List[ExecutionRecord]:
    """The executions upstream of an artifact, nearest first (breadth-first lineage)."""
    seen, queue, records = set(), [artifact_id], []
    while queue:
        current = queue.pop(0)
        for event in store.get_events_by_artifact_ids([current]):
            if event.type not in OUTPUT_EVENTS or event.execution_id in seen:
                continue
            seen.add(event.execution_id)
            [execution] = store.get_executions_by_id([event.execution_id])
            record = execution_record(store, execution)
            records.append(record)
            queue.extend(a.id for artifacts in record.inputs.values() for a in artifacts)
    return records
