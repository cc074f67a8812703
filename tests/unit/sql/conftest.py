"""Shared fixtures: the example shop schema in all four dialects, real PostgreSQL and MariaDB
servers for the session, and one sandbox per dialect.

The servers are real (`tests/fakes/sql_servers.py`): started once per session on loopback as
an unprivileged user, stopped at the end. Missing binaries fail the session with a message
that names `scripts/test-deps`; nothing here ever skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.sandbox import Sandbox, ServerTarget
from distillrun.sql.schema import SchemaInfo, parse_schema
from tests.fakes.sql_servers import RunningServer, ServersMissing, check_installed, sql_servers
from tests.unit.sql.cases import ENGINES, SHOP, open_box


@pytest.fixture(scope="session")
def shop_ddl() -> str:
    return (SHOP / "schema.sql").read_text()


@pytest.fixture(scope="session")
def shop_seed() -> str:
    return (SHOP / "seed.sql").read_text()


@pytest.fixture(scope="session")
def servers() -> Iterator[dict[Dialect, RunningServer]]:
    """PostgreSQL and MariaDB, running for the whole session."""
    try:
        check_installed()
    except ServersMissing as missing:
        pytest.fail(str(missing), pytrace=False)
    with sql_servers() as running:
        yield running


@pytest.fixture(scope="session")
def targets(servers: dict[Dialect, RunningServer]) -> dict[Dialect, ServerTarget]:
    return {dialect: server.target for dialect, server in servers.items()}


@pytest.fixture(scope="session", params=ENGINES, ids=str)
def dialect(request: pytest.FixtureRequest) -> Dialect:
    return Dialect(request.param)


@pytest.fixture(scope="session")
def schema(shop_ddl: str, dialect: Dialect) -> SchemaInfo:
    return parse_schema(shop_ddl, dialect)


@pytest.fixture(scope="session")
def schemas(shop_ddl: str) -> dict[Dialect, SchemaInfo]:
    return {d: parse_schema(shop_ddl, d) for d in ENGINES}


@pytest.fixture(scope="session")
def sandbox(
    schema: SchemaInfo, shop_seed: str, targets: dict[Dialect, ServerTarget]
) -> Iterator[Sandbox]:
    """One sandbox per dialect for the whole session, with a short timeout."""
    limits = SandboxSpec(statement_timeout_ms=500, max_rows=1000)
    with open_box(schema, shop_seed, limits, targets) as box:
        yield box


@pytest.fixture(scope="session")
def boxes(
    schemas: dict[Dialect, SchemaInfo],
    shop_seed: str,
    targets: dict[Dialect, ServerTarget],
) -> Iterator[dict[Dialect, Sandbox]]:
    """A sandbox per dialect, all four engines, shared by the session (1 s timeout)."""
    limits = SandboxSpec(statement_timeout_ms=1000, max_rows=1000)
    with ExitStack() as stack:
        yield {
            d: stack.enter_context(open_box(s, shop_seed, limits, targets))
            for d, s in schemas.items()
        }
