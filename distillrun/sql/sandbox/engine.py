"""The in-process side of a sandbox: one engine, one read-only database, cooperative limits.

Engines live inside the worker process. Their limits (SQLite's progress handler, DuckDB's
interrupt, a server's statement timeout) are cooperative: they stop a query at the engine's
next check. The worker process around them is what makes the limits hard (see `process.py`).
Embedded engines (`FileEngine`) also build their database file; server engines are only
clients of a database the parent process built (see `server.py`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from distillrun.sql.errors import QueryTimeout
from distillrun.sql.sandbox.base import ResultSet
from distillrun.sql.sandbox.protocol import plain

EXCERPT_CHARS = 200


@dataclass(frozen=True)
class Limits:
    """What one query may use, and which functions it may not call at all."""

    timeout_ms: int
    max_rows: int
    memory_bytes: int
    deny_functions: frozenset[str]
    deny_prefixes: tuple[str, ...]

    def denies(self, function: str) -> bool:
        lowered = function.lower()
        return lowered in self.deny_functions or lowered.startswith(self.deny_prefixes)


def excerpt(sql: str) -> str:
    """A statement shortened for an error message."""
    flat = " ".join(sql.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 3] + "..."


def capped_result(
    columns: tuple[str, ...], rows: Sequence[Sequence[Any]], limit: int, started: float
) -> ResultSet:
    """The result of a query that fetched up to `limit + 1` rows (the extra one only says
    the result was cut), timed from `started` (`time.monotonic()`)."""
    return ResultSet(
        columns=columns,
        rows=tuple(tuple(plain(v) for v in row) for row in rows[:limit]),
        truncated=len(rows) > limit,
        ms=(time.monotonic() - started) * 1000,
    )


def timed_out(started: float, limits: Limits) -> QueryTimeout:
    """The error for a query, started at `started`, that its statement timeout stopped."""
    elapsed = (time.monotonic() - started) * 1000
    return QueryTimeout(
        f"stopped after {elapsed:.0f} ms: the statement timeout is {limits.timeout_ms} ms"
    )


class Engine(ABC):
    """A read-only connection to a sandbox database."""

    @abstractmethod
    def __init__(self, location: str, limits: Limits) -> None:
        """Opens the database at `location` read-only, with `limits` on every query.

        `location` is a file path for embedded engines and a JSON object (host, port, user,
        password, database) for server engines.
        """

    @abstractmethod
    def execute(self, sql: str) -> ResultSet:
        """Runs one query; raises QueryTimeout or QueryFailed (server engines also SessionLost,
        when their session to the server could not be opened or ended under the query)."""

    @abstractmethod
    def close(self) -> None:
        """Closes the connection."""


class FileEngine(Engine):
    """An embedded engine whose database is a file the worker builds first."""

    @staticmethod
    @abstractmethod
    def build(path: str, ddl: str, seed: str | None) -> None:
        """Creates the database file at `path` from the schema DDL and the seed rows.

        Raises SandboxError naming the statement that does not load.
        """

    @abstractmethod
    def checksum(self) -> str:
        """sha256 over every object and table row in the database, temporary ones included.

        (Server sandboxes checksum on the server, as the administrator: see `server.py`.)
        """
