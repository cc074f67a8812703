"""Run-time checks before anything expensive starts: what admission cannot know.

The CRD refuses malformed manifests; whether the Secret a run names exists, whether its schema
DDL parses, whether this cluster offers its hardware profile (and whether a node of it has as
many GPUs as one worker asks for: profiles can be a team's own files), whether its store is one
every node reaches (`file://` is not, unless the operator allows it) can only be known now.
Each problem becomes `Ready=False` with a reason (and an Event) while no RayJob exists; fixing
it (creating the Secret) lets the next reconcile proceed. The checks are pure over a `Lookup`,
so they are tested without a cluster; the controller's lookup reads the apiserver.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from distillrun.api.conditions import InputProblem
from distillrun.api.profiles import (
    GpusExceedNode,
    HardwareProfile,
    ProfileError,
    worker_resources,
)
from distillrun.api.resource import DistillRun
from distillrun.api.spec import Dialect, SecretKeyRef, SqlSource, TeacherProvider
from distillrun.operator.builders.config import run_store_uri
from distillrun.operator.builders.rayjob import teacher_secret
from distillrun.operator.builders.sandbox import SandboxBuildError, needs_server, sandbox_config_map
from distillrun.operator.settings import OperatorSettings, helm_value
from distillrun.sql.schema import SchemaError, parse_schema
from distillrun.store import StoreError, read_uri

NEEDS_API_KEY = frozenset({TeacherProvider.ANTHROPIC, TeacherProvider.OPENAI_COMPATIBLE})


class Lookup(Protocol):
    """Read access to the run's namespace, as much as the checks need."""

    def secret_keys(self, name: str) -> frozenset[str] | None:
        """The keys of Secret `name` (never the values), or None if it does not exist."""

    def config_map_data(self, name: str) -> dict[str, str] | None:
        """The data of ConfigMap `name`, or None if it does not exist."""


@dataclass(frozen=True)
class Problem:
    """Why a run cannot start yet: a CamelCase `reason`, and a message naming the field."""

    reason: str
    message: str


@dataclass(frozen=True)
class SandboxSql:
    """What a sandbox server loads at start: the schema and the seed rows."""

    ddl: str
    seed: str | None


@dataclass(frozen=True)
class Inputs:
    """What the checks resolved: the run's store prefix, SQL read from ConfigMaps, and for a
    dialect that needs a sandbox server, the SQL it loads."""

    store_uri: str
    resolved_sql: dict[str, str] = field(default_factory=dict)
    sandbox: SandboxSql | None = None


def check(
    run: DistillRun,
    settings: OperatorSettings,
    profiles: Mapping[str, HardwareProfile],
    lookup: Lookup,
) -> Inputs | Problem:
    """The run's resolved inputs, or the first problem found (in the order a user fixes them).
    `profiles` are the hardware profiles the operator knows (builtin and the team's own)."""
    spec = run.spec
    profile = spec.student.hardware_profile
    offered = settings.hardware_profiles
    if offered is not None and profile not in offered:
        return Problem(
            InputProblem.HARDWARE_PROFILE_UNAVAILABLE,
            f"spec.student.hardwareProfile: this cluster does not offer {profile} "
            f"(offered: {', '.join(sorted(offered)) or 'none'})",
        )
    try:
        worker_resources(spec.student, profiles)
    except GpusExceedNode as exc:
        return Problem(InputProblem.GPUS_EXCEED_NODE, f"spec.student.gpusPerWorker: {exc}")
    except ProfileError as exc:
        return Problem(
            InputProblem.HARDWARE_PROFILE_UNAVAILABLE, f"spec.student.hardwareProfile: {exc}"
        )
    artifacts = spec.artifacts.uri or settings.artifacts_uri
    if artifacts is None:
        return Problem(
            InputProblem.ARTIFACTS_UNSET,
            "spec.artifacts.uri: no artifact store given and the operator has no default "
            f"({_setting('artifacts_uri')})",
        )
    if artifacts.startswith("file://") and not settings.artifacts_allow_file_store:
        return Problem(
            InputProblem.ARTIFACTS_NOT_SHARED,
            f"spec.artifacts.uri: {artifacts} is a file:// store, which only one node can see, "
            "while the stages' Ray pods run on any node and write to the store directly; use "
            "an s3:// store (with spec.artifacts.credentialsSecretRef if the pods need keys)",
        )

    teacher = spec.teacher
    if teacher.provider in NEEDS_API_KEY:
        api_key = teacher_secret(run, settings)
        if api_key is None:
            return Problem(
                InputProblem.SECRET_REF_MISSING,
                f"spec.teacher.apiKeySecretRef: provider {teacher.provider} needs an API key; "
                "reference the Secret that holds it (or install the operator with a default, "
                "the chart's teacher.secretName)",
            )
        field = (
            "spec.teacher.apiKeySecretRef"
            if teacher.api_key_secret_ref is not None
            else f"the operator's default teacher Secret ({_setting('teacher_secret_name')})"
        )
        problem = _secret(lookup, api_key, field)
        if problem is not None:
            return problem
    credentials = spec.artifacts.credentials_secret_ref
    if credentials is not None:
        problem = _secret(lookup, credentials, "spec.artifacts.credentialsSecretRef")
        if problem is not None:
            return problem

    resolved: dict[str, str] = {}
    sources: list[tuple[str, SqlSource | None]] = [
        ("schema", spec.database.schema_source),
        ("seedData", spec.database.seed_data),
    ]
    for name, source in sources:
        if source is None or source.config_map_ref is None:
            continue
        ref = source.config_map_ref
        data = lookup.config_map_data(ref.name)
        where = f"spec.database.{name}.configMapRef"
        if data is None:
            return Problem(
                InputProblem.CONFIG_MAP_NOT_FOUND, f"{where}: ConfigMap {ref.name} does not exist"
            )
        if ref.key not in data:
            return Problem(
                InputProblem.CONFIG_MAP_KEY_NOT_FOUND,
                f"{where}: ConfigMap {ref.name} has no key {ref.key}",
            )
        resolved[name] = data[ref.key]

    ddl = resolved.get("schema", spec.database.schema_source.ddl)
    if ddl is not None:  # a uri is read by the job, with the run's credentials
        invalid = schema_problem(ddl, spec.database.dialect)
        if invalid is not None:
            return Problem(InputProblem.SCHEMA_INVALID, f"spec.database.schema: {invalid}")
    sandbox: SandboxSql | None = None
    if needs_server(run):
        loaded = _sandbox_sql(run, sources, resolved)
        if isinstance(loaded, Problem):
            return loaded
        sandbox = loaded
    return Inputs(run_store_uri(artifacts, run), resolved, sandbox)


@functools.lru_cache(maxsize=64)
def schema_problem(ddl: str, dialect: Dialect) -> str | None:
    """Why `ddl` is not a usable schema of `dialect`, or None. Cached by content: every pass
    that starts a stage checks the schema of its run, and parsing it with sqlglot (about 1 ms
    for a three-table schema, more for a real one) was the largest CPU cost of such a pass,
    while the schemas of a namespace's runs are few and rarely change."""
    try:
        parse_schema(ddl, dialect)
    except SchemaError as exc:
        return str(exc)
    return None


def _sandbox_sql(
    run: DistillRun, sources: list[tuple[str, SqlSource | None]], resolved: dict[str, str]
) -> SandboxSql | Problem:
    """The schema and seed rows a sandbox server loads, read now (a `uri` with the operator's
    own identity): the server is created by the operator, not by a job."""
    texts: dict[str, str | None] = {}
    for name, source in sources:
        if source is None:
            texts[name] = None
        elif name in resolved:
            texts[name] = resolved[name]
        elif source.ddl is not None:
            texts[name] = source.ddl
        else:
            try:
                texts[name] = read_uri(str(source.uri)).decode("utf-8")
            except (StoreError, UnicodeDecodeError) as exc:
                return Problem(
                    InputProblem.SQL_UNREADABLE,
                    f"spec.database.{name}.uri: cannot read {source.uri}: {exc}",
                )
    ddl = texts["schema"]
    assert ddl is not None  # a run always has a schema source
    try:
        sandbox_config_map(run, ddl, texts["seedData"], {})
    except SandboxBuildError as exc:
        return Problem(InputProblem.SANDBOX_INVALID, str(exc))
    return SandboxSql(ddl, texts["seedData"])


def _secret(lookup: Lookup, ref: SecretKeyRef, where: str) -> Problem | None:
    keys = lookup.secret_keys(ref.name)
    if keys is None:
        return Problem(InputProblem.SECRET_NOT_FOUND, f"{where}: Secret {ref.name} does not exist")
    if ref.key not in keys:
        return Problem(
            InputProblem.SECRET_KEY_NOT_FOUND, f"{where}: Secret {ref.name} has no key {ref.key}"
        )
    return None


def _setting(field: str) -> str:
    """An operator setting as a run's message names it: the chart's value and the variable."""
    return f"the chart's {helm_value(field)}, {OperatorSettings.env_name(field)}"
