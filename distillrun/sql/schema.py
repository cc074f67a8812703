"""The target schema as data: tables, views, columns, types, primary and foreign keys.

Both the SQL checks (does every table and column exist?) and the synthetic teacher (what can be
joined, filtered, summed?) work from this one model, never from raw DDL text. The rule it
follows: DDL the target engine loads, this loads too, with names as the engine resolves them
(PostgreSQL folds unquoted names to lower case and keeps quoted ones as written; the others
keep names as declared and compare them as `SchemaInfo.resolve` says). SQLite schemas are read
by SQLite itself (`schema_sqlite`), the server dialects and DuckDB from their DDL and dump
output (`schema_dump`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect as SqlglotDialect
from sqlglot.errors import SqlglotError
from sqlglot.expressions.datatypes import DType
from sqlglot.schema import MappingSchema

from distillrun.api.spec import Dialect


class SchemaError(ValueError):
    """DDL that cannot be used as a schema; the message says which statement and why."""


class ColumnKind(StrEnum):
    """What a column's values are, as far as writing questions about them goes."""

    INTEGER = "integer"
    NUMBER = "number"
    TEXT = "text"
    DATE = "date"
    BOOLEAN = "boolean"
    OTHER = "other"


_KIND_OF_TYPE: dict[DType, ColumnKind] = {
    **{t: ColumnKind.INTEGER for t in exp.DataType.INTEGER_TYPES},
    **{t: ColumnKind.NUMBER for t in exp.DataType.REAL_TYPES},
    **{t: ColumnKind.TEXT for t in exp.DataType.TEXT_TYPES},
    **{t: ColumnKind.DATE for t in exp.DataType.TEMPORAL_TYPES},
    exp.DataType.Type.BOOLEAN: ColumnKind.BOOLEAN,
    exp.DataType.Type.ENUM: ColumnKind.TEXT,
}


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    """The type as the dialect writes it (`TEXT[]`, `ENUM('a', 'b')`, `public.mood`); empty for
    a SQLite column declared without one."""
    kind: ColumnKind
    nullable: bool
    primary_key: bool


@dataclass(frozen=True)
class ForeignKey:
    """`table(columns)` references `ref_table(ref_columns)`, column for column.

    A composite key stays one key: joining on one of its columns alone fans rows out.
    """

    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(zip(self.columns, self.ref_columns, strict=True))


@dataclass(frozen=True)
class Table:
    """A table or, with a `definition`, a view."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    """Primary key columns in key order."""
    unique: tuple[tuple[str, ...], ...] = ()
    """UNIQUE constraints (foreign keys may reference them)."""
    namespace: str = ""
    """The schema it was declared in (`sales` of `sales.orders`), empty when unqualified."""
    definition: str | None = None
    """A view's CREATE VIEW statement, in the dialect."""

    @property
    def is_view(self) -> bool:
        return self.definition is not None

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)

    @property
    def primary_key(self) -> tuple[Column, ...]:
        found = (self.column(name) for name in self.key)
        return tuple(c for c in found if c is not None)


@dataclass(frozen=True)
class UserType:
    """A PostgreSQL/DuckDB type (enum, domain, composite, range): columns may be declared
    with it."""

    name: str
    definition: str
    """What follows AS: `ENUM ('a', 'b')`, the domain's base type, `(street TEXT, city TEXT)`
    or `RANGE (subtype = float8)`, in the dialect."""
    is_domain: bool
    namespace: str = ""


@dataclass(frozen=True)
class SchemaInfo:
    """A parsed schema plus the DDL its sandboxes load (the input, cleaned by `clean_ddl`)."""

    dialect: Dialect
    ddl: str
    tables: tuple[Table, ...]
    foreign_keys: tuple[ForeignKey, ...] = field(default=())
    views: tuple[Table, ...] = field(default=())
    types: tuple[UserType, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=(), compare=False)
    """What the engine accepts but a reader should know (a foreign key to a missing column)."""

    @property
    def relations(self) -> tuple[Table, ...]:
        """Tables, then views: everything a query may read."""
        return self.tables + self.views

    def table(self, name: str) -> Table | None:
        """The table or view named `name`, ignoring case (for callers that hold a model name)."""
        lowered = name.lower()
        exact = next((t for t in self.relations if t.name == name), None)
        return exact or next((t for t in self.relations if t.name.lower() == lowered), None)

    def resolve(self, name: str, *, quoted: bool) -> Table | None:
        """The relation a query's table name reaches, as the engine resolves it.

        SQLite and DuckDB ignore case; MySQL on Linux (and in the sandbox) compares table
        names exactly; PostgreSQL folds an unquoted name to lower case first.
        """
        if self.dialect == Dialect.MYSQL:
            return next((t for t in self.relations if t.name == name), None)
        if self.dialect == Dialect.POSTGRES:
            wanted = name if quoted else name.lower()
            return next((t for t in self.relations if t.name == wanted), None)
        return self.table(name)

    @property
    def fingerprint(self) -> str:
        """sha256 of the dialect and DDL: part of every shard key."""
        return hashlib.sha256(f"{self.dialect}\n{self.ddl}".encode()).hexdigest()


@functools.cache
def sqlglot_dialect(dialect: Dialect) -> SqlglotDialect:
    """sqlglot's dialect object for `dialect`, made once and passed everywhere instead of the
    name: given a name, sqlglot builds a new one for each step, several times per query.
    It holds only settings, which nothing changes."""
    return SqlglotDialect.get_or_raise(str(dialect))


def mapping_schema(info: SchemaInfo, pseudo_columns: Iterable[str] = ()) -> MappingSchema:
    """The schema as sqlglot's optimizer wants it, plus `pseudo_columns` (`rowid`) on each
    relation that does not declare them.

    Every name is given quoted, so sqlglot keeps it exactly as the engine stores it
    (`"Leave Requests"`, `"Departments"` in PostgreSQL) and resolves a query's names to it by
    the dialect's own rules. MySQL column names are lower-cased: MySQL compares them without
    case, sqlglot with (see `for_qualify`).
    """
    dialect = sqlglot_dialect(info.dialect)
    fold = info.dialect == Dialect.MYSQL

    def quoted(name: str) -> str:
        return exp.to_identifier(name, quoted=True).sql(dialect=dialect)

    tables: dict[str, object] = {}
    for relation in info.relations:
        declared = {c.name.lower() for c in relation.columns}
        columns = {
            quoted(c.name.lower() if fold else c.name): _readable_type(c.sql_type, info.dialect)
            for c in relation.columns
        }
        columns.update({quoted(p): "BIGINT" for p in pseudo_columns if p not in declared})
        tables[quoted(relation.name)] = columns
    return MappingSchema(tables, dialect=dialect)


def for_qualify(tree: exp.Expr, dialect: Dialect) -> exp.Expr:
    """The tree made ready for sqlglot's `qualify` (in place; returned for convenience).

    sqlglot treats every MySQL identifier as case-sensitive, which is right for table names
    and aliases on Linux but not for columns and column aliases, which MySQL compares without
    case (`SELECT c.NAME` reads column `name`). Those are lower-cased.

    A quoted table read without an alias (`FROM sales."Customers"`) gets its own name as its
    alias, as the engine reads it: sqlglot would name it by its lower-cased name, and a column
    the query qualifies by the table's name (`"Customers"."Id"`, as pg_dump writes every view)
    would not resolve.
    """
    for table in tree.find_all(exp.Table):
        name = table.this
        if isinstance(name, exp.Identifier) and name.quoted and not table.alias:
            table.set("alias", exp.TableAlias(this=name.copy()))
    if dialect == Dialect.MYSQL:
        for node in tree.find_all(exp.Column, exp.Alias):
            key = "this" if isinstance(node, exp.Column) else "alias"
            ident = node.args.get(key)
            if isinstance(ident, exp.Identifier):
                node.set(key, exp.to_identifier(ident.name.lower(), quoted=ident.quoted))
    return tree


def _readable_type(sql_type: str, dialect: Dialect) -> str:
    try:
        exp.DataType.build(sql_type, dialect=str(dialect))
    except (SqlglotError, ValueError):
        return "UNKNOWN"
    return sql_type


def column_kind(data_type: exp.DataType | None) -> ColumnKind:
    if data_type is None:
        return ColumnKind.OTHER
    return _KIND_OF_TYPE.get(data_type.this, ColumnKind.OTHER)


def parse_schema(ddl: str, dialect: Dialect) -> SchemaInfo:
    """The schema `ddl` defines in `dialect` (any text the engine loads, dump output included).

    Raises SchemaError when the engine would refuse the DDL or it defines no table. A foreign
    key to a table or column that does not exist is left out with a warning: SQLite and a
    MySQL dump (which turns key checks off) load it, and no join can use it.
    """
    from distillrun.sql import schema_dump, schema_sqlite

    if dialect == Dialect.SQLITE:
        info = schema_sqlite.read_schema(ddl)
    else:
        info = schema_dump.read_schema(ddl, dialect)
    if not info.tables:
        raise SchemaError("schema DDL defines no table (expected CREATE TABLE statements)")
    return info


def checked_foreign_keys(
    relations: tuple[Table, ...], declared: list[ForeignKey]
) -> tuple[tuple[ForeignKey, ...], list[str]]:
    """The declared keys that can be joined on, and a warning for each one that cannot.

    A key without referenced columns (`REFERENCES customers`) references the primary key, as
    every engine reads it. Names are matched without case: the engines already resolved them.
    """
    by_name = {t.name.lower(): t for t in relations}
    kept: list[ForeignKey] = []
    warnings: list[str] = []
    for fk in declared:
        shown = f"{fk.table}({', '.join(fk.columns)})"
        child, parent = by_name.get(fk.table.lower()), by_name.get(fk.ref_table.lower())
        if child is None or parent is None:
            warnings.append(f"{shown} references unknown table {fk.ref_table}: key ignored")
            continue
        ref_names = fk.ref_columns or parent.key
        columns = [child.column(c) for c in fk.columns]
        ref_columns = [parent.column(c) for c in ref_names]
        missing = [f"{fk.table}.{n}" for n, c in zip(fk.columns, columns, strict=True) if not c]
        missing += [
            f"{parent.name}.{n}" for n, c in zip(ref_names, ref_columns, strict=True) if not c
        ]
        if missing:
            warnings.append(f"{shown} references unknown column {', '.join(missing)}: key ignored")
        elif len(ref_columns) != len(columns) or not columns:
            warnings.append(f"{shown} does not match the key of {parent.name}: key ignored")
        else:
            kept.append(
                ForeignKey(
                    child.name,
                    tuple(c.name for c in columns if c is not None),
                    parent.name,
                    tuple(c.name for c in ref_columns if c is not None),
                )
            )
    return tuple(kept), warnings
