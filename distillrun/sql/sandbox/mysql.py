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
- each query runs in the login's kept session (`session.py`) with the session's statement time,
  `sql_select_limit` (the row cap, applied by the server), autocommit off and `tx_read_only`
  set before it, so it runs in a read-only transaction; afterwards `COM_RESET_CONNECTION` rolls
  it back and clears the session (variables, user locks, temporary tables, prepared statements,
  HANDLERs); a session that timed out, was refused something, ran a statement that is no query
  (`SET`, `USE`) or broke is closed instead. The client never enables multi-statements, so
  the server refuses a second statement;
- MySQL has no cursor that only admits a SELECT, and a single statement can reset the session's
  limits (`SET STATEMENT max_statement_time = 0 FOR ...`, `BEGIN NOT ATOMIC ... END`). The static
  checks refuse all of those; should one get through, the worker process's hard deadline ends
  the session and the administrator kills whatever the login still runs on the server.

The witness (see `server.py`) is one sum of server-wide counters and the login's account row.
The counters: every statement but reads (`Com_*`, statements inside stored routines
included; DDL that only writes a definition file, a view or a trigger, counts there) and the
rows inserted or deleted in any table (`Handler_write`, `Handler_delete`). Rows updated are
not counted (MariaDB counts window functions' work there), as every UPDATE is a counted
statement; the one update that comes as a `SET` (`SET PASSWORD`, `SET DEFAULT ROLE`) is to
the login's account row (`mysql.global_priv`), which is read as it is. Counters only grow, so
an equal sum means none moved. A query's own transaction has ended (rolled back, never
committed) before the witness is read; a write by another session that is between its row
change and its commit at that moment is the one thing the witness could miss (PostgreSQL's
snapshot has no such gap).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

import pymysql

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.errors import (
    QueryFailed,
    QueryTimeout,
    SandboxError,
    SandboxUnreachable,
    SessionLost,
)
from distillrun.sql.sandbox.engine import excerpt, timed_out
from distillrun.sql.sandbox.server import ServerAdmin, split_statements
from distillrun.sql.sandbox.session import CONNECT_TIMEOUT_S, Login, ServerSession
from distillrun.sql.target import ServerTarget
from distillrun.sql.verdict import Reason

_COM_RESET_CONNECTION = 0x1F
"""The protocol command that resets a session (MySQL 5.7+, MariaDB 10.2.4+)."""

_TIMEOUT_CODES = frozenset({1969, 3024, 1317})
"""max_statement_time exceeded (MariaDB), max_execution_time exceeded (MySQL), interrupted."""

_FORBIDDEN_CODES = frozenset({1044, 1045, 1142, 1143, 1227, 1290, 1370, 1792})
"""Access denied (database, user, table, column, privilege, routine); read-only server or
transaction."""

_LOST_CODES = frozenset({1049, 1927, 2003, 2006, 2013, 2055, 4031})
"""Unknown database, connection killed, cannot connect, server gone, connection lost."""
_UNREACHABLE_CODES = frozenset({1053, 2003, 2005, 2006, 2013})
"""Shutting down, cannot connect, unknown host, server gone, connection lost: the server is
not there (yet), as opposed to refusing the administrator."""


_READ_STATEMENTS = (
    "COM_SELECT",
    "COM_SET_OPTION",
    "COM_CHANGE_DB",
    "COM_ADMIN_COMMANDS",
    "COM_ROLLBACK",
    "COM_BEGIN",
    "COM_CHECKSUM",
)
"""The statement counters the witness leaves out, besides every `SHOW`: the statements every
query cycle and the checksum send (`SET`, the query, `COM_RESET_CONNECTION`, `CHECKSUM
TABLE`) and the harmless ones a query may be (`USE`, `BEGIN`, `ROLLBACK`), none of which
changes anything the checksum covers without also moving a row-write counter."""

_WITNESS = (
    "SELECT CONCAT_WS(' ', (SELECT SUM(VARIABLE_VALUE) FROM information_schema.GLOBAL_STATUS "
    "WHERE VARIABLE_NAME LIKE 'COM\\_%%' AND VARIABLE_NAME NOT LIKE 'COM\\_SHOW\\_%%' "
    "AND VARIABLE_NAME NOT IN ("
    + ", ".join(f"'{name}'" for name in _READ_STATEMENTS)
    + ") OR VARIABLE_NAME IN ('HANDLER_WRITE', 'HANDLER_DELETE')), "
    "(SELECT Priv FROM mysql.global_priv WHERE User = %s AND Host = '%%'))"
)
"""Statement and row counters, and the login's account: see the module docstring."""


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


def _connect(login: Login, **options: Any) -> Any:
    """A session over TCP without TLS (loopback or the run's own network), in utf8mb4, that
    never reads a client-side file and never sends several statements at once (the client
    flag is off: the server refuses a second statement)."""
    return pymysql.connect(
        **login.driver_arguments(database_key="database"),
        local_infile=False,
        ssl_disabled=True,
        charset="utf8mb4",
        **options,
    )


class MysqlAdmin(ServerAdmin):
    """Builds, checksums and drops one private database and its read-only login."""

    def __init__(self, target: ServerTarget, name: str, limits: SandboxSpec) -> None:
        super().__init__(target, name, limits)
        self._con: Any = None

    @property
    def _account(self) -> str:
        return f"'{self.reader}'@'%'"

    def _connect(self, database: str | None = None) -> Any:
        try:
            return _connect(self.admin_login(database), autocommit=True)
        except pymysql.Error as error:
            unreachable = _code(error) in _UNREACHABLE_CODES
            raise (SandboxUnreachable if unreachable else SandboxError)(
                f"cannot reach the MySQL sandbox server at {self.target.host}:"
                f"{self.target.port} as {self.target.user}: {_message(error)}"
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

    def witness(self) -> str | None:
        found = self._run(_WITNESS, (self.reader,))
        return str(found[0][0]) if found and found[0][0] is not None else None

    def exists(self) -> bool:
        found = self._run(
            "SELECT (SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = %s) "
            "+ (SELECT COUNT(*) FROM mysql.user WHERE user = %s AND host = '%%')",
            (self.database, self.reader),
        )
        return bool(found) and int(found[0][0]) == 2

    def reader_works(self) -> bool:
        try:
            _connect(self.reader_login()).close()
        except pymysql.Error:
            return False
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


class MysqlEngine(ServerSession[Any]):
    """Runs each query in the kept session of the sandbox's read-only login: limits and a
    read-only transaction set, the query, then `COM_RESET_CONNECTION`."""

    driver_error = pymysql.Error

    def _open(self) -> Any:
        read_s = self._limits.timeout_ms / 1000 + CONNECT_TIMEOUT_S
        return _connect(self._login, read_timeout=read_s, write_timeout=read_s, autocommit=False)

    def _begin(self, session: Any) -> None:
        """Autocommit off and `tx_read_only`: the query opens a read-only transaction."""
        with session.cursor() as cursor:
            cursor.execute(
                "SET SESSION autocommit = 0, tx_read_only = 1, max_statement_time = %s, "
                "sql_select_limit = %s",
                (self._limits.timeout_ms / 1000, self._limits.max_rows + 1),
            )

    def _query(self, session: Any, sql: str) -> tuple[tuple[str, ...] | None, list[Any]]:
        with session.cursor() as cursor:
            cursor.execute(sql)
            rows = list(cursor.fetchmany(self._limits.max_rows + 1))
            description = cursor.description
            return None if description is None else tuple(d[0] for d in description), rows

    def _reset(self, session: Any) -> None:
        """`COM_RESET_CONNECTION` rolls back and clears the session (variables, user locks,
        temporary tables, prepared statements, HANDLERs). It keeps the current database, which
        only `USE` changes; a `USE` returns no result set, so its session is dropped instead
        (`session.py`).

        PyMySQL has no call for that command; it is sent as `ping` sends its own.
        """
        session._execute_command(_COM_RESET_CONNECTION, b"")
        session._read_ok_packet()

    def _close(self, session: Any) -> None:
        with contextlib.suppress(pymysql.Error):  # a session closed by the server already
            session.close()

    def _failure(
        self, error: Exception, session: Any, started: float
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

    @staticmethod
    def _describe(error: Exception) -> str:
        return _message(error)
