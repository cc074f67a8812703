"""check_query and normalize_sql: each reason class, the sqlglot gaps, SQLite's quirks."""

from __future__ import annotations

from typing import Any

import pytest

from distillrun.api.spec import Dialect
from distillrun.sql.checks import MAX_SQL_CHARS, check_query, normalize_sql
from distillrun.sql.errors import QueryRejected
from distillrun.sql.schema import SchemaInfo
from distillrun.sql.verdict import Reason
from tests.unit.sql.cases import EMBEDDED, ENGINES, load_cases

STATIC = [
    pytest.param(case, Dialect(d), id=f"{d}:{case['sql'][:60]}")
    for case in load_cases("static_cases.yaml")
    for d in case.get("dialects", ENGINES)
]


def outcome(sql: str, schema: SchemaInfo) -> tuple[str, str]:
    try:
        check_query(sql, schema)
    except QueryRejected as rejected:
        return str(rejected.reason), rejected.message
    return "ok", ""


@pytest.mark.parametrize(("case", "dialect"), STATIC)
def test_static_case(
    case: dict[str, Any], dialect: Dialect, schemas: dict[Dialect, SchemaInfo]
) -> None:
    reason, message = outcome(case["sql"], schemas[dialect])
    assert reason == case["reason"], message
    assert case.get("message", "") in message


def test_every_static_reason_is_exercised() -> None:
    static = {
        Reason.PARSE,
        Reason.MULTIPLE_STATEMENTS,
        Reason.NOT_SELECT,
        Reason.UNKNOWN_TABLE,
        Reason.UNKNOWN_COLUMN,
        Reason.FORBIDDEN,
    }
    assert {c["reason"] for c in load_cases("static_cases.yaml")} == {*static, "ok"}


def test_parse_error_has_a_position(schemas: dict[Dialect, SchemaInfo]) -> None:
    with pytest.raises(QueryRejected) as caught:
        check_query("SELECT name\nFROM customers\nWHERE id = )", schemas[Dialect.SQLITE])
    assert caught.value.reason == Reason.PARSE
    assert (caught.value.line, caught.value.col) == (3, 12)
    assert "line 3, column 12" in caught.value.message


def test_second_statement_has_a_position(schemas: dict[Dialect, SchemaInfo]) -> None:
    with pytest.raises(QueryRejected) as caught:
        check_query("SELECT 1;\n  DROP TABLE customers", schemas[Dialect.DUCKDB])
    assert caught.value.reason == Reason.MULTIPLE_STATEMENTS
    assert caught.value.line == 2


@pytest.mark.parametrize("dialect", ENGINES)
def test_overlong_and_overdeep_queries_are_refused_cheaply(
    dialect: Dialect, schemas: dict[Dialect, SchemaInfo]
) -> None:
    schema = schemas[dialect]
    long = "SELECT " + " + ".join(["1"] * (MAX_SQL_CHARS // 4)) + " FROM customers"
    assert outcome(long, schema)[0] == Reason.FORBIDDEN
    deep = "SELECT " + "(" * 5000 + "1" + ")" * 5000
    assert outcome(deep, schema)[0] == Reason.PARSE


def test_checked_query_fields(schemas: dict[Dialect, SchemaInfo]) -> None:
    checked = check_query(
        "  SELECT c.name, COUNT(*) AS n FROM customers c JOIN orders o ON o.customer_id = c.id "
        "GROUP BY c.name ORDER BY n DESC;  \n",
        schemas[Dialect.SQLITE],
    )
    assert checked.sql.startswith("SELECT c.name") and checked.sql.endswith(";")
    assert checked.tables == ("customers", "orders")
    assert checked.ordered


@pytest.mark.parametrize(
    ("sql", "ordered"),
    [
        ("SELECT name FROM customers", False),
        ("SELECT name FROM customers ORDER BY name", True),
        ("SELECT name FROM (SELECT name FROM customers ORDER BY name) t", False),
        ("WITH t AS (SELECT name FROM customers ORDER BY name) SELECT name FROM t", False),
        ("SELECT name FROM customers UNION SELECT name FROM products ORDER BY 1", True),
        ("(SELECT name FROM customers ORDER BY name)", True),
    ],
)
def test_ordered_means_top_level_order_by(
    sql: str, ordered: bool, schemas: dict[Dialect, SchemaInfo]
) -> None:
    assert check_query(sql, schemas[Dialect.DUCKDB]).ordered is ordered


EQUIVALENT = [
    (
        "SELECT name FROM customers WHERE country = 'US'",
        "select   NAME from Customers   where COUNTRY='US' -- comment",
    ),
    (
        "SELECT c.name FROM customers c WHERE c.country = 'US'",
        "SELECT x.name FROM customers AS x WHERE x.country = 'US'",
    ),
    ("SELECT COUNT(*) AS n FROM orders", "SELECT COUNT(*) AS total FROM orders"),
    (
        "SELECT c.name, o.id FROM customers c JOIN orders o ON o.customer_id = c.id",
        "SELECT a.name, b.id FROM customers a JOIN orders b ON b.customer_id = a.id",
    ),
    ('SELECT "name" FROM customers', "SELECT name FROM customers"),
    ("SELECT name FROM customers;", "SELECT name FROM customers"),
]

EQUIVALENT_GIVEN_SCHEMA = [
    ("SELECT name FROM customers", "SELECT customers.name FROM customers"),
    (
        "SELECT status, COUNT(*) AS n FROM orders GROUP BY status ORDER BY n DESC",
        "SELECT status, COUNT(*) AS cnt FROM orders GROUP BY status ORDER BY cnt DESC",
    ),
    (
        "SELECT name FROM customers c JOIN orders o ON o.customer_id = c.id",
        "SELECT c.name FROM customers c JOIN orders o ON o.customer_id = c.id",
    ),
    ("SELECT * FROM products", "SELECT id, name, category, price FROM products"),
]

DIFFERENT = [
    (
        "SELECT name FROM customers WHERE country = 'US'",
        "SELECT name FROM customers WHERE country = 'us'",
    ),
    ("SELECT name FROM customers", "SELECT email FROM customers"),
    ("SELECT name FROM customers ORDER BY name", "SELECT name FROM customers ORDER BY name DESC"),
    ("SELECT COUNT(*) FROM orders", "SELECT COUNT(*) FROM order_items"),
    ("SELECT 1 AS n ORDER BY n", "SELECT 1 AS n ORDER BY 1 DESC"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_normalize_merges_equivalent_spellings(
    a: str, b: str, schemas: dict[Dialect, SchemaInfo]
) -> None:
    for dialect in (*EMBEDDED, Dialect.POSTGRES):  # MySQL: table names keep their case
        assert normalize_sql(a, dialect) == normalize_sql(b, dialect)
        schema = schemas[dialect]
        assert check_query(a, schema).normalized == check_query(b, schema).normalized


@pytest.mark.parametrize(("a", "b"), EQUIVALENT_GIVEN_SCHEMA)
def test_normalize_with_schema_sees_through_qualification_and_stars(
    a: str, b: str, schemas: dict[Dialect, SchemaInfo]
) -> None:
    for dialect in (*EMBEDDED, Dialect.POSTGRES):
        assert normalize_sql(a, dialect, schemas[dialect]) == normalize_sql(
            b, dialect, schemas[dialect]
        )
        assert (
            check_query(a, schemas[dialect]).normalized
            == check_query(b, schemas[dialect]).normalized
        )


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_normalize_keeps_different_queries_apart(
    a: str, b: str, schemas: dict[Dialect, SchemaInfo]
) -> None:
    for dialect in ENGINES:
        assert normalize_sql(a, dialect) != normalize_sql(b, dialect)
        assert normalize_sql(a, dialect, schemas[dialect]) != normalize_sql(
            b, dialect, schemas[dialect]
        )


def test_normalize_reads_sqlite_double_quoted_strings_as_strings(
    schemas: dict[Dialect, SchemaInfo],
) -> None:
    schema = schemas[Dialect.SQLITE]
    dqs = 'SELECT name FROM customers WHERE country = "US"'
    single = "SELECT name FROM customers WHERE country = 'US'"
    assert check_query(dqs, schema).normalized == check_query(single, schema).normalized


def test_normalize_falls_back_to_folding_for_broken_sql() -> None:
    broken = "SELEC  Name\n FROM   Customers WHERE x = 'Keep CASE'"
    assert (
        normalize_sql(broken, Dialect.SQLITE) == "selec name from customers where x = 'Keep CASE'"
    )
    assert normalize_sql("SELECT 1; SELECT 2", Dialect.DUCKDB) == "select 1; select 2"


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c["sql"][:60]) for c in load_cases("normal_forms.yaml")]
)
def test_canonical_forms_are_pinned(
    case: dict[str, Any], schemas: dict[Dialect, SchemaInfo]
) -> None:
    """The exact forms, not just which queries share one: they are stored deduplication keys,
    so a faster checker (or another sqlglot build) must produce them unchanged."""
    for dialect in ENGINES:
        try:
            checked: str | None = check_query(case["sql"], schemas[dialect]).normalized
        except QueryRejected:
            checked = None
        assert checked == case["checked"].get(str(dialect)), dialect
        bare = case.get("bare", {}).get(str(dialect), checked)
        assert normalize_sql(case["sql"], dialect) == bare, dialect
