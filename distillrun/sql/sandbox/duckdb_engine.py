"""DuckDB engine: a database file built once, then opened read-only with a locked config.

Layers: the file is attached read-only (no write statement can run); external access is off
(no file, URL, COPY, ATTACH, INSTALL or LOAD reaches outside); extension autoinstall and
autoload are off; the configuration is locked so no `SET` can undo any of this; spilling to
disk is off; the engine's own parser must see exactly one SELECT before anything runs; and a
watchdog thread interrupts the query at its deadline.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

from distillrun.sql.errors import QueryFailed, SandboxError
from distillrun.sql.sandbox.base import ResultSet
from distillrun.sql.sandbox.engine import FileEngine, Limits, capped_result, excerpt, timed_out
from distillrun.sql.sandbox.protocol import rows_digest
from distillrun.sql.verdict import Reason

_CLOSED_DOORS: dict[str, Any] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}


def _from_sqlite(script: str) -> list[str] | None:
    """The script transpiled from SQLite-flavoured SQL (AUTOINCREMENT, ...), if it parses.

    Imported lazily: only schemas written for SQLite need sqlglot in the worker.
    """
    import sqlglot

    try:
        return sqlglot.transpile(script, read="sqlite", write="duckdb")
    except sqlglot.errors.SqlglotError:
        return None


def _run_script(con: duckdb.DuckDBPyConnection, script: str, label: str) -> None:
    try:
        statements = [s.query for s in con.extract_statements(script)]
    except duckdb.Error as error:
        translated = _from_sqlite(script)
        if translated is None:
            raise SandboxError(f"{label} does not parse as DuckDB SQL: {error}") from None
        statements = translated
    for number, statement in enumerate(statements, start=1):
        try:
            con.execute(statement)
        except duckdb.Error as error:
            translated = _from_sqlite(statement)
            if not translated or translated == [statement]:
                raise SandboxError(
                    f"{label} statement {number} failed: {excerpt(statement)}: {error}"
                ) from None
            try:
                for part in translated:
                    con.execute(part)
            except duckdb.Error:
                raise SandboxError(
                    f"{label} statement {number} failed: {excerpt(statement)}: {error}"
                ) from None


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class _Watchdog:
    """Interrupts the connection when a query's deadline passes, but never once it is over.

    One thread for the engine's whole life (starting a timer thread per query would cost more
    than most queries). The condition's lock closes the race where the deadline passes just as
    the query finishes and the interrupt would otherwise hit the next, innocent query.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._changed = threading.Condition()
        self._deadline: float | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._watch, name="duckdb-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        with self._changed:
            while not self._closed:
                if self._deadline is None:
                    self._changed.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._changed.wait(remaining)
                    continue
                self._con.interrupt()
                self._deadline = None

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Interrupts the connection if the block runs longer than `seconds`."""
        with self._changed:
            self._deadline = time.monotonic() + seconds
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._deadline = None

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join()


class DuckdbEngine(FileEngine):
    @staticmethod
    def build(path: str, ddl: str, seed: str | None) -> None:
        """Creates the database file from the schema DDL and seed rows, in one transaction.

        DDL that DuckDB does not parse is retried transpiled from SQLite by sqlglot, so the
        same schema file serves both engines.
        """
        con = duckdb.connect(path, config=dict(_CLOSED_DOORS))
        try:
            con.execute("BEGIN TRANSACTION")
            _run_script(con, ddl, "schema")
            if seed:
                _run_script(con, seed, "seed")
            con.execute("COMMIT")
        except duckdb.Error as error:
            raise SandboxError(f"cannot build the DuckDB sandbox database: {error}") from None
        finally:
            con.close()

    def __init__(self, path: str, limits: Limits) -> None:
        self._limits = limits
        config = {
            **_CLOSED_DOORS,
            "threads": 1,
            "memory_limit": f"{limits.memory_bytes // 4 // 2**20}MB",
            "temp_directory": "",
            "max_temp_directory_size": "0B",
            "lock_configuration": True,
        }
        try:
            self._con = duckdb.connect(path, read_only=True, config=config)
        except duckdb.Error as error:
            raise SandboxError(f"cannot open the DuckDB sandbox database: {error}") from None
        self._watchdog = _Watchdog(self._con)

    def execute(self, sql: str) -> ResultSet:
        con, limit = self._con, self._limits.max_rows
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as error:
            raise QueryFailed(str(error)) from None
        if len(statements) != 1:
            raise QueryFailed(
                f"DuckDB's parser sees {len(statements)} statements",
                reason=Reason.MULTIPLE_STATEMENTS if statements else Reason.PARSE,
            )
        statement = statements[0]
        if statement.type != duckdb.StatementType.SELECT:
            raise QueryFailed(
                f"DuckDB's parser sees a {statement.type.name} statement",
                reason=Reason.NOT_SELECT,
            )
        started = time.monotonic()
        try:
            with self._watchdog.deadline(self._limits.timeout_ms / 1000):
                con.execute(statement)
                rows = con.fetchmany(limit + 1)
                columns = tuple(d[0] for d in con.description or ())
        except duckdb.InterruptException:
            raise timed_out(started, self._limits) from None
        except duckdb.Error as error:
            raise QueryFailed(str(error)) from None
        return capped_result(columns, rows, limit, started)

    def checksum(self) -> str:
        con = self._con
        hasher = hashlib.sha256()
        catalog = [
            ("table", "SELECT database_name, schema_name, table_name, sql FROM duckdb_tables()"),
            (
                "view",
                "SELECT database_name, schema_name, view_name, sql FROM duckdb_views() "
                "WHERE NOT internal",
            ),
            (
                "sequence",
                "SELECT database_name, schema_name, sequence_name, sql FROM duckdb_sequences()",
            ),
            (
                "macro",
                "SELECT database_name, schema_name, function_name, macro_definition "
                "FROM duckdb_functions() WHERE NOT internal "
                "AND function_type IN ('macro', 'table_macro')",
            ),
        ]
        for kind, query in catalog:
            for database, schema, name, sql in con.execute(query + " ORDER BY ALL").fetchall():
                rows = ""
                if kind == "table":
                    path = ".".join(_quoted(part) for part in (database, schema, name))
                    rows = rows_digest(con.execute(f"SELECT * FROM {path}").fetchall())
                entry = [kind, database, schema, name, sql, rows]
                hasher.update(json.dumps(entry).encode() + b"\n")
        return hasher.hexdigest()

    def close(self) -> None:
        self._watchdog.close()
        self._con.close()
