"""The stage ConfigMap: everything a stage's Ray job needs to know, as one JSON document.

A stage reads only this file and the artifact store, never the DistillRun resource, so the same
`distillrun.jobs` code runs under KubeRay and on a laptop. One immutable ConfigMap per (stage,
attempt) built from the spec as it is when the attempt starts: an allowed spec edit reaches the
next stage, and an attempt that is already running keeps the configuration it started with.
Secrets appear here only as references (names), never as values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distillrun.api.resource import DistillRun
from distillrun.api.stage_config import CONFIG_KEY, StageConfig
from distillrun.api.status import StageName
from distillrun.operator.builders.common import child_metadata

CONFIG_MOUNT = "/etc/distillrun"
CONFIG_PATH = f"{CONFIG_MOUNT}/{CONFIG_KEY}"


def run_store_uri(artifacts_uri: str, run: DistillRun) -> str:
    """The run's own prefix: `<artifacts>/<namespace>/<run>/<uid>` (as the local runner uses),
    so a re-created run of the same name never reads its predecessor's shards."""
    meta = run.metadata
    return f"{artifacts_uri.rstrip('/')}/{meta.namespace}/{meta.name}/{meta.uid}"


def stage_config(
    run: DistillRun,
    stage: StageName,
    attempt: int,
    store_uri: str,
    resolved_sql: Mapping[str, str],
) -> StageConfig:
    """The document a stage runs from. `resolved_sql` maps `schema`/`seedData` to SQL text the
    operator read from a ConfigMap (`configMapRef`), which the job could not read itself."""
    wire = run.to_wire()
    database = wire["spec"]["database"]
    for source, sql in resolved_sql.items():
        database[source] = {"ddl": sql}
    meta = run.metadata
    wire["metadata"] = {
        "name": meta.name,
        "namespace": meta.namespace,
        "uid": meta.uid,
        "generation": meta.generation,
    }
    wire.pop("status", None)
    return StageConfig(run=wire, stage=stage, attempt=attempt, store=store_uri)


def stage_config_map(
    run: DistillRun,
    stage: StageName,
    attempt: int,
    config: StageConfig,
    extra_labels: Mapping[str, str],
) -> dict[str, Any]:
    """The immutable ConfigMap holding `config` under `run.json`."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(run, stage, attempt, extra_labels),
        "immutable": True,
        "data": {CONFIG_KEY: config.to_json()},
    }
