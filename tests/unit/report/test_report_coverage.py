"""Schema coverage read off the SQL: tables, columns, joins and constructs, with and without the
schema."""

from __future__ import annotations

import pytest

from distillrun.api.spec import Dialect
from distillrun.report.coverage import coverage, query_facts
from distillrun.sql.constructs import CONSTRUCTS
from distillrun.sql.schema import SchemaInfo, parse_schema
from tests.unit.report.conftest import EXAMPLES


@pytest.fixture(scope="module")
def shop() -> SchemaInfo:
    return parse_schema((EXAMPLES / "shop" / "schema.sql").read_text(), Dialect.SQLITE)


def test_columns_are_placed_in_their_tables_and_joins_read_either_way(shop: SchemaInfo) -> None:
    facts = query_facts(
        "SELECT name, SUM(quantity) FROM products JOIN order_items ON product_id = products.id "
        "GROUP BY name",
        "sqlite",
        shop,
    )
    assert facts is not None and facts.placed
    assert facts.tables == {"products", "order_items"}
    assert facts.columns == {
        "products.name",
        "products.id",
        "order_items.quantity",
        "order_items.product_id",
    }
    assert facts.joins == {"order_items.product_id = products.id"}
    assert facts.constructs == {"join", "aggregate", "group_by"}
    flipped = query_facts(
        "SELECT p.name FROM order_items AS oi JOIN products AS p ON p.id = oi.product_id",
        "sqlite",
        shop,
    )
    assert flipped is not None and flipped.joins == facts.joins


def test_ctes_are_not_tables_and_every_construct_is_seen(shop: SchemaInfo) -> None:
    facts = query_facts(
        "WITH big AS (SELECT customer_id, COUNT(DISTINCT status) AS n FROM orders "
        "GROUP BY customer_id HAVING COUNT(*) > 1) "
        "SELECT DISTINCT c.name, CASE WHEN b.n > 3 THEN 'a' ELSE 'b' END, "
        "ROW_NUMBER() OVER (ORDER BY c.id) FROM customers AS c JOIN big AS b "
        "ON b.customer_id = c.id WHERE EXISTS (SELECT 1 FROM orders AS o "
        "WHERE o.customer_id = c.id AND o.order_date IS NOT NULL) ORDER BY c.name LIMIT 5 "
        "UNION SELECT name, 'c', 0 FROM products",
        "sqlite",
        shop,
    )
    assert facts is not None
    assert facts.tables == {"orders", "customers", "products"}
    assert facts.constructs == set(CONSTRUCTS)


def test_a_star_uses_no_particular_column(shop: SchemaInfo) -> None:
    facts = query_facts("SELECT * FROM customers", "sqlite", shop)
    assert facts is not None and facts.columns == set() and facts.constructs == set()


def test_sql_that_does_not_parse_is_counted_not_guessed(shop: SchemaInfo) -> None:
    assert query_facts("SELECT FROM WHERE (", "sqlite", shop) is None
    found = coverage(["SELECT FROM WHERE (", "SELECT name FROM customers"], "sqlite", shop, None)
    assert found.examples == 2 and found.unparsed == 1


def test_coverage_counts_queries_and_names_what_is_never_used(shop: SchemaInfo) -> None:
    found = coverage(
        [
            "SELECT name FROM customers WHERE country = 'JP' AND name <> country",
            "SELECT c.name FROM customers AS c JOIN orders AS o ON o.customer_id = c.id",
        ],
        "sqlite",
        shop,
        None,
    )
    assert [(u.name, u.count) for u in found.tables] == [("customers", 2), ("orders", 1)]
    assert found.unused_tables == ("products", "order_items")
    assert found.columns is not None and found.unused_columns is not None
    assert ("customers.name", 2) in [(u.name, u.count) for u in found.columns]
    assert "products.price" in found.unused_columns and "customers.name" not in found.unused_columns
    assert [u.name for u in found.joins] == ["customers.id = orders.customer_id"]
    assert found.unused_joins == (
        "order_items.order_id = orders.id",
        "order_items.product_id = products.id",
    )
    # the report lists the one vocabulary, in its order
    assert found.unused_constructs == tuple(c for c in CONSTRUCTS if c not in {"filter", "join"})
    assert found.schema_columns == 17


def test_without_the_schema_only_what_is_used_is_told() -> None:
    found = coverage(
        ["SELECT c.name FROM customers AS c JOIN orders AS o ON o.customer_id = c.id"],
        "sqlite",
        None,
        "no schema here",
    )
    assert found.schema_note == "no schema here"
    assert [u.name for u in found.tables] == ["customers", "orders"]
    assert [u.name for u in found.joins] == ["customers.id = orders.customer_id"]
    assert found.columns is None and found.unused_tables is None and found.unused_joins is None
    assert "join" not in found.unused_constructs
