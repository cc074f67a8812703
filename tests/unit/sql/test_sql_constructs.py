"""The one construct vocabulary and the one tagging rule every teacher, the top-up steering and
the report share."""

from __future__ import annotations

import pytest
import sqlglot

from distillrun.api.spec import Dialect
from distillrun.sql.constructs import CONSTRUCTS, constructs_of_sql, constructs_of_tree

EVERYTHING = (
    "WITH big AS (SELECT customer_id, COUNT(*) AS n FROM orders GROUP BY customer_id "
    "HAVING COUNT(DISTINCT status) > 1) "
    "SELECT DISTINCT c.name, CASE WHEN b.n > 3 THEN 'a' ELSE 'b' END, COALESCE(c.country, '-'), "
    "ROW_NUMBER() OVER (ORDER BY c.id) FROM customers AS c JOIN big AS b "
    "ON b.customer_id = c.id WHERE EXISTS (SELECT 1 FROM orders AS o "
    "WHERE o.customer_id = c.id) ORDER BY c.name LIMIT 5 "
    "UNION SELECT name, 'c', NULL, 0 FROM products"
)


def test_every_construct_in_the_vocabulary_can_be_read_and_nothing_else() -> None:
    assert constructs_of_sql(EVERYTHING, Dialect.SQLITE) == sorted(CONSTRUCTS)
    assert all(CONSTRUCTS.values())


@pytest.mark.parametrize(
    ("sql", "subquery"),
    [
        ("SELECT a FROM t WHERE x IN (SELECT y FROM u)", True),
        ("SELECT (SELECT MAX(x) FROM u) FROM t", True),
        ("SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)", True),
        ("SELECT * FROM (SELECT a FROM t) AS s", True),
        ("SELECT * FROM (SELECT a FROM t UNION SELECT b FROM u) AS s", True),
        ("WITH c AS (SELECT 1 AS x) SELECT x FROM c", False),
        ("SELECT a FROM t UNION SELECT b FROM u", False),
        ("(SELECT a FROM t)", False),
    ],
)
def test_a_subquery_is_a_query_inside_another_but_not_a_cte_or_a_union_branch(
    sql: str, subquery: bool
) -> None:
    assert ("subquery" in constructs_of_sql(sql, Dialect.SQLITE)) is subquery


def test_distinct_and_count_distinct_are_told_apart() -> None:
    assert constructs_of_sql("SELECT COUNT(DISTINCT a) FROM t", Dialect.SQLITE) == [
        "aggregate",
        "count_distinct",
    ]
    assert constructs_of_sql("SELECT DISTINCT a FROM t WHERE b IS NULL", Dialect.SQLITE) == [
        "distinct",
        "filter",
        "null_handling",
    ]


def test_a_parsed_tree_and_its_sql_read_the_same() -> None:
    tree = sqlglot.parse_one(EVERYTHING, read="sqlite")
    assert constructs_of_tree(tree) == constructs_of_sql(EVERYTHING, Dialect.SQLITE)
    assert constructs_of_sql("SELECT FROM WHERE (", Dialect.SQLITE) == []
