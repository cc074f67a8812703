"""Server sandboxes (PostgreSQL, MariaDB) on real servers: the private database and read-only
login, the checksum after every query, replacement when the database changed or died, and the
way a sandbox finds its server."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pymysql
import pytest

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.errors import QueryFailed, QueryTimeout, SandboxError, SandboxUnreachable
from distillrun.sql.sandbox import ServerSandbox, ServerTarget, open_sandbox
from distillrun.sql.schema import SchemaInfo
from distillrun.sql.target import ENV_HOST, ENV_PASSWORD, ENV_PORT, ENV_USER
from distillrun.sql.verdict import Reason
from tests.fakes import sql_servers
from tests.unit.sql.cases import SERVERS, open_box

COUNT = "SELECT COUNT(*) FROM customers"
LIMITS = SandboxSpec(statement_timeout_ms=1000, max_rows=100)


class Admin:
    """The test's own administrator connection, for tampering behind a sandbox's back."""

    def __init__(self, target: ServerTarget) -> None:
        self.dialect = target.dialect
        if target.dialect == Dialect.POSTGRES:
            self._pg = psycopg.connect(
                host=target.host,
                port=target.port,
                user=target.user,
                password=target.password,
                dbname="postgres",
                autocommit=True,
            )
        else:
            self._my = pymysql.connect(
                host=target.host,
                port=target.port,
                user=target.user,
                password=target.password,
                autocommit=True,
                ssl_disabled=True,
            )

    def run(self, statement: str, database: str | None = None) -> list[tuple[Any, ...]]:
        if self.dialect == Dialect.POSTGRES:
            if database is None:
                cursor = self._pg.execute(statement.encode())
                return list(cursor.fetchall()) if cursor.description else []
            info = self._pg.info
            with psycopg.connect(
                host=info.host,
                port=info.port,
                user=info.user,
                password=info.password,
                dbname=database,
                autocommit=True,
            ) as con:
                cursor = con.execute(statement.encode())
                return list(cursor.fetchall()) if cursor.description else []
        with self._my.cursor() as cursor:
            if database is not None:
                cursor.execute(f"USE `{database}`")
            cursor.execute(statement)
            return list(cursor.fetchall())

    def databases(self) -> set[str]:
        if self.dialect == Dialect.POSTGRES:
            rows = self.run("SELECT datname FROM pg_database")
        else:
            rows = self.run("SELECT schema_name FROM information_schema.schemata")
        return {str(name) for (name,) in rows}

    def logins(self) -> set[str]:
        if self.dialect == Dialect.POSTGRES:
            rows = self.run("SELECT rolname FROM pg_roles")
        else:
            rows = self.run("SELECT user FROM mysql.user")
        return {str(name) for (name,) in rows}

    def close(self) -> None:
        if self.dialect == Dialect.POSTGRES:
            self._pg.close()
        else:
            self._my.close()


@pytest.fixture(params=SERVERS, ids=str)
def server(request: pytest.FixtureRequest) -> Dialect:
    return Dialect(request.param)


@pytest.fixture
def admin(server: Dialect, targets: dict[Dialect, ServerTarget]) -> Iterator[Admin]:
    connection = Admin(targets[server])
    yield connection
    connection.close()


@pytest.fixture
def box(
    server: Dialect,
    schemas: dict[Dialect, SchemaInfo],
    shop_seed: str,
    targets: dict[Dialect, ServerTarget],
) -> Iterator[ServerSandbox]:
    with open_box(schemas[server], shop_seed, LIMITS, targets) as opened:
        assert isinstance(opened, ServerSandbox)
        yield opened


def test_private_database_and_login_live_exactly_as_long_as_the_sandbox(
    server: Dialect,
    schemas: dict[Dialect, SchemaInfo],
    shop_seed: str,
    targets: dict[Dialect, ServerTarget],
    admin: Admin,
) -> None:
    box = open_box(schemas[server], shop_seed, LIMITS, targets)
    assert isinstance(box, ServerSandbox)
    reader = f"{box.database}_ro"
    assert box.database in admin.databases() and reader in admin.logins()
    assert box.execute(COUNT).rows == ((40,),)
    box.close()
    box.close()
    assert box.database not in admin.databases() and reader not in admin.logins()
    with pytest.raises(SandboxError, match="closed"):
        box.execute(COUNT)


def test_reader_is_read_only_even_when_asked_directly(
    server: Dialect, box: ServerSandbox, admin: Admin
) -> None:
    """The login's own rights, from the administrator's view: SELECT on the tables only."""
    reader = f"{box.database}_ro"
    if server == Dialect.POSTGRES:
        rights = admin.run(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
            f"rolconnlimit FROM pg_roles WHERE rolname = '{reader}'"
        )
        assert rights == [(False, False, False, False, False, 4)]
        grants = admin.run(
            "SELECT DISTINCT privilege_type FROM information_schema.role_table_grants "
            f"WHERE grantee = '{reader}'",
            box.database,
        )
        assert grants == [("SELECT",)]
        temp = admin.run(
            f"SELECT has_database_privilege('{reader}', current_database(), 'TEMP')",
            box.database,
        )
        assert temp == [(False,)]
    else:
        grants = {row[0] for row in admin.run(f"SHOW GRANTS FOR '{reader}'@'%'")}
        assert any("GRANT USAGE ON *.*" in g for g in grants)
        assert f"GRANT SELECT ON `{box.database}`.* TO `{reader}`@`%`" in grants
        assert len(grants) == 2


def test_changed_data_is_caught_and_the_sandbox_rebuilt(box: ServerSandbox, admin: Admin) -> None:
    baseline = box.data_checksum()
    admin.run("UPDATE customers SET name = 'Mallory' WHERE id = 1", box.database)
    with pytest.raises(QueryFailed, match="reference data changed") as caught:
        box.execute("SELECT name FROM customers WHERE id = 1")
    assert caught.value.reason == Reason.FORBIDDEN
    assert box.replacements == 1
    assert box.data_checksum() == baseline
    assert box.execute("SELECT name FROM customers WHERE id = 1").rows == (("Flo Rossi",),)


def test_an_added_object_counts_as_a_change(box: ServerSandbox, admin: Admin) -> None:
    admin.run("CREATE TABLE smuggled (x INTEGER)", box.database)
    with pytest.raises(QueryFailed, match="reference data changed"):
        box.execute(COUNT)
    assert box.replacements == 1
    assert box.execute(COUNT).rows == ((40,),)


def test_vanished_database_is_rebuilt_and_the_query_rerun(
    server: Dialect, box: ServerSandbox, admin: Admin
) -> None:
    force = " WITH (FORCE)" if server == Dialect.POSTGRES else ""
    quoted = f'"{box.database}"' if server == Dialect.POSTGRES else f"`{box.database}`"
    admin.run(f"DROP DATABASE {quoted}{force}")
    assert box.execute(COUNT).rows == ((40,),)
    assert box.replacements == 1


def test_locked_out_login_is_rebuilt_and_the_query_rerun(
    server: Dialect, box: ServerSandbox, admin: Admin
) -> None:
    reader = f"{box.database}_ro"
    if server == Dialect.POSTGRES:
        admin.run(f'ALTER ROLE "{reader}" NOLOGIN')
    else:
        admin.run(f"REVOKE SELECT ON `{box.database}`.* FROM '{reader}'@'%'")
    assert box.execute(COUNT).rows == ((40,),)
    assert box.replacements == 1


def _kill_reader_once(admin: Admin, reader: str, deadline_s: float) -> Callable[[], bool]:
    """Starts a thread that ends the reader's first busy session; returns 'did it?'."""
    done = threading.Event()

    def kill() -> None:
        until = time.monotonic() + deadline_s
        while time.monotonic() < until and not done.is_set():
            if admin.dialect == Dialect.POSTGRES:
                killed = admin.run(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE usename = '{reader}' AND state = 'active'"
                )
            else:
                ids = admin.run(
                    "SELECT id FROM information_schema.processlist "
                    f"WHERE user = '{reader}' AND command = 'Query'"
                )
                for (thread_id,) in ids:
                    admin.run(f"KILL CONNECTION {int(thread_id)}")
                killed = ids
            if killed:
                done.set()
            time.sleep(0.005)

    thread = threading.Thread(target=kill)
    thread.start()

    def finished() -> bool:
        thread.join()
        return done.is_set()

    return finished


def test_killed_session_is_rerun_on_a_fresh_one(
    server: Dialect,
    schemas: dict[Dialect, SchemaInfo],
    shop_seed: str,
    targets: dict[Dialect, ServerTarget],
    admin: Admin,
) -> None:
    slow = (
        "SELECT COUNT(*) FROM (SELECT generate_series(1, 3000000) AS n) AS s"
        if server == Dialect.POSTGRES
        else "SELECT SLEEP(0.4) + COUNT(*) FROM customers"
    )
    roomy = SandboxSpec(statement_timeout_ms=10_000)  # the re-run must finish, even on a busy box
    with open_box(schemas[server], shop_seed, roomy, targets) as box:
        assert isinstance(box, ServerSandbox)
        killed = _kill_reader_once(admin, f"{box.database}_ro", deadline_s=10)
        result = box.execute(slow)
        assert killed(), "the reader's session was never seen busy"
        assert len(result.rows) == 1 and box.replacements == 0


def test_hard_deadline_also_stops_the_query_on_the_server(
    schemas: dict[Dialect, SchemaInfo], shop_seed: str, targets: dict[Dialect, ServerTarget]
) -> None:
    """MariaDB lets one statement lift its own time limit; the worker is killed at the hard
    deadline and the administrator kills what the login still runs."""
    admin = Admin(targets[Dialect.MYSQL])
    try:
        with open_box(
            schemas[Dialect.MYSQL], shop_seed, SandboxSpec(statement_timeout_ms=200), targets
        ) as box:
            assert isinstance(box, ServerSandbox)
            started = time.monotonic()
            with pytest.raises(QueryTimeout, match="was replaced"):
                box.execute("SET STATEMENT max_statement_time = 0 FOR SELECT SLEEP(30)")
            assert time.monotonic() - started < 5
            reader = f"{box.database}_ro"
            for _ in range(100):
                busy = admin.run(
                    "SELECT id FROM information_schema.processlist "
                    f"WHERE user = '{reader}' AND command = 'Query'"
                )
                if not busy:
                    break
                time.sleep(0.02)
            assert not busy
            assert box.execute(COUNT).rows == ((40,),)
    finally:
        admin.close()


def test_seed_failure_leaves_nothing_behind(
    server: Dialect,
    schemas: dict[Dialect, SchemaInfo],
    targets: dict[Dialect, ServerTarget],
    admin: Admin,
) -> None:
    before = {d for d in admin.databases() if d.startswith("distillrun_sb_")}
    with pytest.raises(SandboxError, match="seed statement 1 failed"):
        open_box(schemas[server], "INSERT INTO nowhere VALUES (1);", LIMITS, targets)
    after = {d for d in admin.databases() if d.startswith("distillrun_sb_")}
    assert after == before
    assert not {u for u in admin.logins() if u.startswith("distillrun_sb_")} - {
        f"{d}_ro" for d in after
    }


def test_postgres_admin_must_be_a_superuser(
    schemas: dict[Dialect, SchemaInfo], shop_seed: str, targets: dict[Dialect, ServerTarget]
) -> None:
    target = targets[Dialect.POSTGRES]
    admin = Admin(target)
    try:
        admin.run("CREATE ROLE weak_admin LOGIN PASSWORD 'weak' CREATEDB CREATEROLE")
        weak = ServerTarget(Dialect.POSTGRES, target.host, target.port, "weak_admin", "weak")
        before = admin.databases()
        with pytest.raises(SandboxError, match="must be a superuser"):
            open_sandbox(schemas[Dialect.POSTGRES], shop_seed, LIMITS, weak)
        assert admin.databases() == before
    finally:
        admin.run("DROP ROLE IF EXISTS weak_admin")
        admin.close()


@pytest.mark.parametrize("dialect", SERVERS, ids=str)
def test_server_dialect_without_a_server_names_the_variables(
    dialect: Dialect, schemas: dict[Dialect, SchemaInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_HOST, raising=False)
    with pytest.raises(SandboxError) as caught:
        open_sandbox(schemas[dialect], None, LIMITS)
    assert ENV_HOST in caught.value.message and "operator sets them" in caught.value.message


def test_server_from_the_environment(
    schemas: dict[Dialect, SchemaInfo],
    shop_seed: str,
    targets: dict[Dialect, ServerTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = targets[Dialect.POSTGRES]
    monkeypatch.setenv(ENV_HOST, target.host)
    monkeypatch.setenv(ENV_PORT, str(target.port))
    monkeypatch.setenv(ENV_USER, target.user)
    monkeypatch.setenv(ENV_PASSWORD, target.password)
    with open_sandbox(schemas[Dialect.POSTGRES], shop_seed, LIMITS) as box:
        assert box.execute(COUNT).rows == ((40,),)
    monkeypatch.setenv(ENV_PORT, "fifty")
    with pytest.raises(SandboxError, match="not a port number"):
        open_sandbox(schemas[Dialect.POSTGRES], shop_seed, LIMITS)


def test_target_from_env_defaults_and_hides_the_password() -> None:
    env = {ENV_HOST: "sandbox.team-a.svc", ENV_PASSWORD: "s3cret"}
    target = ServerTarget.from_env(Dialect.MYSQL, env)
    assert target == ServerTarget(Dialect.MYSQL, "sandbox.team-a.svc", 3306, "root", "s3cret")
    assert "s3cret" not in repr(target)
    assert ServerTarget.from_env(Dialect.POSTGRES, {}) is None
    pg = ServerTarget.from_env(Dialect.POSTGRES, {ENV_HOST: "h", ENV_PORT: "6432"})
    assert pg is not None and (pg.port, pg.user) == (6432, "postgres")


@pytest.mark.parametrize("dialect", SERVERS, ids=str)
def test_unreachable_server_is_a_sandbox_error(
    dialect: Dialect, schemas: dict[Dialect, SchemaInfo]
) -> None:
    """Unreachable in particular: the stages wait for such a server (a pod not Ready yet, or
    being replaced) instead of calling the inputs invalid."""
    nowhere = ServerTarget(dialect, "127.0.0.1", 1, "admin", "x")
    with pytest.raises(SandboxUnreachable, match="cannot reach"):
        open_sandbox(schemas[dialect], None, LIMITS, nowhere)


@pytest.mark.parametrize("dialect", SERVERS, ids=str)
def test_a_server_refusing_the_administrator_is_not_unreachable(
    dialect: Dialect, schemas: dict[Dialect, SchemaInfo], targets: dict[Dialect, ServerTarget]
) -> None:
    """A wrong password is there to stay: no stage should wait for it."""
    wrong = dataclasses.replace(targets[dialect], password="not-the-password")
    with pytest.raises(SandboxError, match="cannot reach") as caught:
        open_sandbox(schemas[dialect], None, LIMITS, wrong)
    assert not isinstance(caught.value, SandboxUnreachable)


def test_schema_and_server_must_share_a_dialect(
    schemas: dict[Dialect, SchemaInfo], targets: dict[Dialect, ServerTarget]
) -> None:
    with pytest.raises(SandboxError, match="cannot run on a postgres sandbox server"):
        open_sandbox(schemas[Dialect.MYSQL], None, LIMITS, targets[Dialect.POSTGRES])


def test_missing_server_binaries_name_the_install_script(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session fixture fails (never skips) with this message when a server is missing."""
    monkeypatch.setattr(sql_servers.shutil, "which", lambda *_args, **_kwargs: None)
    with pytest.raises(
        sql_servers.ServersMissing, match=r"MariaDB is not installed.*scripts/test-deps"
    ):
        sql_servers.check_installed()


SESSION_ID = {
    Dialect.POSTGRES: "SELECT inet_client_port()",
    Dialect.MYSQL: "SELECT CONNECTION_ID()",
}
"""Which server session a query ran in."""

SLOW = {
    Dialect.POSTGRES: "SELECT COUNT(*) FROM (SELECT generate_series(1, 100000000) AS n) AS s",
    Dialect.MYSQL: "SELECT SLEEP(5) + COUNT(*) FROM customers",
}


def _session(box: ServerSandbox, server: Dialect) -> Any:
    return box.execute(SESSION_ID[server]).rows[0][0]


def test_queries_share_one_session_until_one_misbehaves(
    server: Dialect, box: ServerSandbox
) -> None:
    """A kept session serves query after query, ordinary errors included; a timeout or a
    refused action ends it, and the next query gets a fresh one."""
    first = _session(box, server)
    for _ in range(3):
        assert box.execute(COUNT).rows == ((40,),)
    with pytest.raises(QueryFailed) as typo:
        box.execute("SELECT nosuchcolumn FROM customers")
    assert typo.value.reason == Reason.EXECUTION_ERROR
    assert _session(box, server) == first
    with pytest.raises(QueryTimeout):
        box.execute(SLOW[server])
    second = _session(box, server)
    assert second != first
    with pytest.raises(QueryFailed) as refused:
        box.execute("SELECT * FROM customers FOR UPDATE")
    assert refused.value.reason == Reason.FORBIDDEN
    assert _session(box, server) != second
    assert box.replacements == 0


def test_mysql_session_state_is_cleared_between_queries(
    schemas: dict[Dialect, SchemaInfo],
    shop_seed: str,
    targets: dict[Dialect, ServerTarget],
) -> None:
    """What a query leaves in its MariaDB session (variables, locks) is gone before the next
    one, in the same session; a statement that is no query (`SET`, `USE`) loses its session,
    so the limits and the database are the sandbox's again."""
    admin = Admin(targets[Dialect.MYSQL])
    limits = SandboxSpec(statement_timeout_ms=300, max_rows=5)
    try:
        with open_box(schemas[Dialect.MYSQL], shop_seed, limits, targets) as box:
            assert isinstance(box, ServerSandbox)
            session = _session(box, Dialect.MYSQL)
            assert box.execute("SELECT @carried := 42").rows == ((42,),)
            assert box.execute("SELECT GET_LOCK('held', 0)").rows == ((1,),)
            assert box.execute("SELECT @carried").rows == ((None,),)
            assert admin.run("SELECT IS_FREE_LOCK('held')") == [(1,)]
            assert _session(box, Dialect.MYSQL) == session
            box.execute("SET SESSION max_statement_time = 0, sql_select_limit = DEFAULT")
            box.execute("USE information_schema")
            assert box.execute("SELECT DATABASE()").rows == ((box.database,),)
            result = box.execute("SELECT id FROM customers")
            assert len(result.rows) == 5 and result.truncated
            with pytest.raises(QueryTimeout):
                box.execute("SELECT SLEEP(2) + COUNT(*) FROM customers")
    finally:
        admin.close()


TAMPERING = {
    Dialect.POSTGRES: [
        "CREATE VIEW smuggled AS SELECT 1 AS x",
        "GRANT INSERT ON customers TO {reader}",
        "ALTER ROLE {reader} SET statement_timeout = 0",
        "SELECT nextval('tick')",
    ],
    Dialect.MYSQL: [
        "CREATE VIEW smuggled AS SELECT 1 AS x",
        "CREATE TRIGGER smuggled BEFORE INSERT ON customers FOR EACH ROW SET NEW.name = 'x'",
        "GRANT INSERT ON {database}.customers TO {reader}",
        "SET PASSWORD FOR {reader} = PASSWORD('known')",
        "ALTER USER {reader} WITH MAX_STATEMENT_TIME 0",
        "INSERT INTO customers VALUES (999, 'x', 'x', 'x', '2025-01-01')",
    ],
}
"""Changes that bypass the cheap witness if it misses a kind of write: definition-only DDL,
grants, the login's settings, password and limits, a sequence (PostgreSQL's one write without a
transaction id), a plain row."""


@pytest.mark.parametrize(
    ("dialect", "tamper"),
    [(d, t) for d, changes in TAMPERING.items() for t in changes],
    ids=lambda value: str(value)[:40],
)
def test_every_kind_of_change_is_caught_after_the_query(
    dialect: Dialect,
    tamper: str,
    schemas: dict[Dialect, SchemaInfo],
    shop_seed: str,
    targets: dict[Dialect, ServerTarget],
) -> None:
    admin = Admin(targets[dialect])
    seed = shop_seed + ("\nCREATE SEQUENCE tick;" if dialect == Dialect.POSTGRES else "")
    try:
        with open_box(schemas[dialect], seed, LIMITS, targets) as box:
            assert isinstance(box, ServerSandbox)
            reader = (
                f'"{box.database}_ro"'
                if dialect == Dialect.POSTGRES
                else f"'{box.database}_ro'@'%'"
            )
            for _ in range(2):  # the witness has settled: no full checksum decides
                assert box.execute(COUNT).rows == ((40,),)
            admin.run(tamper.format(reader=reader, database=box.database), box.database)
            with pytest.raises(QueryFailed, match="reference data changed"):
                box.execute(COUNT)
            assert box.replacements == 1
            assert box.execute(COUNT).rows == ((40,),)
    finally:
        admin.close()


def test_a_write_elsewhere_on_the_server_is_no_false_alarm(
    server: Dialect, box: ServerSandbox, admin: Admin
) -> None:
    """Another database's writes move the witness; the full checksum then clears the query."""
    admin.run("CREATE TABLE IF NOT EXISTS elsewhere (x INTEGER)", _scratch(server, admin))
    admin.run("INSERT INTO elsewhere VALUES (1)", _scratch(server, admin))
    assert box.execute(COUNT).rows == ((40,),)
    assert box.replacements == 0


def _scratch(server: Dialect, admin: Admin) -> str:
    """A database of the test's own, next to the sandboxes."""
    if "scratch_elsewhere" not in admin.databases():
        admin.run("CREATE DATABASE scratch_elsewhere")
    return "scratch_elsewhere"
