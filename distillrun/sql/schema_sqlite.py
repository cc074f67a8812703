"""A SQLite schema read by SQLite itself: the DDL is loaded into a private in-memory database
and the model is taken from its catalog.

SQLite accepts more than any parser of ours would (columns without a type, table constraints
without commas between them, type names of several words, keys to columns that do not exist),
and resolves names its own way; asking it is the only way to agree with it on every schema.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from distillrun.api.spec import Dialect
from distillrun.sql.ddl_text import clean_ddl, code_start, split_script
from distillrun.sql.schema import (
    Column,
    ColumnKind,
    ForeignKey,
    SchemaError,
    SchemaInfo,
    Table,
    checked_foreign_keys,
    column_kind,
)

_AFFINITY: tuple[tuple[tuple[str, ...], ColumnKind], ...] = (
    (("INT",), ColumnKind.INTEGER),
    (("CHAR", "CLOB", "TEXT"), ColumnKind.TEXT),
    (("BLOB",), ColumnKind.OTHER),
    (("REAL", "FLOA", "DOUB"), ColumnKind.NUMBER),
)
"""SQLite's type affinity rules (datatype3.html, section 3.1), in its order, for type names no
dialect knows (`unsigned big int`, `character varchar(3)`); anything else is NUMERIC."""


def kind_of_declared_type(declared: str) -> ColumnKind:
    """What a SQLite column holds, from its declared type as written."""
    if not declared.strip():
        return ColumnKind.OTHER
    try:
        return column_kind(exp.DataType.build(declared, dialect="sqlite"))
    except (SqlglotError, ValueError):
        upper = declared.upper()
        return next(
            (k for words, k in _AFFINITY if any(w in upper for w in words)), ColumnKind.NUMBER
        )


def _load(con: sqlite3.Connection, ddl: str) -> None:
    """Runs the DDL statement by statement, so an error names the statement and its line."""
    offset = 0
    for number, statement in enumerate(split_script(ddl), start=1):
        offset = ddl.find(statement, offset)
        try:
            con.execute(statement)
        except sqlite3.Error as error:
            code = code_start(statement)
            line = ddl.count("\n", 0, offset + len(statement) - len(code)) + 1
            syntax = "syntax error" in str(error) or "incomplete input" in str(error)
            verb = "does not parse" if syntax else "is refused by SQLite"
            raise SchemaError(
                f"schema DDL {verb}: statement {number} at line {line} "
                f"({code.splitlines()[0][:60]}): {error}"
            ) from None
        offset += len(statement)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _relation(con: sqlite3.Connection, name: str, definition: str | None) -> Table:
    rows = con.execute(f"PRAGMA table_xinfo({_quoted(name)})").fetchall()
    key = tuple(row[1] for row in sorted((r for r in rows if r[5]), key=lambda r: r[5]))
    columns = tuple(
        Column(
            name=row[1],
            sql_type=row[2] or "",
            kind=kind_of_declared_type(row[2] or ""),
            nullable=not (row[3] or row[5]),
            primary_key=bool(row[5]),
        )
        for row in rows
        if row[6] in (0, 2, 3)  # 1 is a hidden column of a virtual table
    )
    unique = tuple(
        tuple(info[2] for info in con.execute(f"PRAGMA index_info({_quoted(index[1])})"))
        for index in con.execute(f"PRAGMA index_list({_quoted(name)})")
        if index[3] == "u"
    )
    return Table(name, columns, key=key, unique=unique, definition=definition)


def _foreign_keys(con: sqlite3.Connection, table: str) -> list[ForeignKey]:
    groups: dict[int, list[tuple[str, str, str | None]]] = defaultdict(list)
    for row in con.execute(f"PRAGMA foreign_key_list({_quoted(table)})"):
        groups[row[0]].append((row[2], row[3], row[4]))
    keys = []
    for _, parts in sorted(groups.items(), reverse=True):  # SQLite lists the last key first
        ref_columns = tuple(to for _, _, to in parts if to is not None)
        keys.append(ForeignKey(table, tuple(c for _, c, _ in parts), parts[0][0], ref_columns))
    return keys


def read_schema(ddl: str) -> SchemaInfo:
    """The schema SQLite builds from `ddl`; raises SchemaError with SQLite's own message."""
    cleaned = clean_ddl(ddl, Dialect.SQLITE)
    con = sqlite3.connect(":memory:")
    try:
        con.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        _load(con, cleaned)
        catalog = con.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE type IN ('table', 'view')"
            " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
        ).fetchall()
        tables: list[Table] = []
        views: list[Table] = []
        warnings: list[str] = []
        declared: list[ForeignKey] = []
        for kind, name, sql in catalog:
            if kind == "table":
                tables.append(_relation(con, name, None))
                declared.extend(_foreign_keys(con, name))
                continue
            try:
                views.append(_relation(con, name, _one_line(sql)))
            except sqlite3.Error as error:
                warnings.append(f"view {name} cannot be read ({error}): left out")
    finally:
        con.close()
    foreign, fk_warnings = checked_foreign_keys(tuple(tables), declared)
    return SchemaInfo(
        dialect=Dialect.SQLITE,
        ddl=cleaned,
        tables=tuple(tables),
        foreign_keys=foreign,
        views=tuple(views),
        warnings=tuple(warnings + fk_warnings),
    )


def _one_line(create_view: str) -> str:
    """A view's CREATE statement on one line, as sqlglot writes it for SQLite; as SQLite stored
    it when sqlglot cannot read it."""
    try:
        return sqlglot.parse_one(create_view, read="sqlite").sql(dialect="sqlite", comments=False)
    except SqlglotError:
        return create_view
