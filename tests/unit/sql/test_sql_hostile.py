"""The hostile-SQL corpus: every entry is refused or contained, and nothing escapes.

Each entry runs twice: through `judge` (static checks, then the sandbox), which must give the
expected reason, and straight into the sandbox with the static checks bypassed, which must
contain it on its own. After either, the data checksum is unchanged, a probe query answers
and no file appeared at the entry's canary path. Escapes: 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from conftest import load_cases

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.errors import QueryFailed, QueryTimeout
from distillrun.sql.judge import judge
from distillrun.sql.sandbox import Sandbox, open_sandbox
from distillrun.sql.schema import SchemaInfo

CORPUS = {
    Dialect.SQLITE: load_cases("hostile_sqlite.yaml"),
    Dialect.DUCKDB: load_cases("hostile_duckdb.yaml"),
}
CLASSES = {"ddl_dml", "multiple", "session", "files", "resources"}
PROBE = "SELECT COUNT(*) FROM customers"


def allowed(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def assert_contained(sandbox: Sandbox, baseline: str, canary: Path) -> None:
    assert sandbox.data_checksum() == baseline
    assert sandbox.execute(PROBE).rows == ((40,),)
    assert not canary.exists()


@pytest.fixture(scope="module")
def boxes(
    schemas: dict[Dialect, SchemaInfo], shop_seed: str
) -> Iterator[dict[Dialect, tuple[Sandbox, str]]]:
    """A sandbox per dialect, with the data checksum it had before any hostile query."""
    limits = SandboxSpec(statement_timeout_ms=500, max_rows=1000)
    with ExitStack() as stack:
        opened = {
            d: stack.enter_context(open_sandbox(s, shop_seed, limits)) for d, s in schemas.items()
        }
        yield {d: (box, box.data_checksum()) for d, box in opened.items()}


ALL_CASES = [
    pytest.param(d, case, id=f"{d}:{case['class']}:{case['sql'][:60]}")
    for d, corpus in CORPUS.items()
    for case in corpus
]


@pytest.mark.parametrize(("dialect", "corpus_case"), ALL_CASES)
def test_judge_refuses_or_contains(
    dialect: Dialect,
    corpus_case: dict[str, Any],
    schemas: dict[Dialect, SchemaInfo],
    boxes: dict[Dialect, tuple[Sandbox, str]],
    tmp_path: Path,
) -> None:
    sandbox, baseline = boxes[dialect]
    canary = tmp_path / "canary"
    sql = corpus_case["sql"].replace("{canary}", str(canary))
    verdict, _, _ = judge(sql, schemas[dialect], sandbox)
    reason = "ok" if verdict.ok else str(verdict.reason)
    assert reason in allowed(corpus_case["reason"]), verdict.message
    assert_contained(sandbox, baseline, canary)


@pytest.mark.parametrize(("dialect", "corpus_case"), ALL_CASES)
def test_sandbox_alone_refuses_or_contains(
    dialect: Dialect,
    corpus_case: dict[str, Any],
    boxes: dict[Dialect, tuple[Sandbox, str]],
    tmp_path: Path,
) -> None:
    sandbox, baseline = boxes[dialect]
    canary = tmp_path / "canary"
    sql = corpus_case["sql"].replace("{canary}", str(canary))
    try:
        sandbox.execute(sql)
        outcome = "ok"
    except QueryTimeout:
        outcome = "timeout"
    except QueryFailed:
        outcome = "failed"
    assert outcome in allowed(corpus_case["engine"])
    assert_contained(sandbox, baseline, canary)


@pytest.mark.parametrize("dialect_name", ["sqlite", "duckdb"])
def test_corpus_covers_every_class_many_times(dialect_name: str) -> None:
    corpus = CORPUS[Dialect(dialect_name)]
    counts = {name: sum(c["class"] == name for c in corpus) for name in CLASSES}
    assert all(count >= 5 for count in counts.values()), counts
    assert len({c["sql"] for c in corpus}) == len(corpus), "duplicate entries"
