"""The hostile-SQL corpus, all four engines: every entry is refused or contained, and nothing
escapes.

Each entry runs twice: through `judge` (static checks, then the sandbox), which must give the
expected reason, and straight into the sandbox with the static checks bypassed, which must
contain it on its own. After either, the data checksum is the one the sandbox started with, a
probe query answers, no file appeared at the entry's canary path (for the servers, in a
directory the server's own user may write, so only the sandbox's permissions can stop it) and
a server sandbox never had to rebuild its database (a rebuild would mean a query changed it).
Escapes: 0.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.errors import QueryFailed, QueryTimeout
from distillrun.sql.judge import judge
from distillrun.sql.sandbox import Sandbox, ServerSandbox, ServerTarget
from distillrun.sql.schema import SchemaInfo
from tests.fakes.sql_servers import RunningServer
from tests.unit.sql.cases import ENGINES, load_cases, open_box

CORPUS = {d: load_cases(f"hostile_{d}.yaml") for d in ENGINES}
CLASSES = {"ddl_dml", "multiple", "session", "files", "resources"}
PROBE = "SELECT COUNT(*) FROM customers"
MIN_CASES = 150


def allowed(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def assert_contained(sandbox: Sandbox, baseline: str, canary: Path) -> None:
    assert sandbox.data_checksum() == baseline
    assert sandbox.execute(PROBE).rows == ((40,),)
    assert not canary.exists()
    if isinstance(sandbox, ServerSandbox):
        assert sandbox.replacements == 0, "a query changed the sandbox database"


@pytest.fixture(scope="module")
def boxes(
    schemas: dict[Dialect, SchemaInfo], shop_seed: str, targets: dict[Dialect, ServerTarget]
) -> Iterator[dict[Dialect, tuple[Sandbox, str]]]:
    """A sandbox per dialect, with the data checksum it had before any hostile query.

    The timeout is short because many entries are meant to run into it.
    """
    limits = SandboxSpec(statement_timeout_ms=300, max_rows=1000)
    with ExitStack() as stack:
        opened = {
            d: stack.enter_context(open_box(s, shop_seed, limits, targets))
            for d, s in schemas.items()
        }
        yield {d: (box, box.data_checksum()) for d, box in opened.items()}


@pytest.fixture
def canary(dialect: Dialect, servers: dict[Dialect, RunningServer], tmp_path: Path) -> Path:
    """A fresh path no file may appear at; for a server, one its own user could write."""
    directory = servers[dialect].scratch if dialect in servers else tmp_path
    return directory / f"canary-{secrets.token_hex(6)}"


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
    canary: Path,
) -> None:
    sandbox, baseline = boxes[dialect]
    sql = corpus_case["sql"].replace("{canary}", str(canary))
    verdict, _, result = judge(sql, schemas[dialect], sandbox)
    reason = "ok" if verdict.ok else str(verdict.reason)
    assert reason in allowed(corpus_case["reason"]), verdict.message
    if result is not None and "rows" in corpus_case:
        assert [list(row) for row in result.rows] == corpus_case["rows"]
    assert_contained(sandbox, baseline, canary)


@pytest.mark.parametrize(("dialect", "corpus_case"), ALL_CASES)
def test_sandbox_alone_refuses_or_contains(
    dialect: Dialect,
    corpus_case: dict[str, Any],
    boxes: dict[Dialect, tuple[Sandbox, str]],
    canary: Path,
) -> None:
    sandbox, baseline = boxes[dialect]
    sql = corpus_case["sql"].replace("{canary}", str(canary))
    rows: list[list[Any]] | None = None
    detail = ""
    try:
        rows = [list(row) for row in sandbox.execute(sql).rows]
        outcome = "ok"
    except QueryTimeout as timeout:
        outcome, detail = "timeout", timeout.message
    except QueryFailed as failed:
        outcome, detail = "failed", failed.message
    assert outcome in allowed(corpus_case["engine"]), detail
    if rows is not None and "rows" in corpus_case:
        assert rows == corpus_case["rows"]
    assert_contained(sandbox, baseline, canary)


@pytest.mark.parametrize("dialect", ENGINES, ids=str)
def test_corpus_covers_every_class_many_times(dialect: Dialect) -> None:
    corpus = CORPUS[dialect]
    counts = {name: sum(c["class"] == name for c in corpus) for name in CLASSES}
    assert all(count >= 5 for count in counts.values()), counts
    assert len({c["sql"] for c in corpus}) == len(corpus), "duplicate entries"


def test_corpus_is_large_enough() -> None:
    assert sum(len(corpus) for corpus in CORPUS.values()) >= MIN_CASES
