"""SQLite engine: a database file built once, then served through a read-only connection.

Layers, each enough on its own for the attack it targets: the connection is opened with
`mode=ro` (no write reaches the file); an authorizer allows only reads, selects, recursive
CTEs and functions not on the deny list (no ATTACH, PRAGMA, temp tables, load_extension);
`SQLITE_LIMIT_ATTACHED` is 0; extension loading is off; `SQLITE_LIMIT_LENGTH` caps any string
or blob (`randomblob(1e9)` fails fast); temporary B-trees stay in memory, which the worker's
address-space limit bounds; and a progress handler stops the query at its deadline.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from urllib.parse import quote

from distillrun.sql.ddl_text import split_script
from distillrun.sql.errors import QueryFailed, QueryTimeout, SandboxError
from distillrun.sql.sandbox.base import ResultSet
from distillrun.sql.sandbox.engine import FileEngine, Limits, capped_result, excerpt, timed_out
from distillrun.sql.sandbox.protocol import rows_digest
from distillrun.sql.verdict import Reason

MAX_VALUE_BYTES = 16 * 2**20
"""Largest string or blob a query may build (SQLite's default is 1 GB)."""

PROGRESS_EVERY = 1000
"""Virtual-machine steps between two deadline checks: frequent enough for a 10 ms timeout."""

_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


def _run_script(con: sqlite3.Connection, script: str, label: str) -> None:
    for number, statement in enumerate(split_script(script), start=1):
        try:
            con.execute(statement)
        except sqlite3.Error as error:
            raise SandboxError(
                f"{label} statement {number} failed: {excerpt(statement)}: {error}"
            ) from None


class SqliteEngine(FileEngine):
    @staticmethod
    def build(path: str, ddl: str, seed: str | None) -> None:
        """Creates the database file from the schema DDL and seed rows, in one transaction."""
        con = sqlite3.connect(path, isolation_level=None)
        try:
            con.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            con.execute("BEGIN")
            _run_script(con, ddl, "schema")
            if seed:
                _run_script(con, seed, "seed")
            con.execute("COMMIT")
        finally:
            con.close()

    def __init__(self, path: str, limits: Limits) -> None:
        self._limits = limits
        self._deadline = math.inf
        self._timed_out = False
        self._denied: str | None = None
        con = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None)
        try:
            con.execute("PRAGMA temp_store = MEMORY")
            con.execute("PRAGMA trusted_schema = OFF")
            con.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
            if hasattr(con, "enable_load_extension"):  # absent when Python was built without
                con.enable_load_extension(False)
            con.set_authorizer(self._authorize)
            con.set_progress_handler(self._progress, PROGRESS_EVERY)
        except sqlite3.Error as error:
            con.close()
            raise SandboxError(f"cannot open the SQLite sandbox database: {error}") from None
        self._con = con

    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None
    ) -> int:
        if action in _ALLOWED_ACTIONS and not (
            action == sqlite3.SQLITE_FUNCTION and arg2 is not None and self._limits.denies(arg2)
        ):
            return sqlite3.SQLITE_OK
        self._denied = f"action {action} on {arg1 or arg2 or '-'}"
        return sqlite3.SQLITE_DENY

    def _progress(self) -> int:
        if time.monotonic() > self._deadline:
            self._timed_out = True
            return 1
        return 0

    def execute(self, sql: str) -> ResultSet:
        limit = self._limits.max_rows
        self._timed_out, self._denied = False, None
        started = time.monotonic()
        self._deadline = started + self._limits.timeout_ms / 1000
        cursor = self._con.cursor()
        try:
            cursor.execute(sql)
            rows = cursor.fetchmany(limit + 1)
            columns = tuple(d[0] for d in cursor.description or ())
        except sqlite3.Error as error:
            raise self._failure(error, started) from None
        finally:
            self._deadline = math.inf
            cursor.close()
        return capped_result(columns, rows, limit, started)

    def _failure(self, error: sqlite3.Error, started: float) -> QueryTimeout | QueryFailed:
        if self._timed_out:
            return timed_out(started, self._limits)
        if self._denied is not None:
            return QueryFailed(
                f"not authorized in the sandbox ({self._denied}): {error}", reason=Reason.FORBIDDEN
            )
        if isinstance(error, sqlite3.ProgrammingError) and "one statement" in str(error):
            return QueryFailed(
                f"SQLite sees more than one statement: {error}",
                reason=Reason.MULTIPLE_STATEMENTS,
            )
        return QueryFailed(str(error))

    def checksum(self) -> str:
        hasher = hashlib.sha256()
        for schema in ("main", "temp"):
            objects = self._con.execute(
                f"SELECT type, name, sql FROM {schema}.sqlite_master ORDER BY type, name"
            ).fetchall()
            for kind, name, sql in objects:
                rows = ""
                if kind == "table":
                    quoted = '"' + name.replace('"', '""') + '"'
                    rows = rows_digest(self._con.execute(f"SELECT * FROM {schema}.{quoted}"))
                hasher.update(json.dumps([schema, kind, name, sql, rows]).encode() + b"\n")
        return hasher.hexdigest()

    def close(self) -> None:
        self._con.close()
