"""`open_sandbox`: the one way the stages get a sandbox, whatever the dialect."""

from __future__ import annotations

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.errors import SandboxError
from distillrun.sql.sandbox.base import Sandbox
from distillrun.sql.sandbox.process import WorkerSandbox
from distillrun.sql.sandbox.server import ServerSandbox
from distillrun.sql.schema import SchemaInfo
from distillrun.sql.target import ENV_HOST, SERVER_NAMES, ServerTarget


def open_sandbox(
    schema: SchemaInfo,
    seed_sql: str | None,
    limits: SandboxSpec,
    server: ServerTarget | None = None,
) -> Sandbox:
    """A sandbox for `schema.dialect`, holding the schema and the seed rows.

    SQLite and DuckDB run embedded. PostgreSQL and MySQL run on the sandbox server `server`,
    or, when none is given, the one the `DISTILLRUN_SANDBOX_*` variables name. Raises
    SandboxError when the DDL or seed rows do not load (naming the statement), when the
    engine is not installed, or when a server dialect has no server to run on.
    """
    dialect = Dialect(schema.dialect)
    if dialect not in SERVER_NAMES:
        return WorkerSandbox(schema, seed_sql, limits)
    if server is None:
        try:
            server = ServerTarget.from_env(dialect)
        except ValueError as error:
            raise SandboxError(str(error)) from None
    if server is None:
        raise SandboxError(
            f"dialect {dialect} runs queries on a {SERVER_NAMES[dialect]} sandbox server: set "
            f"{ENV_HOST} (and DISTILLRUN_SANDBOX_PORT, _USER, _PASSWORD) to a server this "
            "process may administer; on Kubernetes the operator sets them"
        )
    return ServerSandbox(schema, seed_sql, limits, server)
