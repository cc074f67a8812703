"""Resolving a run's inputs (schema DDL, seed rows) from where the manifest says they are.

Everything a user can get wrong here (a missing file, DDL that does not parse, a file that is
not UTF-8) becomes a ManifestError naming the field, before any stage starts. What the engine
accepts but a user should hear about (a foreign key to a missing column) is logged.

A sandbox server that cannot be reached is not something the user got wrong: on Kubernetes it
is a server pod still starting beside the stage's Ray cluster, or being replaced (deleted,
evicted, its node drained). There `load_inputs` waits for it (`SANDBOX_WAIT_S`) and, if it
never comes, lets `SandboxUnreachable` through, which the entrypoint records as the retryable
`SandboxUnavailable`, not as invalid inputs (which would end the run for good).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from distillrun.api.errors import FieldProblem, ManifestError
from distillrun.api.resource import DistillRun
from distillrun.api.spec import SqlSource
from distillrun.api.text import NotUtf8, decode_text, read_text
from distillrun.sql.errors import SandboxError, SandboxUnreachable
from distillrun.sql.sandbox import open_sandbox
from distillrun.sql.schema import SchemaError, SchemaInfo, parse_schema
from distillrun.store import StoreError, read_uri

log = logging.getLogger("distillrun.jobs.inputs")

SANDBOX_WAIT_S = 600.0
"""How long a stage waits for its sandbox server to answer: longer than a server pod takes to
pull its image and load the schema, short enough that a server that is gone for good fails the
attempt (retryably) within minutes."""
SANDBOX_RETRY_S = 3.0


def read_sql_source(source: SqlSource, base_dir: Path, field: str, origin: str) -> str:
    """The SQL text of `source`; relative paths are resolved against `base_dir`."""
    if source.ddl is not None:
        return source.ddl
    if source.config_map_ref is not None:
        raise ManifestError(
            origin,
            [
                FieldProblem(
                    f"{field}.configMapRef",
                    "ConfigMap references need the operator; for a local run give ddl or uri",
                )
            ],
        )
    assert source.uri is not None  # SqlSource guarantees exactly one of the three
    uri = source.uri
    try:
        if uri.startswith("s3://"):
            return decode_text(read_uri(uri), uri)
        path = Path(uri.removeprefix("file://"))
        if not path.is_absolute():
            path = base_dir / path
        return read_text(path)
    except NotUtf8 as exc:
        raise ManifestError(origin, [FieldProblem(f"{field}.uri", str(exc))]) from None
    except (OSError, StoreError) as exc:
        raise ManifestError(
            origin, [FieldProblem(f"{field}.uri", f"cannot read {uri}: {exc}")]
        ) from None


def load_schema(run: DistillRun, base_dir: Path, origin: str) -> tuple[SchemaInfo, str | None]:
    """The parsed schema and the seed SQL (None when the manifest gives no seed rows)."""
    database = run.spec.database
    ddl = read_sql_source(database.schema_source, base_dir, "spec.database.schema", origin)
    try:
        schema = parse_schema(ddl, database.dialect)
    except SchemaError as exc:
        raise ManifestError(origin, [FieldProblem("spec.database.schema", str(exc))]) from None
    for warning in schema.warnings:
        log.warning("%s: spec.database.schema: %s", origin, warning)
    seed = None
    if database.seed_data is not None:
        seed = read_sql_source(database.seed_data, base_dir, "spec.database.seedData", origin)
    return schema, seed


def load_inputs(
    run: DistillRun,
    base_dir: Path,
    origin: str,
    *,
    wait_s: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[SchemaInfo, str | None]:
    """Schema and seed rows, proven usable: a sandbox is built from them once and closed.

    A sandbox server that does not answer is waited for up to `wait_s` (a stage on a cluster
    passes `SANDBOX_WAIT_S`: the server is the operator's pod), then SandboxUnreachable is
    raised as it is (see the module docstring). With no wait (a local run or `distillrun
    validate`, whose server is the user's own setting) it is a ManifestError at once, like any
    other sandbox error: the inputs' fault, naming the field."""
    schema, seed_sql = load_schema(run, base_dir, origin)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with open_sandbox(schema, seed_sql, run.spec.database.sandbox):
                pass
        except SandboxError as exc:
            if isinstance(exc, SandboxUnreachable) and wait_s > 0:
                if time.monotonic() >= deadline:
                    raise
                log.warning("%s; waiting for it (up to %.0f s in all)", exc, wait_s)
                sleep(SANDBOX_RETRY_S)
                continue
            raise ManifestError(
                origin, [FieldProblem(_sandbox_field(seed_sql), str(exc))]
            ) from None
        return schema, seed_sql


def _sandbox_field(seed_sql: str | None) -> str:
    return "spec.database.seedData" if seed_sql else "spec.database.dialect"


def with_inline_sources(run: DistillRun, schema_ddl: str, seed_sql: str | None) -> DistillRun:
    """The run with its schema and seed rows inline, as its `spec.json` records them: the
    resolved spec must stand on its own (a report rebuilt later, a stage in a RayJob), without
    the manifest's directory or the ConfigMap it came from."""
    database = run.spec.database.model_copy(
        update={
            "schema_source": SqlSource(ddl=schema_ddl),
            "seed_data": SqlSource(ddl=seed_sql) if seed_sql else None,
        }
    )
    spec = run.spec.model_copy(update={"database": database})
    return run.model_copy(update={"spec": spec})
