"""SQL validation benchmark: queries validated per second per core, for each engine, split into
parse+resolve (the static checks) and execute (the sandbox), with a naive validator measured in
the same run as the baseline. Not a test: it prints figures, and the goals next to them.

    .venv/bin/python bench/sql_validation.py [--seconds 3] [--no-servers]

Corpus: the valid-query corpus of the test set (tests/unit/sql/data/shop_queries.yaml, the
queries each engine accepts) over examples/shop (4 tables, ~400 seed rows), cycled.

- parse+resolve: `check_query` (parse, one statement, SELECT only, forbidden functions, tables,
  columns, normal form), in this process; per core = queries / CPU seconds of this process.
- execute: `Sandbox.execute` of already-checked queries on one sandbox: the worker process
  (and, for PostgreSQL/MariaDB, the login's kept server session made clean per query and the
  proof that the reference data is unchanged after each). One stream of queries, measured two
  ways: per wall second, and per core = queries / CPU seconds spent by every process the
  stream runs in (this one, the worker, and the server's processes and threads, read from
  /proc). On a shared, loaded machine the wall figure counts the time spent waiting for a
  core; the per-core figure does not.
- naive: the baseline validator, measured in the same run and the same two ways: a new
  connection and the schema and seed rows loaded for every query, then the query run (no
  sandbox, no limits). Ratio = execute / naive, per core: what keeping one loaded,
  locked-down sandbox per worker buys.
- validate: `judge`, both parse+resolve and execute, end to end (per wall second), for
  reference.

Goals: parse+resolve >= 1,000 queries/s/core; execute >= 500 queries/s/core on every engine;
>= 5x the naive baseline. PostgreSQL and MariaDB are started as in the tests
(`tests/fakes/sql_servers.py`) unless `--no-servers`.

parse+resolve is nearly all sqlglot, whose compiled build (sqlglotc, the `sqlglot[c]` extra the
project depends on) runs it ~1.7x faster than the pure-Python one; the first line printed says
which build was measured.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlglot
import yaml
from sqlglot.tokens import SQLGLOTC_INSTALLED

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from distillrun.api.spec import Dialect, SandboxSpec  # noqa: E402
from distillrun.sql.checks import check_query  # noqa: E402
from distillrun.sql.judge import judge  # noqa: E402
from distillrun.sql.sandbox import ServerTarget, open_sandbox  # noqa: E402
from distillrun.sql.sandbox.server import split_statements  # noqa: E402
from distillrun.sql.schema import SchemaInfo, parse_schema  # noqa: E402

if TYPE_CHECKING:
    from tests.fakes.sql_servers import RunningServer

SHOP = ROOT / "examples" / "shop"
CORPUS = ROOT / "tests" / "unit" / "sql" / "data" / "shop_queries.yaml"
LIMITS = SandboxSpec(statement_timeout_ms=2000, max_rows=1000)
GOAL_PARSE = 1000.0
GOAL_EXECUTE = 500.0
GOAL_RATIO = 5.0


_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Rate:
    """Queries per wall second and per CPU second of the processes that ran them."""

    wall: float
    core: float


@dataclass
class Figures:
    parse: float
    execute: Rate
    validate: float
    naive: Rate


def process_tree(pid: int) -> set[int]:
    """A process and its live descendants."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return set()
    return {pid}.union(*(process_tree(int(child)) for child in children))


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of the children it has reaped (0 when it has ended: its
    parent has them now)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    utime, stime, cutime, cstime = (int(f) for f in stat.rsplit(")", 1)[1].split()[11:15])
    return (utime + stime + cutime + cstime) / _TICKS


def corpus(dialect: Dialect) -> list[str]:
    cases = yaml.safe_load(CORPUS.read_text())
    return [c["sql"] for c in cases if str(dialect) in c.get("dialects", [str(d) for d in Dialect])]


def rate(queries: list[str], run: Callable[[str], object], seconds: float, *, cpu: bool) -> float:
    """Queries per second over at least `seconds` (CPU or wall), cycling the corpus."""
    clock = time.process_time if cpu else time.perf_counter
    done, started = 0, clock()
    while clock() - started < seconds or done < len(queries):
        for sql in queries:
            run(sql)
        done += len(queries)
    return done / (clock() - started)


def stream_rate(
    queries: list[str], run: Callable[[str], object], seconds: float, pids: list[int]
) -> Rate:
    """Queries per wall second and per CPU second of this process tree and of `pids`'."""

    def cpu() -> float:
        tree = set().union(*(process_tree(pid) for pid in (os.getpid(), *pids)))
        return sum(cpu_seconds(pid) for pid in tree)

    done, wall, used = 0, time.perf_counter(), cpu()
    while time.perf_counter() - wall < seconds or done < len(queries):
        for sql in queries:
            run(sql)
        done += len(queries)
    wall, used = time.perf_counter() - wall, cpu() - used
    return Rate(wall=done / wall, core=done / used if used > 0 else float("inf"))


def naive_embedded(dialect: Dialect, ddl: str, seed: str) -> Callable[[str], object]:
    """A new in-memory database per query, loaded from scratch."""
    if dialect == Dialect.SQLITE:

        def run_sqlite(sql: str) -> object:
            con = sqlite3.connect(":memory:")
            try:
                con.executescript(ddl + "\n" + seed)
                return con.execute(sql).fetchall()
            finally:
                con.close()

        return run_sqlite
    import duckdb

    def run_duckdb(sql: str) -> object:
        con = duckdb.connect()
        try:
            for statement in split_statements(ddl + "\n" + seed, dialect):
                con.execute(statement)
            return con.execute(sql).fetchall()
        finally:
            con.close()

    return run_duckdb


def naive_server(target: ServerTarget, ddl: str, seed: str) -> Callable[[str], object]:
    """A new connection per query with the schema and seed rows loaded afresh: in a transaction
    rolled back afterwards (PostgreSQL), into a database dropped afterwards (MariaDB)."""
    statements = split_statements(ddl + "\n" + seed, target.dialect)
    if target.dialect == Dialect.POSTGRES:
        import psycopg

        def run_postgres(sql: str) -> object:
            with psycopg.connect(
                host=target.host, port=target.port, user=target.user,
                password=target.password, dbname="postgres",
            ) as con:  # fmt: skip
                for statement in statements:
                    con.execute(statement.encode())
                rows = con.execute(sql.encode()).fetchall()
                con.rollback()
                return rows

        return run_postgres
    import pymysql

    def run_mysql(sql: str) -> object:
        con = pymysql.connect(
            host=target.host, port=target.port, user=target.user, password=target.password,
            ssl_disabled=True, autocommit=True,
        )  # fmt: skip
        try:
            with con.cursor() as cursor:
                cursor.execute("CREATE DATABASE naive")
                cursor.execute("USE naive")
                for statement in statements:
                    cursor.execute(statement)
                cursor.execute(sql)
                return cursor.fetchall()
        finally:
            with con.cursor() as cursor:
                cursor.execute("DROP DATABASE IF EXISTS naive")
            con.close()

    return run_mysql


def measure(schema: SchemaInfo, seed: str, server: RunningServer | None, seconds: float) -> Figures:
    dialect = Dialect(schema.dialect)
    target = server.target if server is not None else None
    pids = [server.process.pid] if server is not None else []
    queries = corpus(dialect)
    parse = rate(queries, lambda sql: check_query(sql, schema), seconds, cpu=True)
    checked = [check_query(sql, schema).sql for sql in queries]
    with open_sandbox(schema, seed, LIMITS, target) as sandbox:
        sandbox.execute("SELECT 1")  # the worker is up before the clock starts
        execute = stream_rate(checked, sandbox.execute, seconds, pids)
        validate = rate(queries, lambda sql: judge(sql, schema, sandbox), seconds, cpu=False)
    naive_run = (
        naive_embedded(dialect, schema.ddl, seed)
        if target is None
        else naive_server(target, schema.ddl, seed)
    )
    naive = stream_rate(queries, naive_run, seconds, pids)
    return Figures(parse, execute, validate, naive)


@contextlib.contextmanager
def servers(enabled: bool) -> Iterator[dict[Dialect, RunningServer]]:
    if not enabled:
        yield {}
        return
    from tests.fakes.sql_servers import ServersMissing, check_installed, sql_servers

    try:
        check_installed()
    except ServersMissing as missing:
        print(f"servers left out: {missing}")
        yield {}
        return
    with sql_servers() as running:
        yield running


def _load() -> str:
    """The 1-minute load average: how many runnable processes shared the cores."""
    return f"{os.getloadavg()[0]:.1f}"


def verdict(value: float, goal: float) -> str:
    return "ok" if value >= goal else "BELOW GOAL"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--no-servers", action="store_true", help="embedded engines only")
    args = parser.parse_args(argv)
    ddl, seed = (SHOP / "schema.sql").read_text(), (SHOP / "seed.sql").read_text()
    results: dict[Dialect, Figures] = {}
    with servers(not args.no_servers) as running:
        for dialect in (Dialect.SQLITE, Dialect.DUCKDB, *running):
            results[dialect] = measure(
                parse_schema(ddl, dialect), seed, running.get(dialect), args.seconds
            )
    build = "compiled (sqlglotc)" if SQLGLOTC_INSTALLED else "pure Python: no sqlglotc"
    print(f"sqlglot {sqlglot.__version__}, {build}; {os.cpu_count()} cores, load {_load()}")
    print(
        f"{'engine':<9} {'parse+resolve':>14} {'execute':>9} {'execute':>9} {'naive':>8} "
        f"{'naive':>8} {'ratio':>7} {'validate':>9}"
    )
    print(f"{'':<9} {'q/s/core':>14} {'q/s':>9} {'q/s/core':>9} {'q/s':>8} {'q/s/core':>8}")
    for dialect, f in results.items():
        print(
            f"{dialect!s:<9} {f.parse:>14.0f} {f.execute.wall:>9.0f} {f.execute.core:>9.0f} "
            f"{f.naive.wall:>8.1f} {f.naive.core:>8.1f} {f.execute.core / f.naive.core:>6.1f}x "
            f"{f.validate:>9.0f}"
        )
    print("goals:")
    for dialect, f in results.items():
        ratio = f.execute.core / f.naive.core
        print(
            f"  {dialect}: "
            f"parse+resolve {f.parse:.0f} >= {GOAL_PARSE:.0f}: {verdict(f.parse, GOAL_PARSE)}; "
            f"execute {f.execute.core:.0f}/core >= {GOAL_EXECUTE:.0f}: "
            f"{verdict(f.execute.core, GOAL_EXECUTE)}; "
            f"ratio {ratio:.1f} >= {GOAL_RATIO:.0f}: {verdict(ratio, GOAL_RATIO)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
