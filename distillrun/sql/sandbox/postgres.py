"""PostgreSQL sandboxes: the administrator's side (`PostgresAdmin`, in the parent process) and
the read-only client (`PostgresEngine`, in the worker process).

What stops what, each layer enough on its own for the attack it names:

- the login is `NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS`, with
  SELECT on the schema's tables and USAGE on their schemas only; PUBLIC loses TEMP and CONNECT
  on the database and everything on its schemas, so nothing can be created anywhere;
- EXECUTE is revoked from PUBLIC, in the private database, on every built-in function the
  static checks forbid (`pg_*`: files, sleep, signals, advisory locks, settings; `lo_*`:
  large objects; `set_config`, `query_to_xml`, ...). `COPY ... PROGRAM`/`TO file`,
  `pg_read_file` and server-side `lo_import` need superuser or `pg_*_server_*` roles, which
  the login has not; `dblink` and other extensions are not installed, and installing one
  needs CREATE on the database;
- the login's own settings make every transaction read-only, time statements out and cap
  temporary files; each query also runs in an explicit `BEGIN READ ONLY` transaction with a
  `SET LOCAL statement_timeout`, and is rolled back;
- each query runs through a server-side cursor (`DECLARE ... CURSOR FOR <query>`): the server
  accepts only a SELECT or VALUES there, never several statements (the extended protocol
  refuses them), and `FETCH` reads at most `max_rows + 1` rows, so a huge result never leaves
  the server;
- each query runs in the login's kept session (`session.py`), rolled back and then cleared
  with `DISCARD ALL` (settings, cursors, prepared statements, advisory locks, LISTEN,
  temporary objects, sequence caches), so nothing a query sets or locks survives it; a session
  that timed out, was refused something or broke is closed and the next query gets a new
  backend.

The witness (see `server.py`) is the cluster's snapshot (`pg_current_snapshot()`: the oldest
running transaction, the next one and those in progress) and the state of every sequence in
the private database. Every change to a table, a catalog (definitions, grants, roles, role
settings) or a large object is made by a transaction with a transaction id, and assigning or
ending one moves the snapshot; sequences are the one thing that changes without one (`nextval`
writes its WAL ahead), so they are read as they are.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.pq import TransactionStatus

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.checks import is_forbidden_function
from distillrun.sql.errors import (
    QueryFailed,
    QueryTimeout,
    SandboxError,
    SandboxUnreachable,
    SessionLost,
)
from distillrun.sql.sandbox.engine import excerpt, timed_out
from distillrun.sql.sandbox.server import ServerAdmin, not_reached, split_statements
from distillrun.sql.sandbox.session import Login, ServerSession
from distillrun.sql.target import ServerTarget
from distillrun.sql.verdict import Reason

CURSOR = "distillrun_query"
_DECLARE_PREFIX = len(f'DECLARE "{CURSOR}" CURSOR FOR ')
"""psycopg sends `DECLARE "<cursor>" CURSOR FOR <query>`; error positions are shifted by this."""

_FORBIDDEN_SQLSTATES = {"42501": "permission denied", "25006": "read-only transaction"}
_LOST_SQLSTATE_PREFIXES = ("08", "57P")
"""Connection exceptions and operator interventions (terminated, server shutting down)."""

_SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema')"
_USER_NAMESPACE = (
    f"n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_toast%' "
    "AND n.nspname NOT LIKE 'pg\\_temp\\_%'"
)

_CATALOG_QUERIES = (
    # relations (tables, views, sequences, indexes) with owner and grants
    "SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relacl::text, "
    "CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END "
    f"FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_USER_NAMESPACE}",
    # columns and their defaults
    "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), "
    "a.attnotnull, pg_get_expr(d.adbin, d.adrelid) "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
    f"WHERE {_USER_NAMESPACE} AND a.attnum > 0 AND NOT a.attisdropped",
    # schemas, their owners and grants
    "SELECT n.nspname, pg_get_userbyid(n.nspowner), n.nspacl::text FROM pg_namespace n "
    "WHERE n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast%'",
    # user functions by name (their oids change with every build) ...
    "SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), md5(p.prosrc), "
    "p.proacl::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    f"WHERE {_USER_NAMESPACE}",
    # ... and built-ins by oid, with grants that differ from the default (the revocations)
    "SELECT p.oid, p.proacl::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    f"WHERE p.proacl IS NOT NULL AND NOT ({_USER_NAMESPACE})",
    "SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal",
    "SELECT polrelid::regclass::text, polname, polcmd FROM pg_policy",
    "SELECT extname, extversion FROM pg_extension",
    "SELECT count(*) FROM pg_largeobject_metadata",
    "SELECT datacl::text FROM pg_database WHERE datname = current_database()",
)
"""Everything a query could change in the database besides rows, as the administrator sees it."""

_READER_QUERIES = (
    "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, "
    "rolbypassrls, rolconnlimit, rolvaliduntil::text FROM pg_roles WHERE rolname = {role}",
    "SELECT s.setdatabase, s.setconfig FROM pg_db_role_setting s "
    "JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = {role}",
    "SELECT m.roleid::regrole::text FROM pg_auth_members m "
    "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = {role}",
)
"""The read-only login's attributes, settings and memberships (they live outside the database)."""

_RELATIONS = (
    "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    f"WHERE {_USER_NAMESPACE} AND c.relkind IN ('r', 'm', 'S') ORDER BY 1, 2"
)
"""Relations with contents: tables, materialized views and sequences."""


def _witness_statement(sequences: list[tuple[str, str]]) -> sql.Composed:
    """The snapshot and the state of each of `sequences` (schema, name), in one row.

    The sequences are those the last checksum saw: one created since needed a transaction id
    (the snapshot moved), and reading them by name is far cheaper than listing them.
    """
    parts: list[sql.Composable] = [sql.SQL("pg_current_snapshot()::text")]
    parts += [
        sql.SQL("(SELECT {} || '=' || last_value || ':' || is_called FROM {})").format(
            sql.Literal(f"{schema}.{name}"), sql.Identifier(schema, name)
        )
        for schema, name in sequences
    ]
    return sql.SQL("SELECT concat_ws(' ', {})").format(sql.SQL(", ").join(parts))


def _checksum_statement(relations: list[tuple[str, str, str]], reader: str) -> sql.Composed:
    """One statement that digests the catalog, the reader and every relation's rows on the
    server, so checking the data after each query costs one round trip, not one per table.

    The reader's name (which names the sandbox) is replaced by a placeholder, so the same
    schema and seed rows give the same checksum in every sandbox.
    """
    digest = sql.SQL(
        "(SELECT coalesce(md5(string_agg(replace(t::text, {reader}, '<reader>'), E'\\n' "
        "ORDER BY t::text)), '') FROM ({query}) AS t)"
    )
    role = sql.Literal(reader)
    parts = [digest.format(reader=role, query=sql.SQL(query)) for query in _CATALOG_QUERIES]
    parts += [
        digest.format(reader=role, query=sql.SQL(query).format(role=role))
        for query in _READER_QUERIES
    ]
    for schema, name, kind in relations:
        relation = sql.Identifier(schema, name)
        if kind == "S":
            sequence = sql.SQL("SELECT last_value, is_called FROM {}").format(relation)
            parts.append(digest.format(reader=role, query=sequence))
        else:
            parts.append(
                sql.SQL(
                    "(SELECT count(*) || ':' || coalesce(md5(string_agg(md5(t::text), '' "
                    "ORDER BY md5(t::text))), '') FROM ONLY {} AS t)"
                ).format(relation)
            )
    return sql.SQL("SELECT concat_ws(',', {})").format(sql.SQL(", ").join(parts))


def _message(error: psycopg.Error) -> str:
    """The server's own words, without psycopg's echo of the DECLARE wrapper."""
    primary = error.diag.message_primary or str(error).splitlines()[0]
    if error.diag.message_detail:
        primary += f" ({error.diag.message_detail})"
    position = error.diag.statement_position
    if position is not None and int(position) > _DECLARE_PREFIX:
        primary += f" at character {int(position) - _DECLARE_PREFIX}"
    return primary


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


SERVER_GONE_STATES = frozenset({"57P01", "57P02", "57P03"})
"""admin_shutdown, crash_shutdown, cannot_connect_now: the server is stopping or starting."""


def _failure(message: str, error: psycopg.Error) -> SandboxError:
    """`message` as the error to raise: SandboxUnreachable when `error` says the server is not
    there (refused, starting, shutting down, the connection lost), since nothing is wrong with
    what the sandbox asked of it; else SandboxError."""
    gone = isinstance(error, psycopg.OperationalError) and (
        error.sqlstate in SERVER_GONE_STATES or not_reached(str(error))
    )
    return (SandboxUnreachable if gone else SandboxError)(message)


def _connect(login: Login, application: str) -> psycopg.Connection[Any]:
    """A session in autocommit mode (transactions are begun explicitly), never preparing
    statements (a prepared statement would outlive the query that made it)."""
    return psycopg.connect(
        **login.driver_arguments(database_key="dbname"),
        autocommit=True,
        prepare_threshold=None,
        application_name=application,
    )


class PostgresAdmin(ServerAdmin):
    """Builds, checksums and drops one private database and its read-only login."""

    def __init__(self, target: ServerTarget, name: str, limits: SandboxSpec) -> None:
        super().__init__(target, name, limits)
        self._server: psycopg.Connection[Any] | None = None
        self._data: psycopg.Connection[Any] | None = None
        self._sequences: list[tuple[str, str]] = []
        """The sequences the last checksum saw, which the witness reads."""

    def _connect(self, database: str) -> psycopg.Connection[Any]:
        try:
            return _connect(self.admin_login(database), "distillrun-sandbox-admin")
        except psycopg.Error as error:
            raise _failure(
                f"cannot reach the PostgreSQL sandbox server at {self.target.host}:"
                f"{self.target.port} as {self.target.user}: {_first_line(error)}",
                error,
            ) from None

    def _maintenance(self) -> psycopg.Connection[Any]:
        if self._server is None or self._server.closed or self._server.broken:
            self._server = self._connect(self.target.maintenance_database)
        return self._server

    def _database(self) -> psycopg.Connection[Any]:
        if self._data is None or self._data.closed or self._data.broken:
            self._data = self._connect(self.database)
        return self._data

    def build(self, ddl: str, seed: str | None) -> None:
        server = self._maintenance()
        database, reader = sql.Identifier(self.database), sql.Identifier(self.reader)
        timeout_ms = self.limits.statement_timeout_ms
        superuser = server.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if superuser.fetchone() != (True,):
            # A non-superuser's REVOKE on built-in functions only warns; nothing would be locked.
            raise SandboxError(
                f"the sandbox administrator {self.target.user} must be a superuser, to revoke "
                "EXECUTE on the server's file, session and sleep functions"
            )
        try:
            server.execute(
                sql.SQL(
                    "CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE "
                    "NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 4"
                ).format(reader, sql.Literal(self.reader_password))
            )
            for setting, value in (
                ("default_transaction_read_only", "on"),
                ("statement_timeout", f"{timeout_ms}ms"),
                ("lock_timeout", f"{timeout_ms}ms"),
                ("idle_in_transaction_session_timeout", f"{max(2 * timeout_ms, 10_000)}ms"),
                ("temp_file_limit", "256MB"),
                ("work_mem", "16MB"),
            ):
                server.execute(
                    sql.SQL("ALTER ROLE {} SET {} = {}").format(
                        reader, sql.Identifier(setting), sql.Literal(value)
                    )
                )
            server.execute(sql.SQL("CREATE DATABASE {}").format(database))
            server.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database))
            server.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, reader))
        except psycopg.Error as error:
            raise _failure(
                f"the PostgreSQL sandbox server refused to set up a sandbox: {_first_line(error)}",
                error,
            ) from None
        con = self._connect(self.database)
        try:
            with con.transaction():
                _load(con, ddl, "schema")
                if seed:
                    _load(con, seed, "seed")
                _populate_materialized_views(con)
                self._lock_down(con)
        finally:
            con.close()

    def _lock_down(self, con: psycopg.Connection[Any]) -> None:
        """Grants the reader SELECT on the tables and takes away what PUBLIC has by default."""
        reader = sql.Identifier(self.reader)
        schemas = con.execute(
            f"SELECT n.nspname FROM pg_namespace n WHERE {_USER_NAMESPACE} ORDER BY 1"
        ).fetchall()
        try:
            for (name,) in schemas:
                schema = sql.Identifier(name)
                con.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
                con.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, reader))
                con.execute(
                    sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, reader)
                )
            routines = [
                signature
                for signature, name in con.execute(
                    "SELECT p.oid::regprocedure::text, p.proname FROM pg_proc p "
                    "WHERE p.pronamespace = 'pg_catalog'::regnamespace"
                ).fetchall()
                if is_forbidden_function(name, Dialect.POSTGRES)
            ]
            con.execute(f"REVOKE EXECUTE ON ROUTINE {', '.join(routines)} FROM PUBLIC")
        except psycopg.Error as error:
            raise _failure(f"cannot lock the sandbox down: {_first_line(error)}", error) from None

    def checksum(self) -> str:
        try:
            con = self._database()
            relations = [(str(a), str(b), str(c)) for a, b, c in con.execute(_RELATIONS).fetchall()]
            row = con.execute(_checksum_statement(relations, self.reader)).fetchone()
            self._sequences = [(schema, name) for schema, name, kind in relations if kind == "S"]
        except psycopg.Error as error:
            raise _failure(
                f"cannot checksum sandbox database {self.database}: {_first_line(error)}", error
            ) from None
        material = json.dumps([relations, row[0] if row else None])
        return hashlib.sha256(material.encode()).hexdigest()

    def witness(self) -> str | None:
        try:
            row = self._database().execute(_witness_statement(self._sequences)).fetchone()
        except errors.UndefinedTable:
            return None  # a sequence the last checksum saw is gone
        except psycopg.Error as error:
            raise _failure(
                f"cannot query the sandbox server: {_first_line(error)}", error
            ) from None
        return str(row[0]) if row else None

    def exists(self) -> bool:
        try:
            server = self._maintenance()
            found = server.execute(
                "SELECT (SELECT count(*) FROM pg_database WHERE datname = %(db)s) "
                "+ (SELECT count(*) FROM pg_roles WHERE rolname = %(role)s)",
                {"db": self.database, "role": self.reader},
            ).fetchone()
        except psycopg.Error as error:
            raise _failure(
                f"cannot query the sandbox server: {_first_line(error)}", error
            ) from None
        return found is not None and found[0] == 2

    def reader_works(self) -> bool:
        try:
            _connect(self.reader_login(), "distillrun-sandbox-admin").close()
        except psycopg.Error:
            return False
        return True

    def cancel_queries(self) -> None:
        try:
            self._maintenance().execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE usename = %(role)s",
                {"role": self.reader},
            )
        except psycopg.Error as error:
            raise _failure(f"cannot cancel sandbox queries: {_first_line(error)}", error) from None

    def drop(self) -> None:
        if self._data is not None:
            self._data.close()
            self._data = None
        server = self._maintenance()
        try:
            server.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)
                )
            )
            server.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.reader)))
        except psycopg.Error as error:
            raise _failure(
                f"cannot drop sandbox database {self.database}: {_first_line(error)}", error
            ) from None

    def close(self) -> None:
        for con in (self._data, self._server):
            if con is not None:
                con.close()
        self._data = self._server = None


def _load(con: psycopg.Connection[Any], script: str, label: str) -> None:
    """Runs a script in the open transaction: whole in one round trip when it loads, else
    statement by statement, to name the one that fails."""
    try:
        with con.transaction():
            con.execute(script.encode())
        return
    except psycopg.Error:
        pass
    for number, statement in enumerate(split_statements(script, Dialect.POSTGRES), start=1):
        try:
            with con.transaction():
                con.execute(statement.encode())
        except psycopg.Error as error:
            raise _failure(
                f"{label} statement {number} failed: {excerpt(statement)}: {_message(error)}", error
            ) from None


def _populate_materialized_views(con: psycopg.Connection[Any]) -> None:
    """Fills the materialized views a schema-only dump creates `WITH NO DATA`: as the engine
    holds them with the seed rows, and readable (an unfilled one refuses every query). One
    built on another is filled in a later pass, after it."""
    pending = [
        str(name)
        for (name,) in con.execute(
            "SELECT format('%I.%I', schemaname, matviewname) FROM pg_matviews "
            "WHERE NOT ispopulated ORDER BY 1"
        )
    ]
    while pending:
        failed: list[tuple[str, psycopg.Error]] = []
        for name in pending:
            try:
                with con.transaction():
                    con.execute(f"REFRESH MATERIALIZED VIEW {name}".encode())
            except psycopg.Error as error:
                failed.append((name, error))
        if len(failed) == len(pending):
            first, reason = failed[0]
            raise SandboxError(f"materialized view {first} cannot be filled: {_message(reason)}")
        pending = [name for name, _ in failed]


class PostgresEngine(ServerSession[psycopg.Connection[Any]]):
    """Runs each query in the kept session of the sandbox's read-only login: a read-only
    transaction with its own statement timeout, a cursor that admits one SELECT, then
    `ROLLBACK` and `DISCARD ALL`."""

    driver_error = psycopg.Error

    def _open(self) -> psycopg.Connection[Any]:
        return _connect(self._login, "distillrun-sandbox")

    def _begin(self, session: psycopg.Connection[Any]) -> None:
        timeout_ms = int(self._limits.timeout_ms)
        session.execute(f"BEGIN READ ONLY; SET LOCAL statement_timeout = {timeout_ms}".encode())

    def _query(
        self, session: psycopg.Connection[Any], sql_text: str
    ) -> tuple[tuple[str, ...] | None, list[Any]]:
        cursor = session.cursor(name=CURSOR)
        try:
            cursor.execute(sql_text.encode())
            rows = cursor.fetchmany(self._limits.max_rows + 1)
            description = cursor.description
            columns = None if description is None else tuple(c.name for c in description)
            session.execute(b"ROLLBACK")  # which closes the cursor on the server too
            return columns, rows
        finally:
            cursor.close()  # free: a rolled-back or failed transaction has no cursor to close

    def _reset(self, session: psycopg.Connection[Any]) -> None:
        if session.info.transaction_status != TransactionStatus.IDLE:
            session.execute(b"ROLLBACK")
        session.execute(b"DISCARD ALL")

    def _close(self, session: psycopg.Connection[Any]) -> None:
        session.close()

    def _failure(
        self, error: Exception, session: psycopg.Connection[Any], started: float
    ) -> QueryTimeout | QueryFailed | SessionLost:
        assert isinstance(error, psycopg.Error)
        state = error.sqlstate or ""
        if isinstance(error, errors.QueryCanceled):
            return timed_out(started, self._limits)
        if session.broken or state.startswith(_LOST_SQLSTATE_PREFIXES):
            return SessionLost(f"the session ended under the query: {_first_line(error)}")
        if state in _FORBIDDEN_SQLSTATES:
            return QueryFailed(
                f"not allowed in the sandbox ({_FORBIDDEN_SQLSTATES[state]}): {_message(error)}",
                reason=Reason.FORBIDDEN,
            )
        if "multiple commands" in (error.diag.message_primary or ""):
            return QueryFailed(
                f"PostgreSQL sees more than one statement: {_message(error)}",
                reason=Reason.MULTIPLE_STATEMENTS,
            )
        return QueryFailed(_message(error))

    @staticmethod
    def _describe(error: Exception) -> str:
        return _first_line(error)
