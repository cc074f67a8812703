"""The schema model loads what the engine loads and resolves names as the engine does: SQLite's
own leniency (Spider's `.schema` files), dump-tool noise, named and ALTER TABLE keys, composite
keys, views, quoted names and namespaces; text hygiene (BOM, CRLF) keeps error lines right."""

from __future__ import annotations

import pytest

from distillrun.api.spec import Dialect
from distillrun.sql.checks import check_query, normalize_sql
from distillrun.sql.ddl_render import quote, render_ddl
from distillrun.sql.errors import QueryRejected
from distillrun.sql.schema import ColumnKind, ForeignKey, SchemaError, parse_schema
from distillrun.sql.verdict import Reason

SPIDER_STYLE = """CREATE TABLE sqlite_sequence(name,seq);
CREATE TABLE "student" (
"StuID" INTEGER,
"LName" VARCHAR(12),
"Sex" character varchar(1),
"Advisor" unsigned big int,
city_code,
PRIMARY KEY ("StuID")
FOREIGN KEY ("Advisor") REFERENCES "Faculty"("FacID")
FOREIGN KEY (city_code) REFERENCES city(code)
);
CREATE TABLE city (code TEXT PRIMARY KEY, name TEXT);
CREATE TABLE log (id INTEGER PRIMARY KEY AUTOINCREMENT, note);
"""


def test_sqlite_loads_what_sqlite_loads() -> None:
    """Untyped columns, constraints without commas, multi-word types, a key to a table that
    does not exist and SQLite's own sqlite_sequence: SQLite takes all of it."""
    schema = parse_schema(SPIDER_STYLE, Dialect.SQLITE)
    student = schema.table("student")
    assert student is not None
    assert [c.name for c in student.columns] == ["StuID", "LName", "Sex", "Advisor", "city_code"]
    assert student.column("city_code").sql_type == ""  # type: ignore[union-attr]
    assert student.column("Sex").kind == ColumnKind.TEXT  # type: ignore[union-attr]
    assert student.column("Advisor").kind == ColumnKind.INTEGER  # type: ignore[union-attr]
    assert schema.foreign_keys == (ForeignKey("student", ("city_code",), "city", ("code",)),)
    assert schema.warnings == ("student(Advisor) references unknown table Faculty: key ignored",)
    assert "sqlite_sequence" not in schema.ddl and schema.table("sqlite_sequence") is None
    check_query("SELECT city_code, Sex FROM student", schema)


def test_a_double_quoted_string_in_sqlite_is_a_string_where_no_column_has_its_name() -> None:
    schema = parse_schema(SPIDER_STYLE, Dialect.SQLITE)
    checked = check_query('SELECT "F" FROM student', schema)
    assert checked.normalized == "SELECT 'F' AS c1 FROM student AS t1"
    assert normalize_sql('SELECT "Sex" FROM student', Dialect.SQLITE, schema) == (
        "SELECT t1.sex AS c1 FROM student AS t1"
    )


def test_an_engine_error_names_the_statement_and_its_line_despite_bom_and_crlf() -> None:
    ddl = (
        "\ufeff-- shop\r\nCREATE TABLE a (x INT);\r\n\r\n"
        "CREATE TABLE b (x INT, PRIMARY KEY (x);\r\n"
    )
    with pytest.raises(
        SchemaError, match=r"does not parse: statement 2 at line 4 \(CREATE TABLE b"
    ):
        parse_schema(ddl, Dialect.SQLITE)
    with pytest.raises(SchemaError, match="at line 4"):
        parse_schema(ddl, Dialect.POSTGRES)


PG_DUMP = r"""--
-- PostgreSQL database dump
--
\restrict 2bQbhFm5ZcdlWqyZ7S0eLfoUJjoF
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
CREATE SCHEMA sales;
CREATE TABLE public."Departments" ("DeptId" integer NOT NULL, "Name" text);
CREATE TABLE sales.orders (id integer NOT NULL, dept integer, region text);
CREATE TABLE public.lines (order_id integer, line integer, dept integer, region text);
ALTER TABLE ONLY public."Departments" ADD CONSTRAINT "Departments_pkey" PRIMARY KEY ("DeptId");
ALTER TABLE ONLY sales.orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id);
ALTER TABLE ONLY sales.orders ADD CONSTRAINT orders_dept_region UNIQUE (dept, region);
ALTER TABLE ONLY public.lines
    ADD CONSTRAINT lines_order FOREIGN KEY (dept, region) REFERENCES sales.orders(dept, region);
ALTER TABLE public.lines ADD COLUMN note text;
\unrestrict 2bQbhFm5ZcdlWqyZ7S0eLfoUJjoF
"""


def test_a_pg_dump_keeps_keys_names_and_namespaces() -> None:
    schema = parse_schema(PG_DUMP, Dialect.POSTGRES)
    assert "\\restrict" not in schema.ddl and "set_config" not in schema.ddl
    assert [t.name for t in schema.tables] == ["Departments", "orders", "lines"]
    assert schema.table("orders").namespace == "sales"  # type: ignore[union-attr]
    assert schema.foreign_keys == (
        ForeignKey("lines", ("dept", "region"), "orders", ("dept", "region")),
    )
    assert schema.table("lines").column("note") is not None  # type: ignore[union-attr]
    check_query('SELECT "Name" FROM "Departments"', schema)
    check_query('SELECT "Name" FROM public."Departments"', schema)
    check_query("SELECT region FROM sales.orders", schema)
    for sql, reason in [
        ("SELECT region FROM orders", Reason.UNKNOWN_TABLE),  # not on the search path
        ('SELECT "Name" FROM departments', Reason.UNKNOWN_TABLE),
        ('SELECT name FROM "Departments"', Reason.UNKNOWN_COLUMN),
    ]:
        with pytest.raises(QueryRejected) as rejected:
            check_query(sql, schema)
        assert rejected.value.reason == reason, sql
    rendered = render_ddl(schema)
    assert rendered.splitlines()[0] == "CREATE SCHEMA sales;"
    assert "UNIQUE (dept, region)" in rendered
    assert "FOREIGN KEY (dept, region) REFERENCES sales.orders(dept, region)" in rendered


def test_a_table_defined_twice_is_refused_unless_if_not_exists() -> None:
    ddl = "CREATE TABLE a (x INT);\nCREATE TABLE IF NOT EXISTS a (y INT);\n"
    assert [c.name for c in parse_schema(ddl, Dialect.DUCKDB).tables[0].columns] == ["x"]
    with pytest.raises(SchemaError, match="table a is defined twice"):
        parse_schema(ddl.replace(" IF NOT EXISTS", ""), Dialect.MYSQL)


def test_mariadb_client_only_comments_are_not_read_as_sql() -> None:
    ddl = "/*M!999999\\- enable the sandbox mode */\nCREATE TABLE a (x INT);\n"
    assert [t.name for t in parse_schema(ddl, Dialect.MYSQL).tables] == ["a"]


@pytest.mark.parametrize(
    ("dialect", "name", "shown"),
    [
        (Dialect.POSTGRES, "Leave Requests", '"Leave Requests"'),
        (Dialect.POSTGRES, "DeptId", '"DeptId"'),
        (Dialect.POSTGRES, "from", '"from"'),
        (Dialect.POSTGRES, "dept_id", "dept_id"),
        (Dialect.MYSQL, "DeptId", "DeptId"),
        (Dialect.MYSQL, "order", "`order`"),
        (Dialect.SQLITE, "to", '"to"'),
        (Dialect.DUCKDB, "2fa", '"2fa"'),
    ],
)
def test_names_are_quoted_exactly_where_the_dialect_needs_it(
    dialect: Dialect, name: str, shown: str
) -> None:
    assert quote(name, dialect) == shown


def test_a_reference_cycle_is_closed_after_both_tables_exist() -> None:
    ddl = """
        CREATE TABLE a (id INT PRIMARY KEY, b_id INT);
        CREATE TABLE b (id INT PRIMARY KEY, a_id INT REFERENCES a (id));
        ALTER TABLE a ADD CONSTRAINT a_b FOREIGN KEY (b_id) REFERENCES b (id);
    """
    rendered = render_ddl(parse_schema(ddl, Dialect.POSTGRES))
    assert rendered.splitlines() == [
        "CREATE TABLE b (id INT PRIMARY KEY, a_id INT);",
        "CREATE TABLE a (id INT PRIMARY KEY, b_id INT REFERENCES b(id));",
        "ALTER TABLE b ADD FOREIGN KEY (a_id) REFERENCES a(id);",
    ]


@pytest.mark.parametrize(
    ("dialect", "ddl", "expected"),
    [
        (
            Dialect.MYSQL,
            "CREATE TABLE a (id INT PRIMARY KEY, n TEXT);\nCREATE TABLE b LIKE a;",
            {"b": (("id", "n"), ("id",))},  # MySQL copies the indexes, the key with them
        ),
        (
            Dialect.POSTGRES,
            "CREATE TABLE a (id INT PRIMARY KEY, n TEXT);\n"
            "CREATE TABLE b (LIKE a INCLUDING ALL, extra INT);\n"
            "CREATE TABLE c (LIKE a, extra INT);\n"
            "CREATE TABLE d (extra INT) INHERITS (a);\n"
            "CREATE TABLE p (id INT, n TEXT, PRIMARY KEY (id)) PARTITION BY LIST (id);\n"
            "CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1);",
            {
                "b": (("id", "n", "extra"), ("id",)),  # INCLUDING ALL copies the key
                "c": (("id", "n", "extra"), ()),
                "d": (("id", "n", "extra"), ()),  # a key is not inherited
                "p1": (("id", "n"), ("id",)),  # a partition has its table's key
            },
        ),
    ],
)
def test_a_table_takes_the_columns_of_the_table_it_copies(
    dialect: Dialect, ddl: str, expected: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
) -> None:
    schema = parse_schema(ddl, dialect)
    found = {name: schema.table(name) for name in expected}
    assert {
        name: (tuple(c.name for c in t.columns), t.key) for name, t in found.items() if t
    } == expected


def test_a_parent_defined_later_is_refused_naming_the_line() -> None:
    with pytest.raises(SchemaError, match="line 2: table b takes the columns of nowhere"):
        parse_schema(
            "CREATE TABLE a (x INT);\nCREATE TABLE b (x INT) INHERITS (nowhere);", Dialect.POSTGRES
        )


def test_a_column_sqlglot_cannot_parse_keeps_its_type_as_written() -> None:
    """`bit varying` and a column COMPRESSION clause are PostgreSQL's, past sqlglot: the table
    is read one element at a time and the types stay as the engine reads them."""
    schema = parse_schema(
        "CREATE TABLE t (a bit varying(8) NOT NULL, b character varying(3) COMPRESSION pglz,"
        " c timestamp with time zone, d serial PRIMARY KEY);",
        Dialect.POSTGRES,
    )
    table = schema.tables[0]
    assert [(c.name, c.sql_type) for c in table.columns] == [
        ("a", "bit varying(8)"),
        ("b", "character varying(3)"),
        ("c", "TIMESTAMPTZ"),
        ("d", "SERIAL"),
    ]
    assert table.key == ("d",) and not table.columns[0].nullable
    assert "b character varying(3)" in render_ddl(schema)
