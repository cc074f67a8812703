"""The read-only client of a server sandbox, in the worker process: one kept session, made
clean again for every query.

Opening a session costs a PostgreSQL backend (a fork) or a MariaDB login; reusing one is what
lets a server sandbox run hundreds of queries a second. Reuse must not let one query see or
leave anything for the next, so the life of every query is the same:

1. `_begin`: the session's limits are applied again (a read-only transaction, the statement
   timeout, the row cap) whatever the last query did to them;
2. `_query`: the query runs (one statement, never several);
3. `_reset`: the transaction is rolled back and the session's state is cleared (PostgreSQL
   `DISCARD ALL`, MariaDB `COM_RESET_CONNECTION`): settings, variables, locks, prepared
   statements, temporary objects, the current database.

A session that misbehaved is not reset but dropped, and the next query opens a fresh one: after
a timeout, a refused action (a permission or read-only error), a statement the server saw as
several, a statement that returned no result set (`SET`, `USE`: no query), a lost connection,
or a failed reset. Only a query that returned rows or failed with an ordinary error (a typo, a
bad cast: what wrong model output looks like) keeps its session.
A kept session that died while idle (a restarted server, an idle timeout) is replaced before
the query runs, so that never reaches the caller.
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

from distillrun.sql.errors import QueryFailed, QueryTimeout, SessionLost
from distillrun.sql.sandbox.base import ResultSet
from distillrun.sql.sandbox.engine import Engine, Limits, capped_result
from distillrun.sql.verdict import Reason

CONNECT_TIMEOUT_S = 10

Connection = TypeVar("Connection")


@dataclass(frozen=True)
class Login:
    """Where and as whom a session logs in (the JSON `location` a server engine is given)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str | None = None
    """None: no default database (a MySQL administrator's server-wide session)."""

    def driver_arguments(self, *, database_key: str) -> dict[str, Any]:
        """The login as a driver's keyword arguments, with the connect timeout; drivers name
        the database argument differently."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            database_key: self.database,
            "connect_timeout": CONNECT_TIMEOUT_S,
        }

    def location(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_location(cls, location: str) -> Login:
        fields: dict[str, Any] = json.loads(location)
        return cls(**fields)


class ServerSession(Engine, Generic[Connection]):
    """Runs each query in the kept session of the sandbox's read-only login (see the module
    docstring); subclasses speak the server's protocol."""

    driver_error: type[Exception]
    """The base class of the driver's errors: what `_open`, `_begin`, `_query` and `_reset`
    raise when the server says no or the connection breaks."""

    def __init__(self, location: str, limits: Limits) -> None:
        self._login = Login.from_location(location)
        self._limits = limits
        self._session: Connection | None = None

    def execute(self, sql: str) -> ResultSet:
        started = time.monotonic()
        session = self._ready()
        try:
            columns, rows = self._query(session, sql)
        except self.driver_error as error:
            failure = self._failure(error, session, started)
            ordinary = isinstance(failure, QueryFailed) and failure.reason == Reason.EXECUTION_ERROR
            self._finish(session, keep=ordinary)
            raise failure from None
        result = capped_result(columns or (), rows, self._limits.max_rows, started)
        self._finish(session, keep=columns is not None)
        return result

    def close(self) -> None:
        self._drop()

    def _ready(self) -> Connection:
        """The kept session with the limits applied, or a fresh one; SessionLost when no
        session can be opened."""
        if self._session is not None:
            try:
                self._begin(self._session)
                return self._session
            except self.driver_error:
                self._drop()  # died while idle: a fresh session is as good
        try:
            session = self._open()
        except self.driver_error as error:
            raise SessionLost(
                f"cannot open a session as the sandbox's read-only login: {self._describe(error)}"
            ) from None
        self._session = session
        try:
            self._begin(session)
        except self.driver_error as error:
            self._drop()
            raise SessionLost(
                f"cannot start a read-only transaction: {self._describe(error)}"
            ) from None
        return session

    def _finish(self, session: Connection, *, keep: bool) -> None:
        """Resets the session for the next query, or drops it (see the module docstring)."""
        if keep:
            try:
                self._reset(session)
                return
            except self.driver_error:
                pass
        self._drop()

    def _drop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            self._close(session)

    @abstractmethod
    def _open(self) -> Connection:
        """A new session of the read-only login, in the sandbox's database."""

    @abstractmethod
    def _begin(self, session: Connection) -> None:
        """Applies the limits and opens a read-only transaction for the next query."""

    @abstractmethod
    def _query(self, session: Connection, sql: str) -> tuple[tuple[str, ...] | None, Sequence[Any]]:
        """Runs the query; its column names (None: the statement returned no result set, so it
        was no query) and at most `max_rows + 1` rows."""

    @abstractmethod
    def _reset(self, session: Connection) -> None:
        """Rolls the transaction back and clears everything the query may have left."""

    @abstractmethod
    def _close(self, session: Connection) -> None:
        """Closes the session without raising."""

    @abstractmethod
    def _failure(
        self, error: Exception, session: Connection, started: float
    ) -> QueryTimeout | QueryFailed | SessionLost:
        """The driver's error for a query started at `started`, in the sandbox's terms."""

    @staticmethod
    @abstractmethod
    def _describe(error: Exception) -> str:
        """The server's own words for an error, one line."""
