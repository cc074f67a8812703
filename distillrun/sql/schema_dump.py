"""PostgreSQL, MySQL/MariaDB and DuckDB schemas read from DDL, dump output included.

A `pg_dump --schema-only` or `mysqldump --no-data` file is mostly statements the model does not
need (SET, sequences, owners, grants, indexes, comments); they are skipped unread. What defines
the model is read statement by statement, in order, the way the engine applies it:

- CREATE TABLE (inline, table-level and named constraints), ALTER TABLE ... ADD [CONSTRAINT]
  (how dumps and migration tools add every key) and ADD COLUMN;
- CREATE [MATERIALIZED] VIEW, whose columns come from resolving its SELECT against the tables
  before it, DROP TABLE/VIEW (mysqldump creates a stand-in for each view, then drops it);
- CREATE TYPE ... AS ENUM and CREATE DOMAIN, so columns of those types know what they hold.

Names are kept as the engine stores them: PostgreSQL folds unquoted names to lower case.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from sqlglot import exp
from sqlglot.errors import SqlglotError, TokenError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.tokenizer_core import Token, TokenType

from distillrun.api.spec import Dialect
from distillrun.sql.ddl_text import (
    TokenStatement,
    clean_ddl,
    token_statements,
    unwrap_executable_comments,
)
from distillrun.sql.schema import (
    Column,
    ColumnKind,
    ForeignKey,
    SchemaError,
    SchemaInfo,
    Table,
    UserType,
    checked_foreign_keys,
    column_kind,
    for_qualify,
    mapping_schema,
    sqlglot_dialect,
)

_TYPE_STOP = frozenset({"CHECK", "DEFAULT", "NOT", "NULL", "CONSTRAINT", "COLLATE"})
"""Words that end the base type of a CREATE DOMAIN."""


@dataclass
class _Draft:
    """A table or view while the statements that shape it are read."""

    name: str
    namespace: str
    columns: list[Column]
    key: list[str] = field(default_factory=list)
    unique: list[tuple[str, ...]] = field(default_factory=list)
    definition: str | None = None

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)

    def table(self) -> Table:
        key = [c.name for name in self.key if (c := self.column(name)) is not None]
        columns = tuple(
            replace(c, primary_key=True, nullable=False) if c.name in key else c
            for c in self.columns
        )
        return Table(
            self.name,
            columns,
            key=tuple(key),
            unique=tuple(self.unique),
            namespace=self.namespace,
            definition=self.definition,
        )


@contextmanager
def _quiet_sqlglot() -> Iterator[None]:
    """sqlglot logs a warning for each statement it keeps as a raw command; a dump has many."""
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class _Reader:
    def __init__(self, dialect: Dialect, text: str) -> None:
        self.dialect = dialect
        self.text = text
        self.relations: dict[str, _Draft] = {}
        self.types: dict[str, UserType] = {}
        self.declared: list[ForeignKey] = []
        self.warnings: list[str] = []

    # --- names --------------------------------------------------------------------------

    def name(self, node: exp.Expr | None) -> str:
        """An identifier's name as the engine stores it."""
        if not isinstance(node, exp.Identifier):
            return node.name if node is not None else ""
        if self.dialect == Dialect.POSTGRES and not node.quoted:
            return node.name.lower()
        return node.name

    def relation(self, table: exp.Expr) -> _Draft | None:
        name = self.name(table.this if isinstance(table, exp.Table) else table)
        return self.relations.get(name) or next(
            (d for k, d in self.relations.items() if k.lower() == name.lower()), None
        )

    # --- statements ---------------------------------------------------------------------

    def read(self, statement: TokenStatement) -> None:
        leading = (t.text.upper() for t in statement.tokens[:8])
        words = [w for w in leading if w not in ("OR", "REPLACE", "TEMPORARY", "TEMP")]
        head = " ".join(words[:2])
        if head == "CREATE TABLE" or (words[:1] == ["CREATE"] and "TABLE" in words[1:3]):
            self._create_table(statement)
        elif words[:1] == ["CREATE"] and any(t.text.upper() == "VIEW" for t in statement.tokens):
            self._create_view(statement)
        elif head == "CREATE TYPE" or head == "CREATE DOMAIN":
            self._create_type(statement, domain=head == "CREATE DOMAIN")
        elif head == "ALTER TABLE" and "ADD" in (t.text.upper() for t in statement.tokens):
            self._alter_table(statement)
        elif head in ("DROP TABLE", "DROP VIEW"):
            self._drop(statement)

    def _parse(self, statement: TokenStatement, tokens: list[Token] | None = None) -> exp.Expr:
        try:
            with _quiet_sqlglot():
                parsed = (
                    sqlglot_dialect(self.dialect)
                    .parser()
                    .parse(tokens or statement.tokens, self.text)
                )
        except SqlglotError as error:
            raise SchemaError(
                f"schema DDL does not parse at line {statement.line}: {_first_line(error)}"
            ) from None
        node = next((p for p in parsed if p is not None), None)
        if node is None:
            raise SchemaError(f"schema DDL does not parse at line {statement.line}")
        return node

    def _create_table(self, statement: TokenStatement) -> None:
        node = self._parse(statement)
        schema = node.this if isinstance(node, exp.Create) else None
        if not isinstance(schema, exp.Schema) or not isinstance(schema.this, exp.Table):
            if isinstance(node, exp.Create) and isinstance(node.expression, exp.Query):
                self._add_view_like(node, statement, definition=None)
                return
            raise SchemaError(
                f"schema DDL line {statement.line}: CREATE TABLE without a column list is "
                "not understood"
            )
        draft = _Draft(self.name(schema.this.this), self.name(schema.this.args.get("db")), [])
        if draft.name in self.relations:
            if node.args.get("exists"):
                return
            raise SchemaError(f"table {draft.name} is defined twice (line {statement.line})")
        for item in schema.expressions:
            if isinstance(item, exp.ColumnDef):
                self._add_column(draft, item)
            else:
                self._add_constraint(draft, item)
        if not draft.columns:
            raise SchemaError(f"table {draft.name} has no columns (line {statement.line})")
        self.relations[draft.name] = draft

    def _add_column(self, draft: _Draft, column_def: exp.ColumnDef) -> None:
        data_type = column_def.args.get("kind")
        name = self.name(column_def.this)
        not_null = False
        for constraint in column_def.constraints:
            kind = constraint.kind
            if isinstance(kind, exp.PrimaryKeyColumnConstraint):
                draft.key = [name]
            elif isinstance(kind, exp.NotNullColumnConstraint) and not kind.args.get("allow_null"):
                not_null = True
            elif isinstance(kind, exp.UniqueColumnConstraint):
                draft.unique.append((name,))
            elif isinstance(kind, exp.Reference):
                self._reference(draft, (name,), kind)
        draft.columns.append(
            Column(
                name=name,
                sql_type=data_type.sql(dialect=sqlglot_dialect(self.dialect))
                if isinstance(data_type, exp.DataType)
                else "",
                kind=self._kind(data_type),
                nullable=not not_null,
                primary_key=False,
            )
        )

    def _kind(self, data_type: exp.Expr | None) -> ColumnKind:
        if not isinstance(data_type, exp.DataType):
            return ColumnKind.OTHER
        if data_type.this == exp.DataType.Type.USERDEFINED:
            named = data_type.args.get("kind")
            last = named.expression if isinstance(named, exp.Dot) else named
            user_type = self.types.get(last if isinstance(last, str) else self.name(last))
            if user_type is None:
                return ColumnKind.OTHER
            return column_kind(
                exp.DataType.build(user_type.definition, dialect=sqlglot_dialect(self.dialect))
            )
        return column_kind(data_type)

    def _add_constraint(self, draft: _Draft, item: exp.Expr) -> None:
        if isinstance(item, exp.Constraint):
            for inner in item.expressions:
                self._add_constraint(draft, inner)
        elif isinstance(item, exp.PrimaryKey):
            draft.key = [self.name(e) for e in item.expressions]
        elif isinstance(item, exp.ForeignKey):
            reference = item.args.get("reference")
            if isinstance(reference, exp.Reference):
                columns = tuple(self.name(e) for e in item.expressions)
                self._reference(draft, columns, reference)
        elif isinstance(item, exp.UniqueColumnConstraint) and isinstance(item.this, exp.Schema):
            draft.unique.append(tuple(self.name(_ident(e)) for e in item.this.expressions))

    def _reference(self, draft: _Draft, columns: tuple[str, ...], ref: exp.Reference) -> None:
        target = ref.this
        table = target.this if isinstance(target, exp.Schema) else target
        ref_columns = target.expressions if isinstance(target, exp.Schema) else []
        self.declared.append(
            ForeignKey(
                draft.name,
                columns,
                self.name(table.this if isinstance(table, exp.Table) else table),
                tuple(self.name(_ident(c)) for c in ref_columns),
            )
        )

    def _alter_table(self, statement: TokenStatement) -> None:
        node = self._parse(statement)
        if not isinstance(node, exp.Alter) or not isinstance(node.this, exp.Table):
            return
        draft = self.relation(node.this)
        if draft is None:
            self.warnings.append(
                f"line {statement.line}: ALTER TABLE of unknown table {node.this.name}: ignored"
            )
            return
        for action in node.args.get("actions") or []:
            if isinstance(action, exp.ColumnDef):
                self._add_column(draft, action)
            elif isinstance(action, exp.AddConstraint):
                for item in action.expressions:
                    self._add_constraint(draft, item)

    def _create_view(self, statement: TokenStatement) -> None:
        """Everything between CREATE and VIEW (ALGORITHM, DEFINER, SQL SECURITY, MATERIALIZED)
        is dropped, and so is a materialized view's trailing WITH [NO] DATA: what is left is
        a plain CREATE VIEW, which every dialect parses and loads."""
        tokens = statement.tokens
        start = next(i for i, t in enumerate(tokens) if t.text.upper() == "VIEW")
        end = len(tokens)
        if [t.text.upper() for t in tokens[-2:]] == ["NO", "DATA"]:
            end -= 3
        elif [t.text.upper() for t in tokens[-2:]] == ["WITH", "DATA"]:
            end -= 2
        node = self._parse(statement, tokens[:1] + tokens[start:end])
        if isinstance(node, exp.Create) and isinstance(node.expression, exp.Query):
            node.set("properties", None)
            self._add_view_like(
                node,
                statement,
                definition=node.sql(dialect=sqlglot_dialect(self.dialect), comments=False),
            )
        else:
            self.warnings.append(f"line {statement.line}: a view that is not understood: left out")

    def _add_view_like(
        self, node: exp.Create, statement: TokenStatement, definition: str | None
    ) -> None:
        """A view, or a table made by CREATE TABLE ... AS SELECT: columns from its query."""
        target = node.this
        table = target.this if isinstance(target, exp.Schema) else target
        name = self.name(table.this if isinstance(table, exp.Table) else table)
        namespace = self.name(table.args.get("db")) if isinstance(table, exp.Table) else ""
        try:
            columns = self._query_columns(node.expression)
        except SqlglotError as error:
            self.warnings.append(
                f"view {name} (line {statement.line}) cannot be resolved ({error}): left out"
            )
            return
        if isinstance(target, exp.Schema) and target.expressions:
            names = [self.name(_ident(e)) for e in target.expressions]
            columns = [replace(c, name=n) for c, n in zip(columns, names, strict=False)]
        self.relations.pop(name, None)
        self.relations[name] = _Draft(name, namespace, columns, definition=definition)

    def _query_columns(self, query: exp.Expr) -> list[Column]:
        """The output columns of a view's query, typed where the types of its sources tell.

        Named as the query names them (the resolution lower-cases MySQL column names)."""
        copy = for_qualify(query.copy(), self.dialect)
        for table in copy.find_all(exp.Table):
            table.set("db", None)
            table.set("catalog", None)
        info = self.info("")
        dialect = sqlglot_dialect(self.dialect)
        schema = mapping_schema(info)
        with _quiet_sqlglot():
            qualified = qualify(copy, dialect=dialect, schema=schema, quote_identifiers=False)
            typed = annotate_types(qualified, schema=schema, dialect=dialect)
        if not isinstance(typed, exp.Query):
            raise SqlglotError("not a query")
        written = query.selects if isinstance(query, exp.Query) else []
        names = [p.alias_or_name for p in typed.selects]
        if len(written) == len(names) and not any(p.is_star for p in written):
            names = [p.alias_or_name for p in written]
        columns = []
        for name, projection in zip(names, typed.selects, strict=True):
            data_type = projection.type
            known = data_type is not None and data_type.this != exp.DataType.Type.UNKNOWN
            columns.append(
                Column(
                    name=name,
                    sql_type=data_type.sql(dialect=dialect) if known and data_type else "",
                    kind=column_kind(data_type) if known else ColumnKind.OTHER,
                    nullable=True,
                    primary_key=False,
                )
            )
        return columns

    def _create_type(self, statement: TokenStatement, *, domain: bool) -> None:
        tokens = statement.tokens
        as_at = next((i for i, t in enumerate(tokens) if t.token_type == TokenType.ALIAS), None)
        if as_at is None:
            return
        name_tokens = [t for t in tokens[2:as_at] if t.token_type != TokenType.DOT]
        namespace = self._token_name(name_tokens[0]) if len(name_tokens) > 1 else ""
        name = self._token_name(name_tokens[-1])
        rest = tokens[as_at + 1 :]
        if domain:
            stop = next((i for i, t in enumerate(rest) if t.text.upper() in _TYPE_STOP), len(rest))
            rest = rest[:stop]
        elif not rest or rest[0].text.upper() != "ENUM":
            return  # a composite or range type: no column kind to learn from it
        if not rest:
            return
        written = self.text[rest[0].start : rest[-1].end + 1]
        dialect = sqlglot_dialect(self.dialect)
        try:
            definition = exp.DataType.build(written, dialect=dialect).sql(dialect=dialect)
        except (SqlglotError, ValueError):
            definition = " ".join(written.split())
        self.types[name] = UserType(name, definition, is_domain=domain, namespace=namespace)

    def _token_name(self, token: Token) -> str:
        quoted = token.token_type == TokenType.IDENTIFIER
        if self.dialect == Dialect.POSTGRES and not quoted:
            return token.text.lower()
        return token.text

    def _drop(self, statement: TokenStatement) -> None:
        node = self._parse(statement)
        if isinstance(node, exp.Drop):
            for table in node.args.get("tables") or [node.this]:
                if isinstance(table, exp.Table):
                    self.relations.pop(self.name(table.this), None)

    # --- result -------------------------------------------------------------------------

    def info(self, ddl: str) -> SchemaInfo:
        tables = tuple(d.table() for d in self.relations.values() if d.definition is None)
        views = tuple(d.table() for d in self.relations.values() if d.definition is not None)
        foreign, warnings = checked_foreign_keys(tables, self.declared)
        return SchemaInfo(
            dialect=self.dialect,
            ddl=ddl,
            tables=tables,
            foreign_keys=foreign,
            views=views,
            types=tuple(self.types.values()),
            warnings=tuple(self.warnings + warnings),
        )


def _ident(node: exp.Expr) -> exp.Expr:
    """The identifier of a name written as an identifier or a column (`KEY (`a`)` in MySQL)."""
    return node.this if isinstance(node, exp.Column) else node


def _first_line(error: SqlglotError) -> str:
    return str(error).splitlines()[0]


def read_schema(ddl: str, dialect: Dialect) -> SchemaInfo:
    """The schema `ddl` defines in `dialect`; raises SchemaError naming the line at fault."""
    cleaned = clean_ddl(ddl, dialect)
    text = unwrap_executable_comments(cleaned) if dialect == Dialect.MYSQL else cleaned
    reader = _Reader(dialect, text)
    try:
        statements = token_statements(text, dialect)
    except TokenError as error:
        raise SchemaError(f"schema DDL does not parse: {_first_line(error)}") from None
    for statement in statements:
        reader.read(statement)
    return reader.info(cleaned)
