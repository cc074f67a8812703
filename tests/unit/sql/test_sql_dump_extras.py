"""Server DDL beyond the HR corpus (`test_sql_ddl_corpus`), made and dumped by the real servers:
what PostgreSQL and MariaDB accept but sqlglot does not parse whole (`bit varying`, `"char"`,
spatial and `inet6` columns, `COMPRESSED`, partition lists, system versioning, `ON DELETE SET
NULL (col)`), what shapes the schema without a column list of its own (INHERITS, PARTITION OF),
composite and range types, materialized views dumped WITH NO DATA, MariaDB application-time keys
(`WITHOUT OVERLAPS`), triggers under mysqldump's
`DELIMITER ;;`, and owners, grants and definers naming accounts the sandbox server lacks. Both
the hand-written DDL and its dump must load with keys, views and names, the DDL shown to models
must load back, a sandbox must run queries on the dump, and what cannot be read is refused
naming its line."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.checks import check_query
from distillrun.sql.ddl_render import render_ddl
from distillrun.sql.errors import QueryRejected
from distillrun.sql.sandbox import ServerTarget
from distillrun.sql.schema import ForeignKey, SchemaError, SchemaInfo, parse_schema
from distillrun.sql.verdict import Reason
from tests.unit.sql.cases import open_box
from tests.unit.sql.test_sql_ddl_corpus import dump_mysql, dump_postgres
from tests.unit.sql.test_sql_servers import Admin

ACCOUNT = f"corpus_owner_{uuid.uuid4().hex[:8]}"
"""A role/user that exists while the dump is made and is dropped before it is loaded again,
as the production accounts a real dump names do not exist on the sandbox server."""

POSTGRES = f"""
CREATE SCHEMA sales;
CREATE TYPE sales.address AS (street text, city text);
CREATE TYPE public.score_range AS RANGE (subtype = float8);
CREATE TABLE sales."Customers" (
    "Id" integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL,
    address sales.address, flags bit varying(8), grade "char", band public.score_range
);
COMMENT ON COLUMN sales."Customers".name IS 'Full name; unique';
CREATE TABLE public.base (id integer PRIMARY KEY, note text);
CREATE TABLE public.derived (extra integer) INHERITS (public.base);
CREATE TABLE public.events (id integer NOT NULL, at date NOT NULL, customer integer)
    PARTITION BY RANGE (at);
CREATE TABLE public.events_2026 PARTITION OF public.events
    FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
ALTER TABLE public.events ADD CONSTRAINT events_customer_fk FOREIGN KEY (customer)
    REFERENCES sales."Customers" ("Id") ON DELETE SET NULL (customer);
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN NEW.note := coalesce(NEW.note, 'none'); RETURN NEW; END; $$;
CREATE TRIGGER touch BEFORE INSERT ON public.base FOR EACH ROW EXECUTE FUNCTION public.touch();
CREATE MATERIALIZED VIEW sales.customer_names AS SELECT "Id", name FROM sales."Customers";
ALTER TABLE sales."Customers" OWNER TO {ACCOUNT};
GRANT SELECT ON public.base TO {ACCOUNT};
"""

MYSQL = f"""
CREATE TABLE `Customers` (
    `Id` int unsigned NOT NULL AUTO_INCREMENT, name varchar(50) NOT NULL COMMENT 'it''s the name',
    location point, ip inet6, notes text COMPRESSED, amount decimal(10,2) unsigned zerofill,
    PRIMARY KEY (`Id`)
) ENGINE=InnoDB;
CREATE TABLE `Order Lines` (
    id bigint NOT NULL PRIMARY KEY, customer int unsigned, `key` int,
    CONSTRAINT fk_customer FOREIGN KEY (customer) REFERENCES `Customers` (`Id`) ON DELETE SET NULL
);
CREATE TABLE logs (id int NOT NULL, at date NOT NULL, PRIMARY KEY (id, at))
    PARTITION BY RANGE (YEAR(at)) (PARTITION p0 VALUES LESS THAN (2020), PARTITION p1 VALUES LESS THAN MAXVALUE);
CREATE TABLE audit (id int PRIMARY KEY, what varchar(20)) WITH SYSTEM VERSIONING;
CREATE TABLE bookings (id int NOT NULL, s date NOT NULL, e date NOT NULL, PERIOD FOR p (s, e), UNIQUE KEY one_at_a_time (id, p WITHOUT OVERLAPS));
CREATE SEQUENCE line_ids START WITH 10;
CREATE TRIGGER lines_key BEFORE INSERT ON `Order Lines` FOR EACH ROW BEGIN IF NEW.`key` IS NULL THEN SET NEW.`key` = 0; END IF; END;
CREATE DEFINER=`{ACCOUNT}`@`%` SQL SECURITY DEFINER VIEW `Customer Lines` AS
    SELECT c.name, COUNT(o.id) AS n FROM `Customers` c LEFT JOIN `Order Lines` o ON o.customer = c.`Id`
    GROUP BY c.name;
"""  # noqa: E501  (one statement per line where the test's loader needs it)

SHAPES: dict[Dialect, dict[str, object]] = {
    Dialect.POSTGRES: {
        "columns": {
            "Customers": ("Id", "name", "address", "flags", "grade", "band"),
            "base": ("id", "note"),
            "derived": ("id", "note", "extra"),  # the parent's columns first, as the engine has
            "events": ("id", "at", "customer"),
            "events_2026": ("id", "at", "customer"),
            "customer_names": ("Id", "name"),
        },
        "keys": {"Customers": ("Id",), "base": ("id",), "derived": ()},
        "foreign_keys": {ForeignKey("events", ("customer",), "Customers", ("Id",))},
        "views": ("customer_names",),
        "types": {"Customers": {"flags": "bit varying(8)", "grade": '"char"'}},
    },
    Dialect.MYSQL: {
        "columns": {
            "Customers": ("Id", "name", "location", "ip", "notes", "amount"),
            "Order Lines": ("id", "customer", "key"),
            "logs": ("id", "at"),
            "audit": ("id", "what"),
            "bookings": ("id", "s", "e"),  # the period is no column
            "Customer Lines": ("name", "n"),
        },
        "keys": {"Customers": ("Id",), "Order Lines": ("id",), "logs": ("id", "at")},
        "foreign_keys": {ForeignKey("Order Lines", ("customer",), "Customers", ("Id",))},
        "views": ("Customer Lines",),
        "types": {"Customers": {"location": "point", "ip": "inet6"}},
    },
}

SEED = {
    Dialect.POSTGRES: """
        INSERT INTO sales."Customers" (name) VALUES ('Ada'), ('Grace');
        INSERT INTO public.derived (id, extra) VALUES (1, 7);
        INSERT INTO public.base (id) VALUES (2);
    """,
    Dialect.MYSQL: """
        INSERT INTO `Customers` (name) VALUES ('Ada'), ('Grace');
        INSERT INTO `Order Lines` (id, customer) VALUES (1, 1), (2, 1);
    """,
}

QUERIES = {
    Dialect.POSTGRES: [
        ("SELECT name FROM sales.customer_names ORDER BY name", [("Ada",), ("Grace",)]),
        ("SELECT id, extra FROM derived", [(1, 7)]),
        # the parent reads its children's rows too; the trigger ran on the parent's own
        ("SELECT id, note FROM base ORDER BY id", [(1, None), (2, "none")]),
        ("SELECT flags, grade FROM sales.\"Customers\" WHERE name = 'Ada'", [(None, None)]),
    ],
    Dialect.MYSQL: [
        ("SELECT name, n FROM `Customer Lines` ORDER BY name", [("Ada", 2), ("Grace", 0)]),
        ("SELECT id, `key` FROM `Order Lines` ORDER BY id", [(1, 0), (2, 0)]),  # trigger ran
        ("SELECT ip, location FROM `Customers` WHERE name = 'Ada'", [(None, None)]),
    ],
}

DIALECTS = [Dialect.POSTGRES, Dialect.MYSQL]


@contextlib.contextmanager
def _with_account(dialect: Dialect, target: ServerTarget) -> Iterator[None]:
    """The account exists while the DDL is created and dumped, and is gone afterwards."""
    admin = Admin(target)
    account = ACCOUNT if dialect == Dialect.POSTGRES else f"`{ACCOUNT}`@`%`"
    kind = "ROLE" if dialect == Dialect.POSTGRES else "USER"
    try:
        admin.run(f"CREATE {kind} {account}")
        try:
            yield
        finally:
            admin.run(f"DROP {kind} {account}")
    finally:
        admin.close()


@pytest.fixture(scope="module")
def dumps(targets: dict[Dialect, ServerTarget]) -> dict[Dialect, str]:
    made = {}
    for dialect, ddl, dump in (
        (Dialect.POSTGRES, POSTGRES, dump_postgres),
        (Dialect.MYSQL, MYSQL, dump_mysql),
    ):
        with _with_account(dialect, targets[dialect]):
            made[dialect] = dump(targets[dialect], ddl)
    return made


def _shape(schema: SchemaInfo) -> dict[str, object]:
    return {
        "columns": {t.name: tuple(c.name for c in t.columns) for t in schema.relations},
        "keys": {t.name: t.key for t in schema.tables},
        "foreign_keys": set(schema.foreign_keys),
        "views": tuple(v.name for v in schema.views),
    }


def _assert_shape(schema: SchemaInfo, dialect: Dialect) -> None:
    wanted = SHAPES[dialect]
    shape = _shape(schema)
    assert shape["columns"] == wanted["columns"]
    keys = shape["keys"]
    assert isinstance(keys, dict)
    assert {t: keys[t] for t in wanted["keys"]} == wanted["keys"]  # type: ignore[attr-defined]
    assert shape["foreign_keys"] == wanted["foreign_keys"]
    assert shape["views"] == wanted["views"]
    types = wanted["types"]
    assert isinstance(types, dict)
    for table, columns in types.items():
        found = schema.table(table)
        assert found is not None
        assert {c: found.column(c).sql_type for c in columns} == columns  # type: ignore[union-attr]


def test_the_hand_written_ddl_loads_with_everything_it_declares() -> None:
    _assert_shape(parse_schema(POSTGRES, Dialect.POSTGRES), Dialect.POSTGRES)
    _assert_shape(parse_schema(MYSQL, Dialect.MYSQL), Dialect.MYSQL)


@pytest.mark.parametrize("dialect", DIALECTS, ids=str)
def test_the_dump_loads_and_its_rendering_loads_back_in_the_engine(
    dumps: dict[Dialect, str], dialect: Dialect, targets: dict[Dialect, ServerTarget]
) -> None:
    schema = parse_schema(dumps[dialect], dialect)
    _assert_shape(schema, dialect)
    assert not schema.warnings
    check_query(QUERIES[dialect][0][0], schema)
    with pytest.raises(QueryRejected) as rejected:
        check_query(
            f"SELECT nope FROM {'derived' if dialect == Dialect.POSTGRES else 'logs'}", schema
        )
    assert rejected.value.reason == Reason.UNKNOWN_COLUMN
    dump = dump_postgres if dialect == Dialect.POSTGRES else dump_mysql
    reloaded = parse_schema(dump(targets[dialect], render_ddl(schema)), dialect)
    assert _shape(reloaded)["columns"] == _shape(schema)["columns"]
    assert reloaded.foreign_keys == schema.foreign_keys


@pytest.mark.parametrize("dialect", DIALECTS, ids=str)
def test_a_sandbox_runs_queries_on_the_dump_without_its_accounts(
    dumps: dict[Dialect, str], dialect: Dialect, targets: dict[Dialect, ServerTarget]
) -> None:
    """The dump names an owner or definer the sandbox server does not have, a trigger under
    `DELIMITER ;;`, a materialized view WITH NO DATA: the sandbox loads it, fills the view
    from the seed rows and answers queries on all of it."""
    schema = parse_schema(dumps[dialect], dialect)
    assert ACCOUNT in dumps[dialect]
    with open_box(schema, SEED[dialect], SandboxSpec(max_rows=100), targets) as box:
        for sql, rows in QUERIES[dialect]:
            assert [tuple(r) for r in box.execute(sql).rows] == rows, sql


def test_an_application_time_key_makes_no_column_unique(dumps: dict[Dialect, str]) -> None:
    """`UNIQUE (id, p WITHOUT OVERLAPS)` lets a booking id repeat over periods that do not
    overlap: the model must not call `id` unique (a join on it would look one-to-one)."""
    for ddl in (MYSQL, dumps[Dialect.MYSQL]):
        bookings = parse_schema(ddl, Dialect.MYSQL).table("bookings")
        assert bookings is not None
        assert (bookings.key, bookings.unique) == ((), ())


def test_what_cannot_be_read_is_refused_naming_its_line() -> None:
    """A broken ALTER in a pg_dump is named at its line in the file, psql meta-commands and the
    emptied search_path counted."""
    dumped = (
        "\\restrict abc\n\nSELECT pg_catalog.set_config('search_path', '', false);\n"
        "CREATE TABLE public.a (id integer);\n"
        "ALTER TABLE public.a ADD COLUMN z integer SOMETHING ODD (;\n"
    )
    with pytest.raises(SchemaError) as refused:
        parse_schema(dumped, Dialect.POSTGRES)
    assert str(refused.value).startswith("schema DDL line 5: cannot be read: ALTER TABLE public.a")
