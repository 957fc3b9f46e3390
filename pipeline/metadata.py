"""ML Metadata: where a run keeps it (a SQLite file, or a MySQL database as on Kubeflow) and
reading back what a run did: executions per component, their artifacts, lineage."""
import contextlib
import dataclasses
import os
import re
import socket
import sys
import urllib.parse
from typing import Dict, List, Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

from modules.errors import UserError

MYSQL_PASSWORD_ENV = "MLMD_MYSQL_PASSWORD"  # the password, when the URI has none
MYSQL_FORM = (f"mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (the password may come from "
              f"${MYSQL_PASSWORD_ENV} instead)")


class MetadataError(UserError):
    """ML Metadata's database cannot be used: the message names it and what to check."""


@dataclasses.dataclass(frozen=True)
class MySql:
    """A MySQL (or MariaDB) database for ML Metadata; str() leaves the password out."""
    user: str
    password: str
    host: str
    port: int
    database: str

    @classmethod
    def parse(cls, uri: str) -> "MySql":
        try:
            parts = urllib.parse.urlsplit(uri)
            port = parts.port or 3306
        except ValueError as e:  # a port that is not a number
            raise MetadataError(f"--metadata {hide_passwords(uri)}: {e}; "
                                f"use {MYSQL_FORM}") from None
        database = parts.path.lstrip("/")
        if not (parts.username and parts.hostname and database) or "/" in database:
            raise MetadataError(f"--metadata {hide_passwords(uri)}: name the user, host and "
                                f"database: use {MYSQL_FORM}")
        password = (urllib.parse.unquote(parts.password) if parts.password is not None
                    else os.environ.get(MYSQL_PASSWORD_ENV, ""))
        return cls(urllib.parse.unquote(parts.username), password, parts.hostname, port,
                   urllib.parse.unquote(database))

    def __str__(self) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


_PASSWORDS = ((re.compile(r'(password:\s*)"(?:[^"\\]|\\.)*"'), r'\1"***"'),  # in a config
              (re.compile(r"(mysql://[^:/@\s]*:)[^@\s]*@"), r"\1***@"))  # in a URI


def hide_passwords(text: str) -> str:
    """`text` with every MySQL password (in a URI or a printed ConnectionConfig) as ***."""
    for pattern, replacement in _PASSWORDS:
        text = pattern.sub(replacement, text)
    return text


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def is_mysql(target: str) -> bool:
    return target.startswith("mysql://")


def describe(target: str) -> str:
    """Where ML Metadata is, for messages: the file, or the database without its password."""
    return str(MySql.parse(target)) if is_mysql(target) else target


def connection_config(target: str, read_only: bool = False
                      ) -> metadata_store_pb2.ConnectionConfig:
    """ML Metadata's connection to `target`: a SQLite file path or a mysql:// URI. A MySQL
    database must exist (MLMD would otherwise create one for any misspelt name)."""
    config = metadata_store_pb2.ConnectionConfig()
    if is_mysql(target):
        db = MySql.parse(target)
        config.mysql.host, config.mysql.port = db.host, db.port
        config.mysql.database, config.mysql.user = db.database, db.user
        config.mysql.password = db.password
        config.mysql.skip_db_creation = True
    else:
        if not read_only:
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        config.sqlite.filename_uri = target
        config.sqlite.connection_mode = (
            metadata_store_pb2.SqliteMetadataSourceConfig.READONLY if read_only
            else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    return config


def check_connection(target: str, timeout: float = 10.0) -> None:
    """Fails with one line naming the database and what to check unless ML Metadata can open
    it (a MySQL URI; a SQLite file is created where the run writes)."""
    if not is_mysql(target):
        return
    db = MySql.parse(target)
    where = f"{db.host}:{db.port}"
    try:
        socket.create_connection((db.host, db.port), timeout=timeout).close()
    except OSError as e:
        raise MetadataError(f"--metadata {db}: cannot reach {where} ({e.strerror or e}); check "
                            f"the host and port, and that the MySQL server is running and "
                            f"accepts TCP connections") from None
    try:
        with _stderr_to_devnull():  # MLMD's C++ logs a paragraph about MySQL 8 on any failure
            mlmd.MetadataStore(connection_config(target))
    except RuntimeError as e:
        message = str(e)
        if "Unknown database" in message:
            why = (f"{where} has no database '{db.database}'; create it (CREATE DATABASE "
                   f"{db.database}) or check the name")
        elif "Access denied" in message:
            why = (f"user '{db.user}' may not use database '{db.database}' on {where}, or it "
                   f"does not exist; check the name, create it (CREATE DATABASE "
                   f"{db.database}) and grant it (GRANT ALL ON {db.database}.* TO '{db.user}')")
        elif "mysql_real_connect" in message:
            why = (f"{where} refused user '{db.user}'; check the user and the password (in the "
                   f"URI or ${MYSQL_PASSWORD_ENV}), and that the user may log in with a "
                   f"password from this host")
        else:
            why = f"ML Metadata cannot open the database on {where} ({message})"
        raise MetadataError(f"--metadata {db}: {why}") from None

STATES = {metadata_store_pb2.Execution.COMPLETE: "complete",
          metadata_store_pb2.Execution.CACHED: "cached",
          metadata_store_pb2.Execution.FAILED: "failed",
          metadata_store_pb2.Execution.RUNNING: "running",
          metadata_store_pb2.Execution.NEW: "new",
          metadata_store_pb2.Execution.CANCELED: "canceled"}
INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def open_store(target: str, read_only: bool = True) -> mlmd.MetadataStore:
    """ML Metadata at `target`: a SQLite file (read-only by default) or a mysql:// URI."""
    return mlmd.MetadataStore(connection_config(target, read_only))


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
