"""MySQL/MariaDB sandboxes: the administrator's side (`MysqlAdmin`, in the parent process) and
the read-only client (`MysqlEngine`, in the worker process).

What stops what, each layer enough on its own for the attack it names:

- the login holds SELECT on its private database and nothing else: no FILE privilege (so no
  `LOAD DATA INFILE`, `SELECT ... INTO OUTFILE/DUMPFILE`, and `LOAD_FILE` returns NULL), no
  INSERT on `mysql.*` (so no `CREATE FUNCTION ... SONAME`, the way to `sys_exec`), no
  PROCESS, SUPER, RELOAD or SHUTDOWN; the server itself runs with `--local-infile=0` and
  `--secure-file-priv` pointing at an empty directory (see the Kubernetes builders);
- the login's own resource limits: `MAX_STATEMENT_TIME` and `MAX_USER_CONNECTIONS`;
- the server runs `--read-only`, which the administrator (holding READ_ONLY ADMIN) does not
  feel, but which stops the one change MySQL lets any login make, `SET PASSWORD` for itself;
- each query runs in a fresh session (a new connection) with the session's statement time and
  `sql_select_limit` (the row cap, applied by the server) set, inside `START TRANSACTION READ
  ONLY`, and is rolled back; the client never enables multi-statements, so the server refuses
  a second statement;
- MySQL has no cursor that only admits a SELECT, and a single statement can reset the session's
  limits (`SET STATEMENT max_statement_time = 0 FOR ...`, `BEGIN NOT ATOMIC ... END`). The static
  checks refuse all of those; should one get through, the worker process's hard deadline ends
  the session and the administrator kills whatever the login still runs on the server.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pymysql

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.errors import QueryFailed, QueryTimeout, SandboxError, SessionLost
from distillrun.sql.sandbox.base import ResultSet
from distillrun.sql.sandbox.engine import Engine, Limits, capped_result, excerpt, timed_out
from distillrun.sql.sandbox.server import ServerAdmin, split_statements
from distillrun.sql.target import ServerTarget
from distillrun.sql.verdict import Reason

CONNECT_TIMEOUT_S = 10

_TIMEOUT_CODES = frozenset({1969, 3024, 1317})
"""max_statement_time exceeded (MariaDB), max_execution_time exceeded (MySQL), interrupted."""

_FORBIDDEN_CODES = frozenset({1044, 1045, 1142, 1143, 1227, 1290, 1370, 1792})
"""Access denied (database, user, table, column, privilege, routine); read-only server or
transaction."""

_LOST_CODES = frozenset({1049, 1927, 2003, 2006, 2013, 2055, 4031})
"""Unknown database, connection killed, cannot connect, server gone, connection lost."""


def _code(error: Exception) -> int:
    """The server's error number (pymysql errors carry it as their first argument)."""
    args: tuple[Any, ...] = error.args
    return args[0] if args and isinstance(args[0], int) else 0


def _message(error: Exception) -> str:
    args: tuple[Any, ...] = error.args
    if len(args) >= 2 and isinstance(args[1], str) and args[1]:
        return f"{args[1]} ({args[0]})"
    return str(error) or type(error).__name__


def _quoted(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


class MysqlAdmin(ServerAdmin):
    """Builds, checksums and drops one private database and its read-only login."""

    def __init__(self, target: ServerTarget, name: str, limits: SandboxSpec) -> None:
        super().__init__(target, name, limits)
        self._con: Any = None

    @property
    def _account(self) -> str:
        return f"'{self.reader}'@'%'"

    def _connect(self, database: str | None = None) -> Any:
        target = self.target
        try:
            return pymysql.connect(
                host=target.host,
                port=target.port,
                user=target.user,
                password=target.password,
                database=database,
                connect_timeout=CONNECT_TIMEOUT_S,
                autocommit=True,
                ssl_disabled=True,
                charset="utf8mb4",
            )
        except pymysql.Error as error:
            raise SandboxError(
                f"cannot reach the MySQL sandbox server at {target.host}:{target.port} as "
                f"{target.user}: {_message(error)}"
            ) from None

    def _run(self, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        """One administrator statement on the shared connection (re-opened when it died)."""
        if self._con is None or not self._con.open:
            self._con = self._connect()
        try:
            with self._con.cursor() as cursor:
                cursor.execute(statement, args)
                return list(cursor.fetchall())
        except pymysql.Error as error:
            if _code(error) in _LOST_CODES or isinstance(error, pymysql.err.InterfaceError):
                self._con = None
            raise SandboxError(
                f"the MySQL sandbox server refused {excerpt(statement)}: {_message(error)}"
            ) from None

    def build(self, ddl: str, seed: str | None) -> None:
        seconds = self.limits.statement_timeout_ms / 1000
        self._run(
            "CREATE USER %s@'%%' IDENTIFIED BY %s "
            f"WITH MAX_USER_CONNECTIONS 4 MAX_STATEMENT_TIME {seconds:.3f}",
            (self.reader, self.reader_password),
        )
        self._run(f"CREATE DATABASE {_quoted(self.database)} CHARACTER SET utf8mb4")
        self._run(f"GRANT SELECT ON {_quoted(self.database)}.* TO {self._account}")
        con = self._connect(self.database)
        try:
            for label, script in (("schema", ddl), ("seed", seed or "")):
                for number, statement in enumerate(split_statements(script, Dialect.MYSQL), 1):
                    try:
                        with con.cursor() as cursor:
                            cursor.execute(statement)
                    except pymysql.Error as error:
                        raise SandboxError(
                            f"{label} statement {number} failed: {excerpt(statement)}: "
                            f"{_message(error)}"
                        ) from None
        finally:
            con.close()

    def checksum(self) -> str:
        hasher = hashlib.sha256()
        db = (self.database,)
        catalog = (
            (
                "SELECT table_name, table_type, engine, table_collation, create_options "
                "FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
                db,
            ),
            (
                "SELECT table_name, column_name, column_type, is_nullable, column_default, "
                "ordinal_position FROM information_schema.columns WHERE table_schema = %s "
                "ORDER BY 1, 6",
                db,
            ),
            (
                "SELECT view_name, view_definition FROM ("
                "SELECT table_name AS view_name, view_definition FROM information_schema.views "
                "WHERE table_schema = %s) v ORDER BY 1",
                db,
            ),
            (
                "SELECT routine_name, routine_type, routine_definition "
                "FROM information_schema.routines WHERE routine_schema = %s ORDER BY 1, 2",
                db,
            ),
            (
                "SELECT trigger_name, event_object_table, action_statement "
                "FROM information_schema.triggers WHERE trigger_schema = %s ORDER BY 1",
                db,
            ),
            (
                "SELECT event_name, event_definition FROM information_schema.events "
                "WHERE event_schema = %s ORDER BY 1",
                db,
            ),
            ("SELECT name, dl FROM mysql.func ORDER BY 1", None),
            (f"SHOW GRANTS FOR {self._account}", None),
        )
        for statement, args in catalog:
            for row in self._run(statement, args):
                hasher.update(self._anonymous(json.dumps(row, default=str)).encode() + b"\n")
        tables = self._run(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY 1",
            db,
        )
        if tables:
            names = ", ".join(f"{_quoted(self.database)}.{_quoted(t)}" for (t,) in tables)
            for row in self._run(f"CHECKSUM TABLE {names} EXTENDED"):
                hasher.update(self._anonymous(json.dumps(row, default=str)).encode() + b"\n")
        return hasher.hexdigest()

    def _anonymous(self, text: str) -> str:
        """The text without what names this sandbox (login, database, the hash of the login's
        password), so the same schema and seed rows give the same checksum in every sandbox.
        A password hash other than the one the sandbox set stays, so a changed password shows.
        """
        inner = hashlib.sha1(hashlib.sha1(self.reader_password.encode()).digest()).hexdigest()
        text = text.replace(f"PASSWORD '*{inner.upper()}'", "PASSWORD '<reader password>'")
        return text.replace(self.reader, "<reader>").replace(self.database, "<database>")

    def exists(self) -> bool:
        found = self._run(
            "SELECT (SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = %s) "
            "+ (SELECT COUNT(*) FROM mysql.user WHERE user = %s AND host = '%%')",
            (self.database, self.reader),
        )
        return bool(found) and int(found[0][0]) == 2

    def reader_works(self) -> bool:
        try:
            con = pymysql.connect(
                host=self.target.host,
                port=self.target.port,
                user=self.reader,
                password=self.reader_password,
                database=self.database,
                connect_timeout=CONNECT_TIMEOUT_S,
                ssl_disabled=True,
            )
        except pymysql.Error:
            return False
        con.close()
        return True

    def cancel_queries(self) -> None:
        self._run("KILL QUERY USER %s", (self.reader,))

    def drop(self) -> None:
        self._run("KILL CONNECTION USER %s", (self.reader,))
        self._run(f"DROP DATABASE IF EXISTS {_quoted(self.database)}")
        self._run(f"DROP USER IF EXISTS {self._account}")

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


class MysqlEngine(Engine):
    """Runs each query in a fresh read-only session of the sandbox's read-only login."""

    def __init__(self, location: str, limits: Limits) -> None:
        self._where = json.loads(location)
        self._limits = limits

    def execute(self, sql: str) -> ResultSet:
        limit, timeout_ms = self._limits.max_rows, self._limits.timeout_ms
        started = time.monotonic()
        con = self._connect()
        try:
            with con.cursor() as cursor:
                cursor.execute(
                    "SET SESSION max_statement_time = %s, sql_select_limit = %s",
                    (timeout_ms / 1000, limit + 1),
                )
                cursor.execute("START TRANSACTION READ ONLY")
                cursor.execute(sql)
                rows = list(cursor.fetchmany(limit + 1))
                columns = tuple(d[0] for d in cursor.description or ())
            con.rollback()
        except pymysql.Error as error:
            raise self._failure(error, started) from None
        finally:
            con.close()
        return capped_result(columns, rows, limit, started)

    def _connect(self) -> Any:
        where = self._where
        read_s = self._limits.timeout_ms / 1000 + CONNECT_TIMEOUT_S
        try:
            return pymysql.connect(
                host=where["host"],
                port=where["port"],
                user=where["user"],
                password=where["password"],
                database=where["database"],
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=read_s,
                write_timeout=read_s,
                autocommit=False,
                local_infile=False,
                ssl_disabled=True,
                charset="utf8mb4",
            )
        except pymysql.Error as error:
            raise SessionLost(
                f"cannot open a session as the sandbox's read-only login: {_message(error)}"
            ) from None

    def _failure(
        self, error: Exception, started: float
    ) -> QueryTimeout | QueryFailed | SessionLost:
        code = _code(error)
        if code in _TIMEOUT_CODES:
            return timed_out(started, self._limits)
        if code in _LOST_CODES or isinstance(error, pymysql.err.InterfaceError):
            return SessionLost(f"the session ended under the query: {_message(error)}")
        if code in _FORBIDDEN_CODES:
            return QueryFailed(
                f"not allowed in the sandbox: {_message(error)}", reason=Reason.FORBIDDEN
            )
        return QueryFailed(_message(error))

    def close(self) -> None:
        """Nothing stays open between queries: every query has its own session."""
