"""Sandboxes on a real PostgreSQL or MySQL/MariaDB server.

The server is shared (one per run on Kubernetes, one per test session locally), so each
sandbox gets its own private database and its own read-only login, both made by an
administrator connection that stays in this process and never runs untrusted SQL:

- the administrator creates the database, loads the schema and seed rows, grants the login
  SELECT on the tables and nothing else, revokes what the server grants everyone by default
  (PostgreSQL: EXECUTE on file, large-object, session and sleep functions; TEMP; CREATE), and
  sets the login's own limits (statement timeout, read-only transactions, connection cap);
- every query runs in the supervised worker process (`process.EngineWorker`), in the read-only
  login's kept session, made clean again for every query (`session.py`: a read-only
  transaction, the statement timeout and the row cap applied afresh, the session state cleared
  afterwards, a session that misbehaved replaced); the server's parser must see exactly one
  SELECT;
- after every query the administrator proves the reference data (tables, rows, definitions,
  grants, the login's attributes) unchanged. Checksumming all of it on the server costs more
  than the query, so a cheap *witness* comes first: a reading of the server that moves
  whenever anything the checksum covers may have changed (PostgreSQL: the cluster's
  transaction snapshot and the sequences; MariaDB: the server's counters of row writes and of
  every statement that is not a read). While the witness stands still, nothing changed since
  the data last checksummed equal; once it moves (any write anywhere on the server, even an
  unrelated one), the full checksum decides. A change means the query escaped: the database
  is dropped and rebuilt from the schema and seed rows (the sandbox is replaced) and the query
  is refused as FORBIDDEN. A database that vanished or a session that died is repaired the
  same way and the query re-run once.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from abc import ABC, abstractmethod

import sqlglot
from sqlglot.errors import TokenError
from sqlglot.tokenizer_core import TokenType

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.ddl_text import client_blocks
from distillrun.sql.errors import QueryFailed, QueryTimeout, SandboxError, SessionLost
from distillrun.sql.sandbox.base import ResultSet, Sandbox
from distillrun.sql.sandbox.process import EngineWorker, worker_start
from distillrun.sql.sandbox.session import Login
from distillrun.sql.schema import SchemaInfo
from distillrun.sql.target import ServerTarget
from distillrun.sql.verdict import Reason

NOT_REACHED = (
    "connection refused",
    "could not translate host name",
    "name or service not known",
    "temporary failure in name resolution",
    "no route to host",
    "network is unreachable",
    "timeout expired",
    "timed out",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "server closed the connection",
    "connection reset",
    "terminating connection due to administrator command",
    "the connection is lost",
)
"""What a driver says when it reached no server (as opposed to one that refused the login)."""


def not_reached(message: str) -> bool:
    """Whether a connection error's message says no server was there to answer."""
    text = message.lower()
    return any(marker in text for marker in NOT_REACHED)


NAME_PREFIX = "distillrun_sb_"
"""Private databases and logins are named `distillrun_sb_<random>` (and `..._ro`)."""


def split_statements(script: str, dialect: Dialect) -> list[str]:
    """The statements of a DDL or seed script, cut at the `;` the dialect's lexer sees.

    Working on tokens means a `;` in a string, a comment or a dollar-quoted function body
    never cuts. In MySQL, a stretch under the client's `DELIMITER ;;` (mysqldump's triggers)
    is cut at that delimiter instead, and the commands themselves are left out. Raises
    SandboxError when the script does not tokenize.
    """
    if dialect != Dialect.MYSQL:
        return _split_tokens(script, dialect)
    statements: list[str] = []
    for start, end, delimiter in client_blocks(script):
        block = script[start:end]
        if delimiter == ";":
            statements += _split_tokens(block, dialect)
        else:
            statements += [s.strip() for s in block.split(delimiter) if s.strip()]
    return statements


def _split_tokens(script: str, dialect: Dialect) -> list[str]:
    try:
        tokens = sqlglot.tokenize(script, read=str(dialect))
    except TokenError as error:
        raise SandboxError(f"the script does not tokenize as {dialect}: {error}") from None
    statements: list[str] = []
    start = 0
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            text = script[start : token.start].strip()
            if text:
                statements.append(text)
            start = token.end + 1
    rest = script[start:].strip()
    if rest and any(token.start >= start for token in tokens):
        statements.append(rest)
    return statements


class ServerAdmin(ABC):
    """The administrator's side of one server sandbox: build, checksum, cancel, drop."""

    def __init__(self, target: ServerTarget, name: str, limits: SandboxSpec) -> None:
        self.target = target
        self.database = name
        self.reader = f"{name}_ro"
        self.reader_password = secrets.token_hex(24)
        self.limits = limits

    @abstractmethod
    def build(self, ddl: str, seed: str | None) -> None:
        """Creates the database and the read-only login, loads the DDL and seed rows, locks
        everything down. Raises SandboxError naming a statement that does not load, or
        saying why the server refused the administrator."""

    @abstractmethod
    def checksum(self) -> str:
        """sha256 over the private database's definitions, grants and rows and the login's
        attributes, computed on the server. Raises SandboxError when the server is gone."""

    @abstractmethod
    def exists(self) -> bool:
        """Whether the private database and the login are both still there."""

    @abstractmethod
    def reader_works(self) -> bool:
        """Whether the read-only login can open a session (its password, its grants)."""

    @abstractmethod
    def cancel_queries(self) -> None:
        """Stops whatever the read-only login is running on the server right now."""

    @abstractmethod
    def drop(self) -> None:
        """Ends the login's sessions and drops the database and the login (if they exist)."""

    @abstractmethod
    def close(self) -> None:
        """Closes the administrator's connections."""

    @abstractmethod
    def witness(self) -> str | None:
        """A cheap reading of the server that changes whenever anything the checksum covers
        may have changed (see `ServerSandbox`); equal readings mean nothing changed between
        them, None that this reading cannot tell. Raises SandboxError when the server is
        gone."""

    def admin_login(self, database: str | None) -> Login:
        """The administrator's own login, to `database` (None: no default database)."""
        target = self.target
        return Login(target.host, target.port, target.user, target.password, database)

    def reader_login(self) -> Login:
        """How the worker connects: as the read-only login, to the private database."""
        return Login(
            self.target.host, self.target.port, self.reader, self.reader_password, self.database
        )


def _admin(target: ServerTarget, name: str, limits: SandboxSpec) -> ServerAdmin:
    """Imported on demand: a PostgreSQL sandbox must not need the MySQL driver."""
    if target.dialect == Dialect.POSTGRES:
        from distillrun.sql.sandbox.postgres import PostgresAdmin

        return PostgresAdmin(target, name, limits)
    from distillrun.sql.sandbox.mysql import MysqlAdmin

    return MysqlAdmin(target, name, limits)


class ServerSandbox(Sandbox):
    """A private database on a sandbox server, queried by a worker as a read-only login."""

    def __init__(
        self, schema: SchemaInfo, seed_sql: str | None, limits: SandboxSpec, target: ServerTarget
    ) -> None:
        if Dialect(schema.dialect) != target.dialect:
            raise SandboxError(
                f"a {schema.dialect} schema cannot run on a {target.dialect} sandbox server"
            )
        self._ddl, self._seed = schema.ddl, seed_sql
        self._directory = tempfile.mkdtemp(prefix="distillrun-sandbox-")
        self._admin = _admin(target, NAME_PREFIX + secrets.token_hex(6), limits)
        self._worker: EngineWorker | None = None
        self._closed = False
        self.replacements = 0
        """How often the private database was rebuilt because it changed or vanished."""
        self._witness: str | None = None
        """The server's `witness` when the data last checksummed equal to the baseline."""
        try:
            self._admin.build(self._ddl, self._seed)
            self._witness = self._admin.witness()
            self._baseline = self._admin.checksum()
            location = self._admin.reader_login().location()
            start = worker_start(target.dialect, location, limits, ddl=None, seed=None)
            self._worker = EngineWorker(
                start, limits, self._directory, on_kill=self._admin.cancel_queries
            )
        except BaseException:
            self.close()
            raise

    @property
    def database(self) -> str:
        """Name of the private database on the server."""
        return self._admin.database

    @property
    def pid(self) -> int:
        """Process id of the current worker (started on demand), for supervision and tests."""
        return self._engine().pid

    def execute(self, sql: str) -> ResultSet:
        """Runs the query, then proves the reference data unchanged (see the module docstring).

        Raises QueryTimeout or QueryFailed for the query's own failures, QueryFailed with
        FORBIDDEN when the data changed, SandboxError when the server cannot be used.
        """
        outcome: ResultSet | QueryTimeout | QueryFailed
        try:
            outcome = self._run(sql)
        except (QueryTimeout, QueryFailed) as failure:
            outcome = failure
        if not self._unchanged():
            self._replace()
            raise QueryFailed(
                "the reference data changed while this query ran; the sandbox database was "
                "rebuilt from the schema and seed rows",
                reason=Reason.FORBIDDEN,
            )
        if isinstance(outcome, ResultSet):
            return outcome
        raise outcome

    def data_checksum(self) -> str:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        return self._admin.checksum()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._worker is not None:
                self._worker.close()
            self._admin.drop()
        finally:
            self._admin.close()
            shutil.rmtree(self._directory, ignore_errors=True)

    def _unchanged(self) -> bool:
        """Whether the reference data is still the baseline, by the witness when it has not
        moved since the data last checksummed equal, else by the checksum itself.

        The witness is read before the checksum, so a change that lands between the two
        either shows in that checksum or moves the next witness.
        """
        witness = self._admin.witness()
        if witness is not None and witness == self._witness:
            return True
        if self._admin.checksum() != self._baseline:
            return False
        self._witness = witness
        return True

    def _run(self, sql: str) -> ResultSet:
        """One query; a lost session is repaired and the query re-run once."""
        engine = self._engine()
        try:
            return engine.execute(sql)
        except SessionLost as lost:
            self._repair(lost)
        try:
            return engine.execute(sql)
        except SessionLost as again:
            self._repair(again)
            raise QueryFailed(
                f"the query lost its database session twice ({again.message}); the sandbox "
                "itself is healthy"
            ) from None

    def _repair(self, lost: SessionLost) -> None:
        """Makes the sandbox whole after a lost session; SandboxError when the server is gone.

        `checksum` reaches the server as the administrator (raising when it cannot); a
        database or login that vanished, data that changed or a login that no longer opens a
        session mean a rebuild.
        """
        try:
            healthy = (
                self._admin.exists()
                and self._admin.checksum() == self._baseline
                and self._admin.reader_works()
            )
        except SandboxError as error:
            # Still unreachable when the server itself is gone (a new attempt waits for it).
            raise type(error)(
                f"the sandbox server is unusable ({error.message}) after: {lost.message}"
            ) from None
        if not healthy:
            self._replace()

    def _replace(self) -> None:
        """Drops the private database and login and builds them again from the same inputs."""
        self._admin.cancel_queries()
        self._admin.drop()
        self._admin.build(self._ddl, self._seed)
        witness = self._admin.witness()
        if self._admin.checksum() != self._baseline:
            raise SandboxError("the rebuilt sandbox database does not match the original")
        self._witness = witness
        self.replacements += 1

    def _engine(self) -> EngineWorker:
        if self._closed or self._worker is None:
            raise SandboxError("the sandbox is closed")
        return self._worker
