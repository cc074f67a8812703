"""The target schema as data: tables, columns, types, primary and foreign keys, parsed from DDL.

Both the SQL checks (does every table and column exist?) and the synthetic teacher (what can be
joined, filtered, summed?) work from this one model, never from raw DDL text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError
from sqlglot.expressions.datatypes import DType

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
}


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    kind: ColumnKind
    nullable: bool
    primary_key: bool


@dataclass(frozen=True)
class ForeignKey:
    """`table.column` references `ref_table.ref_column`."""

    table: str
    column: str
    ref_table: str
    ref_column: str


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)

    @property
    def primary_key(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.primary_key)


@dataclass(frozen=True)
class SchemaInfo:
    """A parsed schema plus the DDL it came from (kept verbatim for sandboxes and prompts)."""

    dialect: Dialect
    ddl: str
    tables: tuple[Table, ...]
    foreign_keys: tuple[ForeignKey, ...] = field(default=())

    def table(self, name: str) -> Table | None:
        lowered = name.lower()
        return next((t for t in self.tables if t.name.lower() == lowered), None)

    def mapping(self) -> dict[str, dict[str, str]]:
        """{table: {column: type}} as sqlglot's optimizer wants it."""
        return {t.name: {c.name: c.sql_type for c in t.columns} for t in self.tables}

    @property
    def fingerprint(self) -> str:
        """sha256 of the dialect and DDL: part of every shard key."""
        return hashlib.sha256(f"{self.dialect}\n{self.ddl}".encode()).hexdigest()


def _column_kind(data_type: exp.DataType | None) -> ColumnKind:
    if data_type is None:
        return ColumnKind.OTHER
    return _KIND_OF_TYPE.get(data_type.this, ColumnKind.OTHER)


def _is_primary_key(column_def: exp.ColumnDef) -> bool:
    return any(isinstance(c.kind, exp.PrimaryKeyColumnConstraint) for c in column_def.constraints)


def _is_not_null(column_def: exp.ColumnDef) -> bool:
    return any(
        isinstance(c.kind, exp.NotNullColumnConstraint) and not c.kind.args.get("allow_null")
        for c in column_def.constraints
    )


def _inline_reference(table: str, column_def: exp.ColumnDef) -> ForeignKey | None:
    for constraint in column_def.constraints:
        ref = constraint.kind
        if isinstance(ref, exp.Reference):
            target = ref.this
            ref_table = target.this.name if isinstance(target, exp.Schema) else target.name
            ref_cols = target.expressions if isinstance(target, exp.Schema) else []
            ref_column = ref_cols[0].name if ref_cols else "id"
            return ForeignKey(table, column_def.name, ref_table, ref_column)
    return None


def _table_constraints(table: str, schema: exp.Schema) -> tuple[set[str], list[ForeignKey]]:
    primary: set[str] = set()
    foreign: list[ForeignKey] = []
    for item in schema.expressions:
        if isinstance(item, exp.PrimaryKey):
            primary.update(e.name.lower() for e in item.expressions)
        elif isinstance(item, exp.ForeignKey):
            ref = item.args.get("reference")
            target = ref.this if ref is not None else None
            if isinstance(target, exp.Schema):
                for col, ref_col in zip(item.expressions, target.expressions, strict=False):
                    foreign.append(ForeignKey(table, col.name, target.this.name, ref_col.name))
    return primary, foreign


def _parse_create(statement: exp.Create) -> tuple[Table, list[ForeignKey]]:
    schema = statement.this
    if not isinstance(schema, exp.Schema):
        raise SchemaError(f"CREATE TABLE {statement.this.sql()} has no column list")
    name = schema.this.name
    table_pk, foreign = _table_constraints(name, schema)
    columns: list[Column] = []
    for column_def in schema.expressions:
        if not isinstance(column_def, exp.ColumnDef):
            continue
        data_type = column_def.args.get("kind")
        primary = _is_primary_key(column_def) or column_def.name.lower() in table_pk
        columns.append(
            Column(
                name=column_def.name,
                sql_type=data_type.sql() if data_type is not None else "TEXT",
                kind=_column_kind(data_type),
                nullable=not (primary or _is_not_null(column_def)),
                primary_key=primary,
            )
        )
        inline = _inline_reference(name, column_def)
        if inline is not None:
            foreign.append(inline)
    if not columns:
        raise SchemaError(f"table {name} has no columns")
    return Table(name, tuple(columns)), foreign


def parse_schema(ddl: str, dialect: Dialect) -> SchemaInfo:
    """Parses CREATE TABLE statements; anything else in the DDL (indexes, comments) is ignored.

    Raises SchemaError when the text does not parse, defines no table, defines a table twice or
    has a foreign key to a table or column that does not exist.
    """
    try:
        statements = sqlglot.parse(ddl, read=str(dialect))
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" at line {first.get('line')}, column {first.get('col')}" if first else ""
        raise SchemaError(
            f"schema DDL does not parse{where}: {first.get('description', exc)}"
        ) from None
    tables: list[Table] = []
    foreign: list[ForeignKey] = []
    for statement in statements:
        if (
            isinstance(statement, exp.Create)
            and str(statement.args.get("kind", "")).upper() == "TABLE"
        ):
            table, refs = _parse_create(statement)
            if any(t.name.lower() == table.name.lower() for t in tables):
                raise SchemaError(f"table {table.name} is defined twice")
            tables.append(table)
            foreign.extend(refs)
    if not tables:
        raise SchemaError("schema DDL defines no table (expected CREATE TABLE statements)")
    info = SchemaInfo(dialect=dialect, ddl=ddl, tables=tuple(tables), foreign_keys=tuple(foreign))
    for fk in foreign:
        target = info.table(fk.ref_table)
        if target is None:
            raise SchemaError(f"{fk.table}.{fk.column} references unknown table {fk.ref_table}")
        if target.column(fk.ref_column) is None:
            raise SchemaError(
                f"{fk.table}.{fk.column} references unknown column {fk.ref_table}.{fk.ref_column}"
            )
    return info
