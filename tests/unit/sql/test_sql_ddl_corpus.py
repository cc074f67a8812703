"""Real-looking DDL, made by the engines themselves: an HR schema with every feature that broke
the schema model (quoted mixed-case and spaced names, reserved words as columns, a composite key
and a composite foreign key, named and ALTER TABLE constraints, a view, enums, a domain, arrays,
indexes, comments, sequences) is created in each engine and dumped the engine's own way
(`pg_dump --schema-only`, `mariadb-dump --no-data`, SQLite's `.schema`, DuckDB's EXPORT
DATABASE). The dump must load with its keys, views and names intact, queries must be judged as
the engine judges them, the DDL shown to models must load back in the engine, and a sandbox
must run queries on the dump."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.checks import check_query
from distillrun.sql.ddl_render import render_ddl
from distillrun.sql.errors import QueryRejected
from distillrun.sql.sandbox import ServerTarget
from distillrun.sql.schema import ForeignKey, SchemaInfo, parse_schema
from distillrun.sql.verdict import Reason
from tests.fakes.sql_servers import RunningServer
from tests.unit.sql.cases import open_box

INDEX_AND_VIEW = """
        CREATE INDEX lr_kind ON "Leave Requests" (kind);
        CREATE VIEW "Department Headcount" AS
            SELECT d."Name", count(e.id) AS headcount
            FROM "Departments" d LEFT JOIN employees e ON e."DeptId" = d."DeptId"
            GROUP BY d."Name";
"""
"""The same in PostgreSQL, SQLite and DuckDB (MySQL quotes with backticks)."""

HR: dict[Dialect, str] = {
    Dialect.POSTGRES: """
        CREATE TYPE leave_kind AS ENUM ('vacation', 'sick', 'unpaid');
        CREATE DOMAIN money_amount AS numeric(12, 2) CHECK (VALUE >= 0);
        CREATE TABLE "Departments" (
            "DeptId" serial, "Name" text NOT NULL, CONSTRAINT departments_pk PRIMARY KEY ("DeptId")
        );
        COMMENT ON TABLE "Departments" IS 'Org units';
        CREATE TABLE employees (
            id integer PRIMARY KEY, "DeptId" integer NOT NULL, full_name text, "order" integer,
            salary money_amount, tags text[], hired timestamp
        );
        ALTER TABLE employees ADD CONSTRAINT employees_dept_fk
            FOREIGN KEY ("DeptId") REFERENCES "Departments" ("DeptId");
        CREATE TABLE assignments (
            employee_id integer REFERENCES employees, project_code text, "from" date, "to" date,
            PRIMARY KEY (employee_id, project_code)
        );
        CREATE TABLE "Leave Requests" (
            employee_id integer, project_code text, kind leave_kind, days integer,
            CONSTRAINT lr_assignment_fk FOREIGN KEY (employee_id, project_code)
                REFERENCES assignments (employee_id, project_code)
        );
    """
    + INDEX_AND_VIEW,
    Dialect.MYSQL: """
        CREATE TABLE Departments (
            DeptId INT AUTO_INCREMENT, Name VARCHAR(50) NOT NULL,
            CONSTRAINT departments_pk PRIMARY KEY (DeptId)
        ) COMMENT='Org units';
        CREATE TABLE employees (
            id INT PRIMARY KEY, DeptId INT NOT NULL, full_name VARCHAR(80), `order` INT,
            salary DECIMAL(12, 2), hired TIMESTAMP NULL,
            status ENUM('active', 'left') NOT NULL DEFAULT 'active'
        );
        ALTER TABLE employees ADD CONSTRAINT employees_dept_fk
            FOREIGN KEY (DeptId) REFERENCES Departments (DeptId);
        CREATE TABLE assignments (
            employee_id INT, project_code VARCHAR(10), `from` DATE, `to` DATE,
            PRIMARY KEY (employee_id, project_code),
            FOREIGN KEY (employee_id) REFERENCES employees (id)
        );
        CREATE TABLE `Leave Requests` (
            employee_id INT, project_code VARCHAR(10), kind ENUM('vacation', 'sick', 'unpaid'),
            days INT,
            CONSTRAINT lr_assignment_fk FOREIGN KEY (employee_id, project_code)
                REFERENCES assignments (employee_id, project_code)
        );
        CREATE INDEX lr_kind ON `Leave Requests` (kind);
        CREATE VIEW `Department Headcount` AS
            SELECT d.Name, COUNT(e.id) AS headcount
            FROM Departments d LEFT JOIN employees e ON e.DeptId = d.DeptId
            GROUP BY d.Name;
    """,
    Dialect.SQLITE: """
        CREATE TABLE "Departments" (
            "DeptId" INTEGER PRIMARY KEY AUTOINCREMENT, "Name" TEXT NOT NULL
        );
        CREATE TABLE employees (
            id INTEGER PRIMARY KEY, "DeptId" INTEGER NOT NULL, full_name, "order" INT,
            salary unsigned big int, hired timestamp, code character varchar(3),
            CONSTRAINT employees_dept_fk FOREIGN KEY ("DeptId") REFERENCES "Departments" ("DeptId")
        );
        CREATE TABLE assignments (
            employee_id INTEGER, project_code TEXT, "from" DATE, "to" DATE,
            PRIMARY KEY (employee_id, project_code)
            FOREIGN KEY (employee_id) REFERENCES employees
        );
        CREATE TABLE "Leave Requests" (
            employee_id INTEGER, project_code TEXT, kind TEXT, days INT, approver INT,
            CONSTRAINT lr_assignment_fk FOREIGN KEY (employee_id, project_code)
                REFERENCES assignments (employee_id, project_code),
            FOREIGN KEY (approver) REFERENCES employees (no_such_column)
        );
    """
    + INDEX_AND_VIEW,
    Dialect.DUCKDB: """
        CREATE TYPE leave_kind AS ENUM ('vacation', 'sick', 'unpaid');
        CREATE SEQUENCE dept_ids;
        CREATE TABLE "Departments" (
            "DeptId" INTEGER DEFAULT nextval('dept_ids'), "Name" VARCHAR NOT NULL,
            CONSTRAINT departments_pk PRIMARY KEY ("DeptId")
        );
        CREATE TABLE employees (
            id INTEGER PRIMARY KEY, "DeptId" INTEGER NOT NULL, full_name VARCHAR, "order" INTEGER,
            salary DECIMAL(12, 2), tags VARCHAR[], hired TIMESTAMP,
            FOREIGN KEY ("DeptId") REFERENCES "Departments" ("DeptId")
        );
        CREATE TABLE assignments (
            employee_id INTEGER REFERENCES employees (id), project_code VARCHAR, "from" DATE,
            "to" DATE, PRIMARY KEY (employee_id, project_code)
        );
        CREATE TABLE "Leave Requests" (
            employee_id INTEGER, project_code VARCHAR, kind leave_kind, days INTEGER,
            FOREIGN KEY (employee_id, project_code)
                REFERENCES assignments (employee_id, project_code)
        );
    """
    + INDEX_AND_VIEW,
}

SEED = """
INSERT INTO {departments} VALUES (1, 'Research'), (2, 'Sales');
INSERT INTO employees (id, {dept_id}, full_name) VALUES (10, 1, 'Ada'), (11, 2, 'Müller');
INSERT INTO assignments (employee_id, project_code) VALUES (10, 'P1'), (11, 'P1');
INSERT INTO {leave_requests} (employee_id, project_code, days) VALUES (10, 'P1', 3), (11, 'P1', 5);
"""

TABLES = ("Departments", "employees", "assignments", "Leave Requests")
VIEW = "Department Headcount"
KEYS = {
    ForeignKey("employees", ("DeptId",), "Departments", ("DeptId",)),
    ForeignKey("assignments", ("employee_id",), "employees", ("id",)),
    ForeignKey(
        "Leave Requests",
        ("employee_id", "project_code"),
        "assignments",
        ("employee_id", "project_code"),
    ),
}


def q(name: str, dialect: Dialect) -> str:
    return f"`{name}`" if dialect == Dialect.MYSQL else f'"{name}"'


def accepted_queries(d: Dialect) -> list[str]:
    return [
        f"SELECT {q('Name', d)} FROM {q('Departments', d)}",
        f"SELECT {q('order', d)}, full_name FROM employees WHERE {q('DeptId', d)} = 1",
        f"SELECT lr.days FROM {q('Leave Requests', d)} AS lr JOIN assignments AS a"
        f" ON a.employee_id = lr.employee_id AND a.project_code = lr.project_code"
        f" WHERE a.{q('from', d)} IS NULL",
        f"SELECT headcount FROM {q(VIEW, d)} ORDER BY headcount",
        # a column qualified by its quoted table's name, as pg_dump writes views
        f"SELECT {q('Departments', d)}.{q('Name', d)} FROM {q('Departments', d)}",
    ]


def rejected_queries(d: Dialect) -> list[tuple[str, Reason]]:
    cases = [
        ("SELECT nope FROM employees", Reason.UNKNOWN_COLUMN),
        (f"SELECT missing FROM {q(VIEW, d)}", Reason.UNKNOWN_COLUMN),
    ]
    if d == Dialect.POSTGRES:  # unquoted names fold to lower case, and miss the quoted ones
        cases += [
            ("SELECT * FROM Departments", Reason.UNKNOWN_TABLE),
            ('SELECT DeptId FROM "Departments"', Reason.UNKNOWN_COLUMN),
        ]
    return cases


# --- making the dumps ---------------------------------------------------------------------


def dump_postgres(target: ServerTarget, ddl: str) -> str:
    """The DDL created in a fresh database, then `pg_dump --schema-only` of it."""
    bin_dir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    name = f"corpus_{uuid.uuid4().hex[:10]}"
    kwargs: dict[str, Any] = {"host": target.host, "port": target.port, "user": target.user}
    with psycopg.connect(
        **kwargs, password=target.password, dbname="postgres", autocommit=True
    ) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
        try:
            with psycopg.connect(
                **kwargs, password=target.password, dbname=name, autocommit=True
            ) as con:
                con.execute(ddl.encode())
            return subprocess.run(
                [
                    str(bin_dir / "pg_dump"), "--schema-only", "-h", target.host,
                    "-p", str(target.port), "-U", target.user, name,
                ],
                env={**os.environ, "PGPASSWORD": target.password},
                capture_output=True, text=True, check=True, timeout=60,
            ).stdout  # fmt: skip
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)".encode())


def _mysql(target: ServerTarget, database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(
        host=target.host,
        port=target.port,
        user=target.user,
        password=target.password,
        database=database,
        autocommit=True,
        ssl_disabled=True,
    )


def dump_mysql(target: ServerTarget, ddl: str) -> str:
    """The DDL created in a fresh database, then `mariadb-dump --no-data` of it."""
    name = f"corpus_{uuid.uuid4().hex[:10]}"
    admin = _mysql(target)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        try:
            load_mysql(target, name, ddl)
            return subprocess.run(
                [
                    "mariadb-dump", "--no-data", "--skip-ssl", "-h", target.host,
                    "-P", str(target.port), "-u", target.user, name,
                ],
                env={**os.environ, "MYSQL_PWD": target.password},
                capture_output=True, text=True, check=True, timeout=60,
            ).stdout  # fmt: skip
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f"DROP DATABASE {name}")
    finally:
        admin.close()


def load_mysql(target: ServerTarget, database: str, ddl: str) -> None:
    con = _mysql(target, database)
    try:
        with con.cursor() as cursor:
            for statement in ddl.split(";\n"):
                if statement.strip():
                    cursor.execute(statement)
    finally:
        con.close()


def dump_sqlite(ddl: str) -> str:
    """What `sqlite3 db .schema` prints: every stored CREATE statement, SQLite's own
    `sqlite_sequence` table included."""
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(ddl)
        rows = con.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
        return "\n".join(f"{sql};" for (sql,) in rows) + "\n"
    finally:
        con.close()


def dump_duckdb(ddl: str, directory: Path) -> str:
    """DuckDB's own dump: the schema.sql of EXPORT DATABASE."""
    con = duckdb.connect(":memory:")
    try:
        con.execute(ddl)
        con.execute(f"EXPORT DATABASE '{directory}'")
    finally:
        con.close()
    return (directory / "schema.sql").read_text()


@pytest.fixture(scope="module")
def dumps(
    targets: dict[Dialect, ServerTarget], tmp_path_factory: pytest.TempPathFactory
) -> dict[Dialect, str]:
    made = {
        Dialect.POSTGRES: dump_postgres(targets[Dialect.POSTGRES], HR[Dialect.POSTGRES]),
        Dialect.MYSQL: dump_mysql(targets[Dialect.MYSQL], HR[Dialect.MYSQL]),
        Dialect.SQLITE: dump_sqlite(HR[Dialect.SQLITE]),
        Dialect.DUCKDB: dump_duckdb(HR[Dialect.DUCKDB], tmp_path_factory.mktemp("duckdb") / "x"),
    }
    if os.environ.get("DISTILLRUN_KEEP_DUMPS"):  # for looking at them by hand
        for dialect, text in made.items():
            Path(os.environ["DISTILLRUN_KEEP_DUMPS"], f"{dialect}.sql").write_text(text)
    return made


DIALECTS = [Dialect.POSTGRES, Dialect.MYSQL, Dialect.SQLITE, Dialect.DUCKDB]


def _shape(schema: SchemaInfo) -> tuple[object, ...]:
    """What a schema is, whatever order a dump tool wrote its tables in."""
    return (
        {t.name: tuple(c.name for c in t.columns) for t in schema.relations},
        {t.name: t.key for t in schema.tables},
        set(schema.foreign_keys),
        tuple(v.name for v in schema.views),
    )


@pytest.mark.parametrize("dialect", DIALECTS, ids=str)
def test_a_dump_loads_with_keys_views_and_names(
    dumps: dict[Dialect, str], dialect: Dialect
) -> None:
    schema = parse_schema(dumps[dialect], dialect)
    assert sorted(t.name for t in schema.tables) == sorted(TABLES)
    assert [v.name for v in schema.views] == [VIEW]
    view = schema.views[0]
    assert [c.name.lower() for c in view.columns] == ["name", "headcount"]
    assert schema.table("assignments").key == ("employee_id", "project_code")  # type: ignore[union-attr]
    assert schema.table("Departments").key == ("DeptId",)  # type: ignore[union-attr]
    assert set(schema.foreign_keys) == KEYS
    employees = schema.table("employees")
    assert employees is not None and employees.column("order") is not None
    if dialect == Dialect.SQLITE:
        assert employees.column("full_name") is not None  # declared without a type
        assert any("no_such_column" in w for w in schema.warnings)


@pytest.mark.parametrize("dialect", DIALECTS, ids=str)
def test_queries_on_a_dump_are_judged_as_the_engine_judges_them(
    dumps: dict[Dialect, str], dialect: Dialect
) -> None:
    schema = parse_schema(dumps[dialect], dialect)
    for sql in accepted_queries(dialect):
        check_query(sql, schema)
    for sql, reason in rejected_queries(dialect):
        with pytest.raises(QueryRejected) as rejected:
            check_query(sql, schema)
        assert rejected.value.reason == reason, sql


@pytest.mark.parametrize("dialect", DIALECTS, ids=str)
def test_the_rendered_schema_loads_back_in_the_engine_unchanged(
    dumps: dict[Dialect, str], dialect: Dialect, targets: dict[Dialect, ServerTarget]
) -> None:
    schema = parse_schema(dumps[dialect], dialect)
    rendered = render_ddl(schema)
    again = parse_schema(rendered, dialect)
    assert _shape(again) == _shape(schema)
    if dialect == Dialect.POSTGRES:
        assert "ENUM ('vacation', 'sick', 'unpaid')" in rendered and "TEXT[]" in rendered
        assert 'CREATE TABLE "Leave Requests"' in rendered
        reloaded = parse_schema(dump_postgres(targets[dialect], rendered), dialect)
        assert _shape(reloaded) == _shape(schema)  # the engine took it, keys and all
    elif dialect == Dialect.MYSQL:
        assert "ENUM('vacation', 'sick', 'unpaid')" in rendered and " TIMESTAMP" in rendered
        assert "TIMESTAMPTZ" not in rendered
        reloaded = parse_schema(dump_mysql(targets[dialect], rendered), dialect)
        assert _shape(reloaded) == _shape(schema)  # the engine took it, keys and all
    elif dialect == Dialect.SQLITE:
        assert parse_schema(dump_sqlite(rendered), dialect).foreign_keys == schema.foreign_keys
    else:
        con = duckdb.connect(":memory:")
        try:
            con.execute(rendered)
        finally:
            con.close()
    assert rendered.count("PRIMARY KEY (employee_id, project_code)") == 1


@pytest.mark.parametrize("dialect", DIALECTS, ids=str)
def test_a_sandbox_runs_queries_on_the_dump(
    dumps: dict[Dialect, str],
    dialect: Dialect,
    targets: dict[Dialect, ServerTarget],
    servers: dict[Dialect, RunningServer],
) -> None:
    schema = parse_schema(dumps[dialect], dialect)
    seed = SEED.format(
        departments=q("Departments", dialect),
        dept_id=q("DeptId", dialect),
        leave_requests=q("Leave Requests", dialect),
    )
    limits = SandboxSpec(statement_timeout_ms=2000, max_rows=100)
    with open_box(schema, seed, limits, targets) as box:
        result = box.execute(accepted_queries(dialect)[2])
        assert sorted(r[0] for r in result.rows) == [3, 5]
        names = box.execute("SELECT full_name FROM employees WHERE full_name = 'Müller'")
        assert [r[0] for r in names.rows] == ["Müller"]
