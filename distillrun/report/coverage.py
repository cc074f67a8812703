"""What a query touches, read off its SQL: tables, columns, equality joins and constructs.

The report reads the SQL itself rather than the tags stored with the examples (shards stored
by an older version may carry other tags): the same query always counts the same way, whichever
teacher wrote it, and "never used" is measured against the one construct vocabulary
(`sql.constructs.CONSTRUCTS`, in its order) and the schema. Columns are placed in their tables
by sqlglot's qualifier, which needs the schema for unqualified columns of a join; without the
schema only tables, joins written with qualified columns and constructs are read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import traverse_scope
from sqlglot.schema import MappingSchema

from distillrun.report.model import Coverage, Uses
from distillrun.sql.constructs import CONSTRUCTS, constructs_of_tree
from distillrun.sql.schema import SchemaInfo, mapping_schema


@dataclass(frozen=True)
class QueryFacts:
    """What one query touches. Columns are `table.column`; a join is `a.x = b.y` with the two
    sides in sorted order, so the same join reads the same whichever way it was written."""

    tables: frozenset[str]
    columns: frozenset[str]
    joins: frozenset[str]
    constructs: frozenset[str]
    placed: bool


def _canonical_table(name: str, schema: SchemaInfo | None) -> str:
    table = schema.table(name) if schema is not None else None
    return table.name if table is not None else name


def _canonical_column(table: str, column: str, schema: SchemaInfo | None) -> str:
    info = schema.table(table) if schema is not None else None
    found = info.column(column) if info is not None else None
    return f"{table}.{found.name if found is not None else column}"


@lru_cache(maxsize=4)
def _sqlglot_schema(schema: SchemaInfo) -> MappingSchema:
    """The schema as `qualify` wants it, built once per schema rather than once per query."""
    return mapping_schema(schema)


def _placed_columns(tree: exp.Expr, schema: SchemaInfo | None) -> dict[int, str]:
    """`table.column` for every column node that reads a base table directly, by node id."""
    placed: dict[int, str] = {}
    for scope in traverse_scope(tree):
        for column in scope.columns:
            source = scope.sources.get(column.table)
            if isinstance(source, exp.Table) and column.name:
                table = _canonical_table(source.name, schema)
                placed[id(column)] = _canonical_column(table, column.name, schema)
    return placed


def query_facts(sql: str, dialect: str, schema: SchemaInfo | None) -> QueryFacts | None:
    """The facts of `sql`, or None when sqlglot cannot parse it. Columns and joins stay empty
    (`placed` False) when its columns cannot be placed in tables, which without the schema
    happens to unqualified columns next to a subquery."""
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except (SqlglotError, RecursionError):
        return None
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    tables = frozenset(
        _canonical_table(t.name, schema)
        for t in tree.find_all(exp.Table)
        if t.name and t.name.lower() not in ctes
    )
    constructs = frozenset(constructs_of_tree(tree))
    try:
        qualified = qualify(
            tree.copy(),
            dialect=dialect,
            schema=_sqlglot_schema(schema) if schema is not None else None,
            expand_stars=False,
            validate_qualify_columns=False,
            quote_identifiers=False,
            identify=False,
        )
        placed = _placed_columns(qualified, schema)
    except (SqlglotError, RecursionError):
        return QueryFacts(tables, frozenset(), frozenset(), constructs, placed=False)
    joins: set[str] = set()
    for eq in qualified.find_all(exp.EQ):
        left, right = placed.get(id(eq.this)), placed.get(id(eq.expression))
        if left and right and left.split(".")[0] != right.split(".")[0]:
            joins.add(" = ".join(sorted((left, right))))
    return QueryFacts(tables, frozenset(placed.values()), frozenset(joins), constructs, placed=True)


def _ranked(counter: Counter[str]) -> tuple[Uses, ...]:
    return tuple(Uses(name, n) for name, n in sorted(counter.items(), key=lambda i: (-i[1], i[0])))


def coverage(
    sqls: Iterable[str], dialect: str, schema: SchemaInfo | None, schema_note: str | None
) -> Coverage:
    """How the accepted queries `sqls` cover the schema and `sql.constructs.CONSTRUCTS`.

    Each count is the number of queries that use the item at least once."""
    tables: Counter[str] = Counter()
    columns: Counter[str] = Counter()
    joins: Counter[str] = Counter()
    constructs: Counter[str] = Counter()
    examples = unparsed = unplaced = 0
    for sql in sqls:
        examples += 1
        facts = query_facts(sql, dialect, schema)
        if facts is None:
            unparsed += 1
            continue
        unplaced += not facts.placed
        tables.update(facts.tables)
        columns.update(facts.columns)
        joins.update(facts.joins)
        constructs.update(facts.constructs)
    found = Coverage(
        examples=examples,
        tables=_ranked(tables),
        constructs=_ranked(constructs),
        unused_constructs=tuple(c for c in CONSTRUCTS if c not in constructs),
        joins=_ranked(joins),
        columns=None,
        unused_tables=None,
        unused_columns=None,
        unused_joins=None,
        schema_columns=None,
        unparsed=unparsed,
        unplaced=unplaced,
        schema_note=schema_note,
    )
    if schema is None:
        return found
    every_column = [f"{t.name}.{c.name}" for t in schema.tables for c in t.columns]
    foreign = {
        " = ".join(sorted((f"{fk.table}.{column}", f"{fk.ref_table}.{ref_column}")))
        for fk in schema.foreign_keys
        for column, ref_column in fk.pairs
    }
    return replace(
        found,
        columns=_ranked(columns),
        unused_tables=tuple(t.name for t in schema.tables if t.name not in tables),
        unused_columns=tuple(c for c in every_column if c not in columns),
        unused_joins=tuple(sorted(j for j in foreign if j not in joins)),
        schema_columns=len(every_column),
    )
