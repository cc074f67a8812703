"""The stage ConfigMap: everything a stage's Ray job needs to know, as one JSON document.

A stage reads only this file and the artifact store, never the DistillRun resource, so the same
`distillrun.jobs` code runs under KubeRay and on a laptop. One immutable ConfigMap per (stage,
attempt) built from the spec as it is when the attempt starts: an allowed spec edit reaches the
next stage, and an attempt that is already running keeps the configuration it started with.
Secrets appear here only as references (names), never as values.

A train attempt's ConfigMap also carries the team's profile files, the ones the operator read
from its own `DISTILLRUN_PROFILES_DIR` at start (the chart's `hardwareProfileFiles` and
`deepSpeedConfigFiles`), and its pods get them at `PROFILES_DIR` with the variable pointing
there: training then plans with the profiles the operator checked the run against. They travel
in the run's own namespace, where a ConfigMap of the operator's namespace could not be mounted
when the operator watches every namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from distillrun.api.resource import DistillRun
from distillrun.api.stage_config import CONFIG_KEY, StageConfig
from distillrun.api.status import StageName
from distillrun.operator.builders.common import child_metadata

CONFIG_MOUNT = "/etc/distillrun"
CONFIG_PATH = f"{CONFIG_MOUNT}/{CONFIG_KEY}"
CONFIG_VOLUME = "distillrun-config"
PROFILES_SUBDIR = "profiles"
PROFILES_DIR = f"{CONFIG_MOUNT}/{PROFILES_SUBDIR}"
"""Where a train stage's pods find the profile files (their `DISTILLRUN_PROFILES_DIR`)."""

NO_PROFILE_FILES: Mapping[str, str] = MappingProxyType({})
"""An operator without a profiles directory: the builtin profiles only."""


def stage_profile_files(stage: StageName, files: Mapping[str, str]) -> dict[str, str]:
    """The profile files (text by path) the pods of `stage` get: all of them for train, which
    plans with the profiles and DeepSpeed configs; none for the stages that read no profile."""
    return dict(files) if stage == StageName.TRAIN else {}


def profile_key(path: str) -> str:
    """The ConfigMap key of a profile file: a key cannot hold `/`, so `deepspeed/zero3.json`
    is `profiles.deepspeed.zero3.json` (the pods' volume maps it back to its path). No two
    files share a key: the top-level ones are `*.yaml`, those under `deepspeed/` `*.json`."""
    return f"{PROFILES_SUBDIR}.{path.replace('/', '.')}"


def config_volume(config_name: str, profile_files: Mapping[str, str]) -> dict[str, Any]:
    """The volume of a stage's ConfigMap, mounted at CONFIG_MOUNT: `run.json`, and each profile
    file at its path under PROFILES_DIR."""
    source: dict[str, Any] = {"name": config_name}
    if profile_files:
        source["items"] = [{"key": CONFIG_KEY, "path": CONFIG_KEY}] + [
            {"key": profile_key(path), "path": f"{PROFILES_SUBDIR}/{path}"}
            for path in profile_files
        ]
    return {"name": CONFIG_VOLUME, "configMap": source}


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
    profile_files: Mapping[str, str] = NO_PROFILE_FILES,
) -> dict[str, Any]:
    """The immutable ConfigMap holding `config` under `run.json`, and for train the operator's
    `profile_files` (text by path), each under its `profile_key`."""
    data = {CONFIG_KEY: config.to_json()}
    for path, text in stage_profile_files(stage, profile_files).items():
        data[profile_key(path)] = text
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(run, stage, attempt, extra_labels),
        "immutable": True,
        "data": data,
    }
