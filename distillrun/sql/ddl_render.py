"""The schema written back as compact DDL for the target dialect: what the student reads.

One statement per line, without comments, defaults or checks, but valid for the engine and
faithful to the model: names quoted where the dialect needs it (`"Leave Requests"`, `"from"`,
mixed case in PostgreSQL), types as the dialect writes them (`TIMESTAMP` in MySQL, `TEXT[]`),
enums, domains, composite and range types declared before use, a composite key as one
constraint, views with their query. The test suite loads this text back into each engine.

Tables are ordered so a referenced table comes first (PostgreSQL, MySQL and DuckDB check
references when a table is created); a key that closes a cycle is added afterwards with ALTER
TABLE where the dialect has it. SQLite checks nothing at CREATE time and keeps the order.
"""

from __future__ import annotations

from sqlglot import exp

from distillrun.api.spec import Dialect
from distillrun.sql.schema import ForeignKey, SchemaInfo, Table, UserType, sqlglot_dialect

_DEFAULT_NAMESPACES = frozenset({"", "public", "main"})
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")

_RESERVED = frozenset(
    {
        "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric",
        "authorization", "binary", "both", "case", "cast", "check", "collate", "collation",
        "column", "concurrently", "constraint", "create", "cross", "current_catalog",
        "current_date", "current_role", "current_schema", "current_time",
        "current_timestamp", "current_user", "default", "deferrable", "desc", "distinct",
        "do", "else", "end", "except", "false", "fetch", "for", "foreign", "freeze", "from",
        "full", "grant", "group", "having", "ilike", "in", "initially", "inner",
        "intersect", "into", "is", "isnull", "join", "lateral", "leading", "left", "like",
        "limit", "localtime", "localtimestamp", "natural", "not", "notnull", "null",
        "offset", "on", "only", "or", "order", "outer", "overlaps", "placing", "primary",
        "references", "returning", "right", "select", "session_user", "similar", "some",
        "symmetric", "system_user", "table", "tablesample", "then", "to", "trailing",
        "true", "union", "unique", "user", "using", "variadic", "verbose", "when", "where",
        "window", "with"
    }
)  # fmt: skip
"""PostgreSQL's reserved words (the SQL standard's core, which SQLite reserves too); MySQL
and DuckDB add their own lists (sqlglot's `RESERVED_KEYWORDS`)."""


def quote(name: str, dialect: Dialect) -> str:
    """`name` as an identifier the engine resolves back to exactly `name`: quoted when it is
    not a plain lower-case word or is one of the dialect's keywords (`from`, `order`)."""
    sg = sqlglot_dialect(dialect)
    plain = (
        bool(name)
        and set(name.lower()) <= _PLAIN
        and not name[0].isdigit()
        and (name == name.lower() or dialect != Dialect.POSTGRES)
        and name.lower() not in _RESERVED
        and name.lower() not in sg.generator_class.RESERVED_KEYWORDS
    )
    return name if plain else exp.to_identifier(name, quoted=True).sql(dialect=sg)


def _qualified(namespace: str, name: str, dialect: Dialect) -> str:
    own = quote(name, dialect)
    return own if namespace in _DEFAULT_NAMESPACES else f"{quote(namespace, dialect)}.{own}"


def _names(columns: tuple[str, ...], dialect: Dialect) -> str:
    return ", ".join(quote(c, dialect) for c in columns)


def _user_type(user_type: UserType, dialect: Dialect) -> str:
    name = _qualified(user_type.namespace, user_type.name, dialect)
    if user_type.is_domain:
        return f"CREATE DOMAIN {name} AS {user_type.definition};"
    return f"CREATE TYPE {name} AS {user_type.definition};"


def _reference(fk: ForeignKey, tables: dict[str, Table], dialect: Dialect) -> str:
    parent = tables[fk.ref_table]
    return (
        f"REFERENCES {_qualified(parent.namespace, parent.name, dialect)}"
        f"({_names(fk.ref_columns, dialect)})"
    )


def _create_table(
    table: Table,
    inline: list[ForeignKey],
    tables: dict[str, Table],
    referenced: set[tuple[str, tuple[str, ...]]],
    dialect: Dialect,
) -> str:
    single_pk = table.key if len(table.key) == 1 else ()
    # MySQL parses a column's own REFERENCES and ignores it: keys go last there.
    in_column = [fk for fk in inline if len(fk.columns) == 1 and dialect != Dialect.MYSQL]
    single_fks = {fk.columns[0]: fk for fk in in_column}
    parts: list[str] = []
    for column in table.columns:
        words = [quote(column.name, dialect)]
        words += [column.sql_type] if column.sql_type else []
        words += ["PRIMARY KEY"] if column.name in single_pk else []
        fk = single_fks.get(column.name)
        words += [_reference(fk, tables, dialect)] if fk is not None else []
        parts.append(" ".join(words))
    if len(table.key) > 1:
        parts.append(f"PRIMARY KEY ({_names(table.key, dialect)})")
    parts += [
        f"UNIQUE ({_names(unique, dialect)})"
        for unique in table.unique
        if (table.name, unique) in referenced and unique != table.key
    ]
    parts += [
        f"FOREIGN KEY ({_names(fk.columns, dialect)}) {_reference(fk, tables, dialect)}"
        for fk in inline
        if fk not in in_column
    ]
    name = _qualified(table.namespace, table.name, dialect)
    return f"CREATE TABLE {name} ({', '.join(parts)});"


def _order(schema: SchemaInfo) -> tuple[list[Table], set[ForeignKey]]:
    """Tables with each referenced table first (stable otherwise), and the keys that close a
    cycle and so cannot be declared inline."""
    by_name = {t.name: t for t in schema.tables}
    if schema.dialect == Dialect.SQLITE:
        return list(schema.tables), set()
    ordered: list[Table] = []
    state: dict[str, str] = {}
    deferred: set[ForeignKey] = set()

    def visit(table: Table) -> None:
        state[table.name] = "open"
        for fk in schema.foreign_keys:
            if fk.table != table.name or fk.ref_table == table.name:
                continue
            seen = state.get(fk.ref_table)
            if seen == "open":
                deferred.add(fk)
            elif seen is None:
                visit(by_name[fk.ref_table])
        state[table.name] = "done"
        ordered.append(table)

    for table in schema.tables:
        if table.name not in state:
            visit(table)
    return ordered, deferred


def render_ddl(schema: SchemaInfo) -> str:
    """The schema as DDL for `schema.dialect`, one statement per line (see the module)."""
    dialect = schema.dialect
    tables = {t.name: t for t in schema.tables}
    ordered, deferred = _order(schema)
    referenced = {(fk.ref_table, fk.ref_columns) for fk in schema.foreign_keys}
    namespaces = {t.namespace for t in schema.relations} | {u.namespace for u in schema.types}
    lines = [
        f"CREATE SCHEMA {quote(n, dialect)};" for n in sorted(namespaces - _DEFAULT_NAMESPACES)
    ]
    lines += [_user_type(u, dialect) for u in schema.types]
    for table in ordered:
        inline = [fk for fk in schema.foreign_keys if fk.table == table.name and fk not in deferred]
        lines.append(_create_table(table, inline, tables, referenced, dialect))
    if dialect != Dialect.DUCKDB:  # DuckDB cannot add a key later; a cycle there is rare
        for fk in sorted(deferred, key=lambda k: (k.table, k.columns)):
            child = tables[fk.table]
            lines.append(
                f"ALTER TABLE {_qualified(child.namespace, child.name, dialect)} ADD FOREIGN KEY"
                f" ({_names(fk.columns, dialect)}) {_reference(fk, tables, dialect)};"
            )
    lines += [f"{view.definition};" for view in schema.views if view.definition]
    return "\n".join(lines)
