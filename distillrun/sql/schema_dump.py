"""PostgreSQL, MySQL/MariaDB and DuckDB schemas read from DDL, dump output included.

A `pg_dump --schema-only` or `mysqldump --no-data` file is mostly statements the model does not
need (SET, sequences, owners, grants, indexes, comments); they are skipped unread. What defines
the model is read statement by statement, in order, the way the engine applies it:

- CREATE TABLE (inline, table-level and named constraints; a parent's columns through
  INHERITS, PARTITION OF and LIKE), ALTER TABLE ... ADD [CONSTRAINT] (how dumps and migration
  tools add every key) and ADD COLUMN. What sqlglot cannot parse whole is read element by
  element (`ddl_elements`), and a key by its column list alone (`ddl_elements.key_prefix`);
  what cannot be read even so is refused naming its line;
- CREATE [MATERIALIZED] VIEW, whose columns come from resolving its SELECT against the tables
  before it, DROP TABLE/VIEW (mysqldump creates a stand-in for each view, then drops it);
- CREATE TYPE (enum, composite, range) and CREATE DOMAIN, so columns of those types know what
  they hold and the rendered DDL declares them.

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
from distillrun.sql.ddl_elements import declares_key, key_prefix, parse_by_elements
from distillrun.sql.ddl_text import (
    TokenStatement,
    clean_ddl,
    token_statements,
    unwrap_executable_comments,
    without_client_blocks,
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

    def _parse_create_table(self, statement: TokenStatement) -> exp.Create:
        """The statement parsed whole, else element by element (`ddl_elements`)."""
        whole: SchemaError | None = None
        try:
            node = self._parse(statement)
        except SchemaError as error:
            node, whole = None, error
        if isinstance(node, exp.Create):
            return node
        with _quiet_sqlglot():
            by_elements = parse_by_elements(statement, self.text, self.dialect)
        if by_elements is None:
            raise whole or SchemaError(
                f"schema DDL line {statement.line}: a CREATE TABLE that is not understood"
            )
        return by_elements

    def _create_table(self, statement: TokenStatement) -> None:
        node = self._parse_create_table(statement)
        target = node.this
        if isinstance(node.expression, exp.Query):
            self._add_view_like(node, statement, definition=None)
            return
        table = target.this if isinstance(target, exp.Schema) else target
        if not isinstance(table, exp.Table):
            raise SchemaError(f"schema DDL line {statement.line}: a CREATE TABLE not understood")
        draft = _Draft(self.name(table.this), self.name(table.args.get("db")), [])
        if draft.name in self.relations:
            if node.args.get("exists"):
                return
            raise SchemaError(f"table {draft.name} is defined twice (line {statement.line})")
        properties = node.args.get("properties")
        for source in properties.expressions if isinstance(properties, exp.Properties) else []:
            self._copy_columns(draft, source, statement)
        for item in target.expressions if isinstance(target, exp.Schema) else []:
            if isinstance(item, exp.ColumnDef):
                self._add_column(draft, item)
            elif isinstance(item, exp.LikeProperty):
                self._copy_columns(draft, item, statement)
            else:
                self._add_constraint(draft, item)
        if not draft.columns:
            raise SchemaError(f"table {draft.name} has no columns (line {statement.line})")
        self.relations[draft.name] = draft

    def _copy_columns(self, draft: _Draft, source: exp.Expr, statement: TokenStatement) -> None:
        """The columns a table takes from others: PostgreSQL's INHERITS (each parent's, in
        order), PARTITION OF and LIKE; MySQL's `CREATE TABLE t LIKE other` (with its key)."""
        if isinstance(source, exp.InheritsProperty):
            parents = list(source.expressions)
        elif isinstance(source, exp.PartitionedOfProperty | exp.LikeProperty):
            parents = [source.this]
        else:
            return
        for parent in parents:
            found = self.relation(parent)
            if found is None:
                raise SchemaError(
                    f"schema DDL line {statement.line}: table {draft.name} takes the columns "
                    f"of {parent.sql(dialect=sqlglot_dialect(self.dialect))}, which is not "
                    "defined before it"
                )
            draft.columns += [c for c in found.columns if draft.column(c.name) is None]
            if isinstance(source, exp.PartitionedOfProperty) or _copies_keys(source, self.dialect):
                draft.key, draft.unique = list(found.key), list(found.unique)

    def _add_column(self, draft: _Draft, column_def: exp.ColumnDef) -> None:
        data_type = column_def.args.get("kind")
        name = self.name(column_def.this)
        not_null = False
        for constraint in column_def.constraints:
            kind = constraint.args.get("kind")  # `.kind` raises on some (MySQL's ZEROFILL)
            if isinstance(kind, exp.PrimaryKeyColumnConstraint):
                draft.key = [name]
            elif isinstance(kind, exp.NotNullColumnConstraint) and not kind.args.get("allow_null"):
                not_null = True
            elif isinstance(kind, exp.UniqueColumnConstraint):
                draft.unique.append((name,))
            elif isinstance(kind, exp.Reference):
                self._reference(draft, (name,), kind)
        column = Column(
            name=name,
            sql_type=data_type.sql(dialect=sqlglot_dialect(self.dialect))
            if isinstance(data_type, exp.DataType)
            else "",
            kind=self._kind(data_type),
            nullable=not not_null,
            primary_key=False,
        )
        inherited = draft.column(name)  # PostgreSQL merges a column declared again
        if inherited is None:
            draft.columns.append(column)
        else:
            draft.columns[draft.columns.index(inherited)] = replace(column, name=inherited.name)

    def _kind(self, data_type: exp.Expr | None) -> ColumnKind:
        if not isinstance(data_type, exp.DataType):
            return ColumnKind.OTHER
        if data_type.this == exp.DataType.Type.USERDEFINED:
            named = data_type.args.get("kind")
            last = named.expression if isinstance(named, exp.Dot) else named
            user_type = self.types.get(last if isinstance(last, str) else self.name(last))
            if user_type is None:
                return ColumnKind.OTHER
            try:
                dialect = sqlglot_dialect(self.dialect)
                return column_kind(exp.DataType.build(user_type.definition, dialect=dialect))
            except (SqlglotError, ValueError):
                return ColumnKind.OTHER  # a composite or range type
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

    def _parse_alter(self, statement: TokenStatement) -> exp.Expr | None:
        """The ALTER TABLE parsed whole; else, when it adds a key, up to the end of the key's
        column list (`ddl_elements.key_prefix`). Other alterations sqlglot cannot read
        (identity options, partitions, replica identity) shape nothing here: None."""
        try:
            node: exp.Expr | None = self._parse(statement)
        except SchemaError:
            node = None
        if isinstance(node, exp.Alter):
            return node
        words = [t.text.upper() for t in statement.tokens]
        added = statement.tokens[words.index("ADD") + 1 :]
        adds_column = bool(added) and added[0].text.upper() == "COLUMN"
        key = key_prefix(statement.tokens) if declares_key(added) else None
        if key is None and not adds_column:
            return None
        try:
            node = self._parse(statement, key) if key else None
        except SchemaError:
            node = None
        if isinstance(node, exp.Alter):
            return node
        shown = " ".join(statement.text(self.text).split())
        raise SchemaError(f"schema DDL line {statement.line}: cannot be read: {shown[:120]}")

    def _alter_table(self, statement: TokenStatement) -> None:
        node = self._parse_alter(statement)
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
        if not rest:
            return
        written = self.text[rest[0].start : rest[-1].end + 1]
        dialect = sqlglot_dialect(self.dialect)
        try:  # an enum or a domain's base type; a composite or range type stays as written
            definition = exp.DataType.build(written, dialect=dialect).sql(dialect=dialect)
        except (SqlglotError, ValueError):
            definition = " ".join(written.split()).replace("( ", "(").replace(" )", ")")
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


def _copies_keys(source: exp.Expr, dialect: Dialect) -> bool:
    """Whether a LIKE copies the keys: MySQL's always (with every index), PostgreSQL's with
    INCLUDING INDEXES or INCLUDING ALL."""
    if not isinstance(source, exp.LikeProperty):
        return False
    if dialect == Dialect.MYSQL:
        return True
    return any(
        isinstance(o, exp.Property)
        and o.name.upper() == "INCLUDING"
        and o.text("value").upper() in ("ALL", "INDEXES")
        for o in source.expressions
    )


def _ident(node: exp.Expr) -> exp.Expr:
    """The identifier of a name written as an identifier or a column (`KEY (`a`)` in MySQL)."""
    return node.this if isinstance(node, exp.Column) else node


def _first_line(error: SqlglotError) -> str:
    return str(error).splitlines()[0]


def read_schema(ddl: str, dialect: Dialect) -> SchemaInfo:
    """The schema `ddl` defines in `dialect`; raises SchemaError naming the line at fault."""
    cleaned = clean_ddl(ddl, dialect)
    mysql = dialect == Dialect.MYSQL
    text = unwrap_executable_comments(without_client_blocks(cleaned)) if mysql else cleaned
    reader = _Reader(dialect, text)
    try:
        statements = token_statements(text, dialect)
    except TokenError as error:
        raise SchemaError(f"schema DDL does not parse: {_first_line(error)}") from None
    for statement in statements:
        reader.read(statement)
    return reader.info(cleaned)
