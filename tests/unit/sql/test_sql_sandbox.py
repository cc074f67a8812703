"""The sandboxes, all four engines: good queries run, engines agree, limits hold, workers are
replaced. Server-only behaviour (private databases, replacement) is in test_sql_servers.py."""

from __future__ import annotations

import math
import os
import signal
import time
from typing import Any

import pytest

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.checks import check_query
from distillrun.sql.compare import results_match
from distillrun.sql.errors import QueryFailed, QueryTimeout, SandboxError, SessionLost, SqlError
from distillrun.sql.judge import judge
from distillrun.sql.sandbox import (
    ResultSet,
    Sandbox,
    ServerSandbox,
    ServerTarget,
    WorkerSandbox,
    open_sandbox,
)
from distillrun.sql.schema import SchemaInfo, parse_schema
from tests.unit.sql.cases import ENGINES, load_cases, open_box

GOOD = load_cases("shop_queries.yaml")
RUNAWAY = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r"
CROSS_JOIN = (
    "SELECT SUM(a.quantity * b.quantity * c.quantity * d.quantity) "
    "FROM order_items a, order_items b, order_items c, order_items d"
)
"""MariaDB ends a runaway recursive CTE after 1000 rounds on its own; this one runs long."""


def good_cases(portable: bool) -> list[Any]:
    return [
        pytest.param(d, case, id=f"{d}:{' '.join(case['sql'].split())[:60]}")
        for case in GOOD
        for d in (ENGINES if portable else case.get("dialects", ENGINES))
        if not portable or "dialects" not in case
    ]


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
    for other in ENGINES[1:]:
        result = boxes[other].execute(case["sql"])
        assert results_match(lite, result, ordered=ordered), (other, lite.rows[:3], result.rows[:3])


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


def test_server_values_come_back_plain(boxes: dict[Dialect, Sandbox]) -> None:
    pg = boxes[Dialect.POSTGRES].execute(
        "SELECT 1.50::numeric AS d, 3::numeric AS i, 'Infinity'::numeric AS inf, "
        "DATE '2025-01-02' AS day, TIMESTAMP '2025-01-02 03:04:05' AS ts, ARRAY[1, 2] AS l, "
        "'\\x00ff'::bytea AS b, NULL AS n, true AS t"
    )
    assert pg.columns == ("d", "i", "inf", "day", "ts", "l", "b", "n", "t")
    assert pg.rows == (
        (1.5, 3, math.inf, "2025-01-02", "2025-01-02 03:04:05", (1, 2), b"\x00\xff", None, True),
    )
    my = boxes[Dialect.MYSQL].execute(
        "SELECT CAST(1.50 AS DECIMAL(10, 2)), CAST(3 AS DECIMAL(10, 2)), DATE '2025-01-02', "
        "TIMESTAMP '2025-01-02 03:04:05', x'00ff', NULL"
    )
    assert my.rows == ((1.5, 3, "2025-01-02", "2025-01-02 03:04:05", b"\x00\xff", None),)


def test_seed_values_are_the_same_plain_values_in_both_engines(
    boxes: dict[Dialect, Sandbox],
) -> None:
    sql = "SELECT id, price, name FROM products ORDER BY id"
    lite, duck = boxes[Dialect.SQLITE].execute(sql), boxes[Dialect.DUCKDB].execute(sql)
    assert lite.rows == duck.rows
    sql = "SELECT signup_date FROM customers ORDER BY id"
    assert boxes[Dialect.SQLITE].execute(sql).rows == boxes[Dialect.DUCKDB].execute(sql).rows


def supervised(sandbox: Sandbox) -> WorkerSandbox | ServerSandbox:
    assert isinstance(sandbox, WorkerSandbox | ServerSandbox)
    return sandbox


def test_runaway_query_times_out_within_the_limit(dialect: Dialect, sandbox: Sandbox) -> None:
    pid = supervised(sandbox).pid
    runaway = CROSS_JOIN if dialect == Dialect.MYSQL else RUNAWAY
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match="statement timeout is 500 ms"):
        sandbox.execute(runaway)
    assert time.monotonic() - started < 1.5
    assert sandbox.pid == pid, "the engine stopped the query itself; no replacement needed"
    assert sandbox.execute("SELECT COUNT(*) FROM orders").rows == ((100,),)


BIG_ANSWER = "SELECT '" + "x" * 1_000_000 + "'"


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        pytest.param(Dialect.SQLITE, BIG_ANSWER, id="sqlite-larger-than-a-pipe"),
        *(pytest.param(d, "SELECT 1", id=f"{d}-small") for d in ENGINES),
    ],
    indirect=["dialect"],
)
def test_unresponsive_worker_is_killed_and_replaced(sandbox: Sandbox, sql: str) -> None:
    """Supervision is the same code for every engine (`EngineWorker`); each waits ~2 s."""
    before, pid = sandbox.data_checksum(), supervised(sandbox).pid
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match="was replaced"):
        sandbox.execute(sql)
    assert time.monotonic() - started < 3.0
    assert supervised(sandbox).pid != pid
    assert sandbox.data_checksum() == before
    assert sandbox.execute("SELECT COUNT(*) FROM customers").rows == ((40,),)


def test_dead_worker_is_replaced_and_the_query_rerun(sandbox: Sandbox) -> None:
    pid = supervised(sandbox).pid
    os.kill(pid, signal.SIGKILL)
    assert sandbox.execute("SELECT COUNT(*) FROM customers").rows == ((40,),)
    assert supervised(sandbox).pid != pid


@pytest.mark.parametrize("dialect", ENGINES)
def test_row_cap_truncates(
    dialect: Dialect,
    schemas: dict[Dialect, SchemaInfo],
    shop_seed: str,
    targets: dict[Dialect, ServerTarget],
) -> None:
    limits = SandboxSpec(statement_timeout_ms=1000, max_rows=7)
    with open_box(schemas[dialect], shop_seed, limits, targets) as box:
        capped = box.execute("SELECT * FROM order_items")
        assert len(capped.rows) == 7 and capped.truncated
        exact = box.execute("SELECT * FROM order_items LIMIT 7")
        assert len(exact.rows) == 7 and not exact.truncated
        if dialect != Dialect.MYSQL:  # MariaDB materializes a recursive CTE before the limit
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
    targets: dict[Dialect, ServerTarget],
) -> None:
    changed = shop_seed.replace("'Flo Rossi'", "'Flo Rossa'", 1)
    limits = SandboxSpec(statement_timeout_ms=1000)  # the session boxes' limits
    with (
        open_box(schemas[dialect], shop_seed, limits, targets) as same,
        open_box(schemas[dialect], changed, limits, targets) as other,
    ):
        assert same.data_checksum() == boxes[dialect].data_checksum()
        assert other.data_checksum() != boxes[dialect].data_checksum()


@pytest.mark.parametrize("dialect", ENGINES)
def test_seed_that_does_not_load_names_the_statement(
    dialect: Dialect, schemas: dict[Dialect, SchemaInfo], targets: dict[Dialect, ServerTarget]
) -> None:
    seed = (
        "INSERT INTO customers VALUES (1, 'a', 'a@x', 'US', '2025-01-01');\n"
        "INSERT INTO products VALUES (1, 'p', 'c', 1.5);\n"
        "INSERT INTO customers VALUES (1, 'dup', 'b@x', 'US', '2025-01-01');\n"
    )
    with pytest.raises(
        SandboxError, match=r"seed statement 3 failed: INSERT INTO customers VALUES \(1, 'dup'"
    ):
        open_box(schemas[dialect], seed, SandboxSpec(), targets)


@pytest.mark.parametrize("dialect", ENGINES)
def test_schema_that_does_not_load_names_the_statement(
    dialect: Dialect, targets: dict[Dialect, ServerTarget]
) -> None:
    ddl = "CREATE TABLE a (id INTEGER);\nCREATE TABLE b (x TEXT);\nCREATE TABLE a (x INTEGER);"
    tables = parse_schema("CREATE TABLE a (id INTEGER)", dialect).tables
    schema = SchemaInfo(dialect=dialect, ddl=ddl, tables=tables)
    with pytest.raises(SandboxError, match="schema statement 3 failed: CREATE TABLE a"):
        open_box(schema, None, SandboxSpec(), targets)


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
    for error in (QueryTimeout, QueryFailed, SandboxError, SessionLost):
        assert issubclass(error, SqlError)
    assert issubclass(SessionLost, SandboxError), "never the query's fault"
    assert isinstance(ResultSet((), (), truncated=False, ms=0.0), ResultSet)
