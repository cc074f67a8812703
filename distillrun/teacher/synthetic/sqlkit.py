"""Small helpers that build sqlglot expressions the way a person would write the SQL.

Queries are built as expression trees (never pasted text) and rendered once per dialect, so
identifiers are quoted exactly when needed and date functions come out right for sqlite,
duckdb, postgres and mysql. Two details keep the rendered SQL plain: ORDER BY keys carry the
dialect's own NULL ordering (otherwise sqlglot spells out `NULLS LAST` or a `CASE` to preserve
another dialect's), and reserved words used as names are quoted.
"""

from __future__ import annotations

import re
from functools import cache

import sqlglot
from sqlglot import exp

from distillrun.api.spec import Dialect

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@cache
def _reserved_words() -> frozenset[str]:
    """Words a name must be quoted for in at least one of the four dialects. sqlglot's lists
    for duckdb (which follows postgres) and mysql together cover sqlite's too; quoting a word
    that one dialect would have accepted bare is harmless."""
    words: set[str] = set()
    for dialect in ("duckdb", "mysql"):
        generator = sqlglot.Dialect.get_or_raise(dialect).generator_class
        words.update(w.lower() for w in generator.RESERVED_KEYWORDS)
    return frozenset(words)


def identifier(name: str) -> exp.Identifier:
    quoted = not _PLAIN_NAME.fullmatch(name) or name.lower() in _reserved_words()
    return exp.to_identifier(name, quoted=quoted)


def column(name: str, table: str | None = None) -> exp.Column:
    """`name`, or `table.name` when `table` (an alias) is given."""
    return exp.Column(this=identifier(name), table=identifier(table) if table is not None else None)


def table(name: str, alias: str | None = None) -> exp.Table:
    node = exp.Table(this=identifier(name))
    if alias is not None:
        node.set("alias", exp.TableAlias(this=identifier(alias)))
    return node


def number(value: int) -> exp.Expr:
    return exp.Literal.number(value)


def string(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def count_star() -> exp.Count:
    return exp.Count(this=exp.Star())


def count_distinct(expression: exp.Expr) -> exp.Count:
    return exp.Count(this=exp.Distinct(expressions=[expression]))


def aliased(expression: exp.Expr, alias: str) -> exp.Alias:
    return exp.Alias(this=expression, alias=identifier(alias))


def year_of(expression: exp.Expr) -> exp.TimeToStr:
    """The year of a date as 4-digit text (strftime, TO_CHAR or DATE_FORMAT per dialect)."""
    return exp.TimeToStr(this=expression, format=string("%Y"))


def month_of(expression: exp.Expr) -> exp.TimeToStr:
    """The month of a date as `YYYY-MM` text."""
    return exp.TimeToStr(this=expression, format=string("%Y-%m"))


def window(
    function: exp.Expr,
    partition_by: list[exp.Expr] | None = None,
    order_by: exp.Ordered | None = None,
) -> exp.Window:
    """`function OVER (PARTITION BY ... ORDER BY ...)`; both parts optional (`OVER ()`)."""
    order = exp.Order(expressions=[order_by]) if order_by is not None else None
    return exp.Window(this=function, partition_by=partition_by or None, order=order)


def case(branches: list[tuple[exp.Expr, exp.Expr]], otherwise: exp.Expr) -> exp.Case:
    """`CASE WHEN condition THEN value ... ELSE otherwise END`."""
    return exp.Case(
        ifs=[exp.If(this=condition, true=value) for condition, value in branches],
        default=otherwise,
    )


def days_before(expression: exp.Expr, days: int) -> exp.DateAdd:
    return exp.DateAdd(this=expression, expression=number(-days), unit=exp.Var(this="DAY"))


class Renderer:
    """Renders queries for one dialect and builds ORDER BY keys that render without noise."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = str(dialect)
        self._null_ordering = sqlglot.Dialect.get_or_raise(self.dialect).NULL_ORDERING

    def ordered(self, expression: exp.Expr, descending: bool = False) -> exp.Ordered:
        """An ORDER BY key with the dialect's default NULL placement, which is what
        `x DESC` means when read in that dialect, so no NULLS FIRST/LAST is added."""
        nulls_first = (not descending and self._null_ordering == "nulls_are_small") or (
            descending and self._null_ordering == "nulls_are_large"
        )
        return exp.Ordered(this=expression, desc=descending or None, nulls_first=nulls_first)

    def sql(self, expression: exp.Expr) -> str:
        return expression.sql(dialect=self.dialect)


def tables_of(query: exp.Query) -> list[str]:
    """Names of the schema tables a query reads, in order of first appearance (a CTE's name is
    not a table)."""
    ctes = {cte.alias for cte in query.find_all(exp.CTE)}
    names: list[str] = []
    for node in query.walk():
        if isinstance(node, exp.Table) and node.name not in names and node.name not in ctes:
            names.append(node.name)
    return names
