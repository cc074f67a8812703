"""Shared fixtures: the example shop schema in both engines, and one sandbox per dialect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.sandbox import Sandbox, open_sandbox
from distillrun.sql.schema import SchemaInfo, parse_schema

ROOT = Path(__file__).resolve().parents[3]
DATA = Path(__file__).resolve().parent / "data"
SHOP = ROOT / "examples" / "shop"
ENGINES = (Dialect.SQLITE, Dialect.DUCKDB)


def load_cases(name: str) -> list[dict[str, Any]]:
    """A YAML list of test cases from data/."""
    cases = yaml.safe_load((DATA / name).read_text())
    assert isinstance(cases, list)
    return cases


@pytest.fixture(scope="session")
def shop_ddl() -> str:
    return (SHOP / "schema.sql").read_text()


@pytest.fixture(scope="session")
def shop_seed() -> str:
    return (SHOP / "seed.sql").read_text()


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
def sandbox(schema: SchemaInfo, shop_seed: str) -> Iterator[Sandbox]:
    """One sandbox per dialect for the whole session, with a short timeout."""
    limits = SandboxSpec(statement_timeout_ms=500, max_rows=1000)
    with open_sandbox(schema, shop_seed, limits) as box:
        yield box
