"""What the SQL tests share besides fixtures: the engines, the example shop, the YAML cases.

A plain module (imported as `tests.unit.sql.cases`), not conftest: several conftest modules
live in one pytest session, so importing names from `conftest` would pick whichever came last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.sandbox import Sandbox, ServerTarget, open_sandbox
from distillrun.sql.schema import SchemaInfo

ROOT = Path(__file__).resolve().parents[3]
DATA = Path(__file__).resolve().parent / "data"
SHOP = ROOT / "examples" / "shop"
EMBEDDED = (Dialect.SQLITE, Dialect.DUCKDB)
SERVERS = (Dialect.POSTGRES, Dialect.MYSQL)
ENGINES = EMBEDDED + SERVERS


def load_cases(name: str) -> list[dict[str, Any]]:
    """A YAML list of test cases from data/."""
    cases = yaml.safe_load((DATA / name).read_text())
    assert isinstance(cases, list)
    return cases


def open_box(
    schema: SchemaInfo,
    seed: str | None,
    limits: SandboxSpec,
    targets: dict[Dialect, ServerTarget],
) -> Sandbox:
    """A sandbox for the schema's dialect, on the session's server for server dialects."""
    return open_sandbox(schema, seed, limits, targets.get(Dialect(schema.dialect)))
