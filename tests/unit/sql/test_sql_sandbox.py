"""The sandboxes: good queries run, engines agree, limits hold, workers are replaced."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from conftest import ENGINES, load_cases

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.checks import check_query
from distillrun.sql.compare import results_match
from distillrun.sql.errors import QueryFailed, QueryTimeout, SandboxError, SqlError
from distillrun.sql.judge import judge
from distillrun.sql.sandbox import ResultSet, Sandbox, WorkerSandbox, open_sandbox
from distillrun.sql.schema import SchemaInfo, parse_schema

GOOD = load_cases("shop_queries.yaml")
RUNAWAY = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r"


def good_cases(portable: bool) -> list[Any]:
    return [
        pytest.param(d, case, id=f"{d}:{' '.join(case['sql'].split())[:60]}")
        for case in GOOD
        for d in (ENGINES if portable else case.get("dialects", ENGINES))
        if not portable or "dialects" not in case
    ]


@pytest.fixture(scope="module")
def boxes(schemas: dict[Dialect, SchemaInfo], shop_seed: str) -> Iterator[dict[Dialect, Sandbox]]:
    limits = SandboxSpec(statement_timeout_ms=1000, max_rows=1000)
    with ExitStack() as stack:
        yield {
            d: stack.enter_context(open_sandbox(s, shop_seed, limits)) for d, s in schemas.items()
        }


@pytest.mark.parametrize(("dialect", "case"), good_cases(portable=False))
def test_good_query_is_accepted_and_runs(
    dialect: Dialect,
    case: dict[str, Any],
    schemas: dict[Dialect, SchemaInfo],
    boxes: dict[Dialect, Sandbox],
) -> None:
    verdict, checked, result = judge(case["sql"], schemas[dialect], boxes[dialect])
    assert verdict.ok, verdict.message
    assert checked is not None and result is not None
    assert verdict.rows == len(result.rows) and verdict.result_hash and verdict.ms is not None
    assert not result.truncated
    if "rows" in case:
        assert len(result.rows) == case["rows"]


@pytest.mark.parametrize(
    "case", [c for c in GOOD if "dialects" not in c], ids=lambda c: " ".join(c["sql"].split())[:60]
)
def test_engines_return_matching_results(
    case: dict[str, Any], schemas: dict[Dialect, SchemaInfo], boxes: dict[Dialect, Sandbox]
) -> None:
    ordered = check_query(case["sql"], schemas[Dialect.SQLITE]).ordered
    lite = boxes[Dialect.SQLITE].execute(case["sql"])
    duck = boxes[Dialect.DUCKDB].execute(case["sql"])
    assert results_match(lite, duck, ordered=ordered), (lite.rows[:3], duck.rows[:3])


AGREEMENT = [
    pytest.param(Dialect(d), case["sql"], case["reason"], id=f"{d}:{case['sql'][:60]}")
    for case in load_cases("static_cases.yaml")
    if case["reason"] in ("ok", "unknown_table", "unknown_column") and not case.get("policy")
    for d in case.get("dialects", ENGINES)
]


@pytest.mark.parametrize(("dialect", "sql", "reason"), AGREEMENT)
def test_static_verdict_agrees_with_the_engine(
    dialect: Dialect, sql: str, reason: str, boxes: dict[Dialect, Sandbox]
) -> None:
    """Neither wrongly refused (the engine runs it) nor wrongly accepted (the engine fails)."""
    try:
        boxes[dialect].execute(sql)
        runs = True
    except QueryFailed:
        runs = False
    assert runs is (reason == "ok")


def test_values_come_back_plain(boxes: dict[Dialect, Sandbox]) -> None:
    duck = boxes[Dialect.DUCKDB].execute(
        "SELECT CAST(1.50 AS DECIMAL(10, 2)) AS d, CAST(3 AS DECIMAL(10, 2)) AS i, "
        "DATE '2025-01-02' AS day, TIMESTAMP '2025-01-02 03:04:05' AS ts, [1, 2] AS l, "
        "{'a': 1} AS s, INTERVAL 1 DAY AS gap, 'x'::BLOB AS b, NULL AS n, true AS t"
    )
    assert duck.columns == ("d", "i", "day", "ts", "l", "s", "gap", "b", "n", "t")
    assert duck.rows == (
        (
            1.5,
            3,
            "2025-01-02",
            "2025-01-02 03:04:05",
            (1, 2),
            (("a", 1),),
            "1 day, 0:00:00",
            b"x",
            None,
            True,
        ),
    )
    lite = boxes[Dialect.SQLITE].execute("SELECT 1.5, 3, 'x', x'00ff', NULL")
    assert lite.rows == ((1.5, 3, "x", b"\x00\xff", None),)


def test_seed_values_are_the_same_plain_values_in_both_engines(
    boxes: dict[Dialect, Sandbox],
) -> None:
    sql = "SELECT id, price, name FROM products ORDER BY id"
    lite, duck = boxes[Dialect.SQLITE].execute(sql), boxes[Dialect.DUCKDB].execute(sql)
    assert lite.rows == duck.rows
    sql = "SELECT signup_date FROM customers ORDER BY id"
    assert boxes[Dialect.SQLITE].execute(sql).rows == boxes[Dialect.DUCKDB].execute(sql).rows


def test_runaway_query_times_out_within_the_limit(sandbox: Sandbox) -> None:
    assert isinstance(sandbox, WorkerSandbox)
    pid = sandbox.pid
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match="statement timeout is 500 ms"):
        sandbox.execute(RUNAWAY)
    assert time.monotonic() - started < 1.5
    assert sandbox.pid == pid, "the engine stopped the query itself; no replacement needed"
    assert sandbox.execute("SELECT COUNT(*) FROM orders").rows == ((100,),)


@pytest.mark.parametrize(
    "sql", ["SELECT 1", "SELECT '" + "x" * 1_000_000 + "'"], ids=["small", "larger-than-a-pipe"]
)
def test_unresponsive_worker_is_killed_and_replaced(sandbox: Sandbox, sql: str) -> None:
    assert isinstance(sandbox, WorkerSandbox)
    before, pid = sandbox.data_checksum(), sandbox.pid
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match="was replaced"):
        sandbox.execute(sql)
    assert time.monotonic() - started < 3.0
    assert sandbox.pid != pid
    assert sandbox.data_checksum() == before
    assert sandbox.execute("SELECT COUNT(*) FROM customers").rows == ((40,),)


def test_dead_worker_is_replaced_and_the_query_rerun(sandbox: Sandbox) -> None:
    assert isinstance(sandbox, WorkerSandbox)
    pid = sandbox.pid
    os.kill(pid, signal.SIGKILL)
    assert sandbox.execute("SELECT COUNT(*) FROM customers").rows == ((40,),)
    assert sandbox.pid != pid


@pytest.mark.parametrize("dialect", ENGINES)
def test_row_cap_truncates(
    dialect: Dialect, schemas: dict[Dialect, SchemaInfo], shop_seed: str
) -> None:
    limits = SandboxSpec(statement_timeout_ms=1000, max_rows=7)
    with open_sandbox(schemas[dialect], shop_seed, limits) as box:
        capped = box.execute("SELECT * FROM order_items")
        assert len(capped.rows) == 7 and capped.truncated
        exact = box.execute("SELECT * FROM order_items LIMIT 7")
        assert len(exact.rows) == 7 and not exact.truncated
        endless = box.execute(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r"
        )
        assert endless.rows == tuple((n,) for n in range(1, 8)) and endless.truncated


@pytest.mark.parametrize("dialect", ENGINES)
def test_checksum_is_stable_and_tracks_the_data(
    dialect: Dialect,
    schemas: dict[Dialect, SchemaInfo],
    shop_seed: str,
    boxes: dict[Dialect, Sandbox],
) -> None:
    changed = shop_seed.replace("'Flo Rossi'", "'Flo Rossa'", 1)
    with (
        open_sandbox(schemas[dialect], shop_seed, SandboxSpec()) as same,
        open_sandbox(schemas[dialect], changed, SandboxSpec()) as other,
    ):
        assert same.data_checksum() == boxes[dialect].data_checksum()
        assert other.data_checksum() != boxes[dialect].data_checksum()


@pytest.mark.parametrize("dialect", ENGINES)
def test_seed_that_does_not_load_names_the_statement(
    dialect: Dialect, schemas: dict[Dialect, SchemaInfo]
) -> None:
    seed = (
        "INSERT INTO customers VALUES (1, 'a', 'a@x', 'US', '2025-01-01');\n"
        "INSERT INTO products VALUES (1, 'p', 'c', 1.5);\n"
        "INSERT INTO customers VALUES (1, 'dup', 'b@x', 'US', '2025-01-01');\n"
    )
    with pytest.raises(
        SandboxError, match=r"seed statement 3 failed: INSERT INTO customers VALUES \(1, 'dup'"
    ):
        open_sandbox(schemas[dialect], seed, SandboxSpec())


@pytest.mark.parametrize("dialect", ENGINES)
def test_schema_that_does_not_load_names_the_statement(dialect: Dialect) -> None:
    ddl = "CREATE TABLE a (id INTEGER);\nCREATE TABLE b (x TEXT);\nCREATE TABLE a (x INTEGER);"
    tables = parse_schema("CREATE TABLE a (id INTEGER)", dialect).tables
    schema = SchemaInfo(dialect=dialect, ddl=ddl, tables=tables)
    with pytest.raises(SandboxError, match="schema statement 3 failed: CREATE TABLE a"):
        open_sandbox(schema, None, SandboxSpec())


def test_duckdb_loads_sqlite_flavoured_ddl() -> None:
    ddl = (
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, "
        "created DATETIME DEFAULT CURRENT_TIMESTAMP);"
    )
    schema = parse_schema(ddl, Dialect.DUCKDB)
    seed = "INSERT INTO events (id, name, created) VALUES (1, 'boot', '2025-01-01 00:00:00');"
    with open_sandbox(schema, seed, SandboxSpec()) as box:
        assert box.execute("SELECT name, created FROM events").rows == (
            ("boot", "2025-01-01 00:00:00"),
        )


@pytest.mark.parametrize(
    ("dialect", "server"), [(Dialect.POSTGRES, "PostgreSQL"), (Dialect.MYSQL, "MySQL")]
)
def test_server_dialects_need_a_server(dialect: Dialect, server: str, shop_ddl: str) -> None:
    with pytest.raises(SandboxError) as caught:
        open_sandbox(parse_schema(shop_ddl, dialect), None, SandboxSpec())
    assert caught.value.message == (
        f"dialect {dialect} needs a {server} sandbox server, which this version does not "
        "provide yet; use sqlite or duckdb"
    )


def test_close_is_idempotent_and_final(schemas: dict[Dialect, SchemaInfo], shop_seed: str) -> None:
    box = open_sandbox(schemas[Dialect.SQLITE], shop_seed, SandboxSpec())
    assert isinstance(box, WorkerSandbox)
    pid = box.pid
    box.close()
    box.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(SandboxError, match="closed"):
        box.execute("SELECT 1")


def test_every_error_shares_one_root() -> None:
    for error in (QueryTimeout, QueryFailed, SandboxError):
        assert issubclass(error, SqlError)
    assert isinstance(ResultSet((), (), truncated=False, ms=0.0), ResultSet)
