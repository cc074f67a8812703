"""SQL validation benchmark: queries validated per second per core, for each engine, split into
parse+resolve (the static checks) and execute (the sandbox), with a naive validator measured in
the same run as the baseline. Not a test: it prints figures, and the goals next to them.

    .venv/bin/python bench/sql_validation.py [--seconds 3] [--no-servers]

Corpus: the valid-query corpus of the test set (tests/unit/sql/data/shop_queries.yaml, the
queries each engine accepts) over examples/shop (4 tables, ~400 seed rows), cycled.

- parse+resolve: `check_query` (parse, one statement, SELECT only, forbidden functions, tables,
  columns, normal form), in this process; per core = queries / CPU seconds of this process.
- execute: `Sandbox.execute` of already-checked queries on one sandbox: the worker process
  (and, for PostgreSQL/MariaDB, a fresh server session per query and the reference-data
  checksum after each); one stream, so wall seconds are the cores' time.
- naive: the baseline validator, measured in the same run: a new connection and the schema and
  seed rows loaded for every query, then the query run (no sandbox, no limits). Ratio =
  execute / naive: what keeping one loaded, locked-down sandbox per worker buys.
- validate: `judge`, both parse+resolve and execute, end to end, for reference.

Goals: parse+resolve >= 1,000 queries/s/core; execute on the embedded engines >= 500
queries/s/core; >= 5x the naive baseline. PostgreSQL and MariaDB are started as in the
tests (`tests/fakes/sql_servers.py`) unless `--no-servers`.

parse+resolve is nearly all sqlglot, whose compiled build (sqlglotc, the `sqlglot[c]` extra the
project depends on) runs it ~1.7x faster than the pure-Python one; the first line printed says
which build was measured.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

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

SHOP = ROOT / "examples" / "shop"
CORPUS = ROOT / "tests" / "unit" / "sql" / "data" / "shop_queries.yaml"
LIMITS = SandboxSpec(statement_timeout_ms=2000, max_rows=1000)
GOAL_PARSE = 1000.0
GOAL_EXECUTE = 500.0
GOAL_RATIO = 5.0


@dataclass
class Figures:
    parse: float
    execute: float
    validate: float
    naive: float


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


def measure(schema: SchemaInfo, seed: str, target: ServerTarget | None, seconds: float) -> Figures:
    dialect = Dialect(schema.dialect)
    queries = corpus(dialect)
    parse = rate(queries, lambda sql: check_query(sql, schema), seconds, cpu=True)
    checked = [check_query(sql, schema).sql for sql in queries]
    with open_sandbox(schema, seed, LIMITS, target) as sandbox:
        sandbox.execute("SELECT 1")  # the worker is up before the clock starts
        execute = rate(checked, sandbox.execute, seconds, cpu=False)
        validate = rate(queries, lambda sql: judge(sql, schema, sandbox), seconds, cpu=False)
    naive_run = (
        naive_embedded(dialect, schema.ddl, seed)
        if target is None
        else naive_server(target, schema.ddl, seed)
    )
    naive = rate(queries, naive_run, seconds, cpu=False)
    return Figures(parse, execute, validate, naive)


@contextlib.contextmanager
def servers(enabled: bool) -> Iterator[dict[Dialect, ServerTarget]]:
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
        yield {d: s.target for d, s in running.items()}


def verdict(value: float, goal: float) -> str:
    return "ok" if value >= goal else "BELOW GOAL"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--no-servers", action="store_true", help="embedded engines only")
    args = parser.parse_args(argv)
    ddl, seed = (SHOP / "schema.sql").read_text(), (SHOP / "seed.sql").read_text()
    results: dict[Dialect, Figures] = {}
    with servers(not args.no_servers) as targets:
        for dialect in (Dialect.SQLITE, Dialect.DUCKDB, *targets):
            results[dialect] = measure(
                parse_schema(ddl, dialect), seed, targets.get(dialect), args.seconds
            )
    build = "compiled (sqlglotc)" if SQLGLOTC_INSTALLED else "pure Python: no sqlglotc"
    print(f"sqlglot {sqlglot.__version__}, {build}")
    print(
        f"{'engine':<9} {'parse+resolve q/s/core':>23} {'execute q/s':>12} {'naive q/s':>10} "
        f"{'ratio':>7} {'validate q/s':>13}"
    )
    for dialect, f in results.items():
        print(
            f"{dialect!s:<9} {f.parse:>23.0f} {f.execute:>12.0f} {f.naive:>10.1f} "
            f"{f.execute / f.naive:>6.1f}x {f.validate:>13.0f}"
        )
    print("goals:")
    for dialect, f in results.items():
        ratio = f.execute / f.naive
        line = [
            f"parse+resolve {f.parse:.0f} >= {GOAL_PARSE:.0f}: {verdict(f.parse, GOAL_PARSE)}",
            f"ratio {ratio:.1f} >= {GOAL_RATIO:.0f}: {verdict(ratio, GOAL_RATIO)}",
        ]
        if dialect in (Dialect.SQLITE, Dialect.DUCKDB):
            goal = f"execute {f.execute:.0f} >= {GOAL_EXECUTE:.0f}: "
            line.insert(1, goal + verdict(f.execute, GOAL_EXECUTE))
        print(f"  {dialect}: " + "; ".join(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
