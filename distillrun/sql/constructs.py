"""Which SQL constructs a query shows, read off its parsed tree: the one construct vocabulary.

Every place that names constructs uses this one: the tags stored with each example (the LLM
teachers' review and the synthetic teacher read them off the SQL with `constructs_of_tree`),
the generate stage steering top-up shards toward constructs the accepted examples under-use,
the prompt's words for a focus, and the report's coverage table. So a query counts the same
way everywhere, whichever teacher wrote it. Each tag has the words a prompt uses for it. All
four dialects support every construct here (SQLite has had window functions and CTEs since
3.25, MySQL since 8.0), so the vocabulary is the same for all.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from distillrun.api.spec import Dialect

CONSTRUCTS: dict[str, str] = {
    "join": "joins of two or more tables",
    "aggregate": "aggregates (COUNT, SUM, AVG, MIN, MAX)",
    "group_by": "GROUP BY",
    "having": "GROUP BY with HAVING",
    "subquery": "a correlated or scalar subquery",
    "window": "window functions (ROW_NUMBER, RANK, running totals)",
    "cte": "a common table expression (WITH ...)",
    "order_by": "ORDER BY",
    "limit": "ORDER BY with LIMIT (top-N)",
    "distinct": "SELECT DISTINCT",
    "count_distinct": "COUNT(DISTINCT ...)",
    "case": "CASE expressions",
    "exists": "EXISTS / NOT EXISTS",
    "null_handling": "NULL handling (IS NULL, COALESCE)",
    "filter": "WHERE filters",
    "set_operation": "UNION or another set operation",
}
"""Construct tag -> how a prompt names it, in the order the report lists them."""


def constructs_of_sql(sql: str, dialect: Dialect) -> list[str]:
    """The construct tags of `sql`, sorted; empty when it does not parse (a query that passed
    the static checks always parses)."""
    try:
        tree = sqlglot.parse_one(sql, read=str(dialect))
    except SqlglotError:
        return []
    return constructs_of_tree(tree)


def constructs_of_tree(tree: exp.Expr) -> list[str]:
    """The construct tags of an already parsed query, sorted."""
    tags: set[str] = set()
    for node in tree.walk():
        tags.update(_tags_of(node))
    return sorted(tags)


def _is_subquery(node: exp.Expr) -> bool:
    """A SELECT or set operation inside another query, other than a CTE's body or one branch
    of a set operation (those are `cte` and `set_operation`)."""
    parent = node.parent
    if not isinstance(node, exp.Select | exp.SetOperation) or parent is None:
        return False
    if isinstance(parent, exp.Subquery) and parent.parent is None:
        return False  # the whole query in parentheses
    return not isinstance(parent, exp.CTE | exp.SetOperation)


_NODE_TAGS: tuple[tuple[type[exp.Expr], str], ...] = (
    (exp.Join, "join"),
    (exp.Where, "filter"),
    (exp.AggFunc, "aggregate"),
    (exp.Group, "group_by"),
    (exp.Having, "having"),
    (exp.Order, "order_by"),
    (exp.Limit, "limit"),
    (exp.With, "cte"),
    (exp.Window, "window"),
    (exp.Case, "case"),
    (exp.Exists, "exists"),
    (exp.Is, "null_handling"),
    (exp.Coalesce, "null_handling"),
    (exp.SetOperation, "set_operation"),
)


def _tags_of(node: exp.Expr) -> set[str]:
    tags = {tag for kind, tag in _NODE_TAGS if isinstance(node, kind)}
    if isinstance(node, exp.Select) and node.args.get("distinct") is not None:
        tags.add("distinct")
    if isinstance(node, exp.Count) and isinstance(node.this, exp.Distinct):
        tags.add("count_distinct")
    if _is_subquery(node):
        tags.add("subquery")
    return tags
