"""Static checks that turn "sqlglot parses it" into "a read-only query over this schema".

sqlglot is a parser, not a validator: it happily parses `SELECT 1 DELETE FROM t` (DELETE
becomes an alias), rewrites `SELECT ... INTO t` into a CREATE, accepts DML inside a CTE, lets
tables it has never heard of through `qualify`, and does not look at the ORDER BY of a UNION.
Each check here closes one such gap and raises `QueryRejected` with the matching `Reason`.

The checks are the first layer only. The sandbox (a separate process with a read-only
database, an authorizer or a locked configuration, and limits) is the boundary; these checks
make rejections early, cheap and precisely classified.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError, TokenError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.schema import MappingSchema
from sqlglot.tokenizer_core import Token, TokenType

from distillrun.api.spec import Dialect
from distillrun.sql.errors import QueryRejected
from distillrun.sql.schema import (
    SchemaInfo,
    Table,
    for_qualify,
    mapping_schema,
    sqlglot_dialect,
)
from distillrun.sql.verdict import Reason

MAX_SQL_CHARS = 100_000
"""Longer query text is refused before tokenizing: no generated question needs it, and a
multi-megabyte string would make the checker itself the bottleneck."""

_WRITES: tuple[type[exp.Expr], ...] = (
    exp.DML,
    exp.DDL,
    exp.Alter,
    exp.Analyze,
    exp.Attach,
    exp.Cache,
    exp.Command,
    exp.Comment,
    exp.Commit,
    exp.Declare,
    exp.Describe,
    exp.Detach,
    exp.Drop,
    exp.Execute,
    exp.Export,
    exp.Get,
    exp.Grant,
    exp.Install,
    exp.Kill,
    exp.LoadData,
    exp.Pragma,
    exp.Put,
    exp.Refresh,
    exp.Revoke,
    exp.Rollback,
    exp.Set,
    exp.Show,
    exp.Summarize,
    exp.Transaction,
    exp.TruncateTable,
    exp.Uncache,
    exp.Use,
)
"""Statement nodes that must not appear anywhere in the tree, not even inside a CTE or a
subquery (`WITH x AS (DELETE ... RETURNING *) SELECT ...`)."""

_STATEMENT_KEYWORDS = frozenset(
    {
        "alter", "analyze", "attach", "begin", "call", "checkpoint", "commit", "copy", "create",
        "deallocate", "delete", "detach", "discard", "drop", "execute", "explain", "export",
        "flush", "grant", "handler", "import", "insert", "install", "kill", "listen", "load",
        "merge", "notify", "pragma", "prepare", "reindex", "reset", "revoke", "rollback",
        "savepoint", "set", "shutdown", "truncate", "unlock", "update", "vacuum",
    }
)  # fmt: skip
"""Unquoted aliases with these names are a second statement glued on without a semicolon:
sqlglot reads `SELECT 1 DELETE FROM t` as `SELECT 1 AS DELETE FROM t`."""

FORBIDDEN_FUNCTIONS: dict[Dialect, frozenset[str]] = {
    Dialect.SQLITE: frozenset(
        {
            "edit", "fsdir", "fts3_tokenizer", "load_extension", "lsmode", "readfile",
            "sha3_query", "sqlite_memstat", "sqlite_stmt", "writefile",
        }
    ),
    Dialect.DUCKDB: frozenset(
        {
            "checkpoint", "current_setting", "force_checkpoint", "getenv", "glob",
            "load_aws_credentials", "query", "query_table", "sniff_csv", "which_secret",
        }
    ),
    Dialect.POSTGRES: frozenset(
        {
            "current_setting", "currval", "cursor_to_xml", "cursor_to_xmlschema",
            "database_to_xml", "database_to_xml_and_xmlschema", "database_to_xmlschema",
            "lastval", "loread", "lowrite", "nextval", "query_to_xml",
            "query_to_xml_and_xmlschema", "query_to_xmlschema", "schema_to_xml",
            "schema_to_xml_and_xmlschema", "schema_to_xmlschema", "set_config", "setval",
            "table_to_xml", "table_to_xml_and_xmlschema", "table_to_xmlschema", "ts_rewrite",
            "ts_stat",
        }
    ),
    Dialect.MYSQL: frozenset(
        {
            "benchmark", "get_lock", "is_free_lock", "is_used_lock", "lib_mysqludf_sys_info",
            "load_file", "master_gtid_wait", "master_pos_wait", "release_all_locks",
            "release_lock", "sleep", "source_pos_wait", "sys_eval", "sys_exec", "sys_get",
            "sys_set",
        }
    ),
}  # fmt: skip
"""Functions that read or write files, reach the network, load code or touch the session,
and PostgreSQL functions that run SQL given as text (`query_to_xml`, `ts_stat`) or write
(`nextval`). The server sandboxes also revoke EXECUTE on them (see `sandbox/postgres.py`)."""

FORBIDDEN_PREFIXES: dict[Dialect, tuple[str, ...]] = {
    Dialect.SQLITE: ("pragma_", "shell_", "sqlar_", "sqlite_db", "zipfile"),
    Dialect.DUCKDB: (
        "delta_", "duckdb_", "ducklake_", "http", "iceberg_", "json_execute", "mysql_",
        "parquet_", "postgres_", "pragma_", "read_", "sqlite_", "st_read",
    ),
    Dialect.POSTGRES: ("dblink", "lo_", "pg_", "txid_"),
    Dialect.MYSQL: (),
}  # fmt: skip
"""Families of such functions (DuckDB's `read_csv_auto`, `read_json_objects`, ...)."""

_PSEUDO_COLUMNS: dict[Dialect, tuple[str, ...]] = {
    Dialect.SQLITE: ("rowid", "oid", "_rowid_"),
    Dialect.DUCKDB: ("rowid",),
    Dialect.POSTGRES: ("ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"),
}
"""Columns every table has without declaring them."""

_DEFAULT_SCHEMAS: dict[Dialect, tuple[str, ...]] = {
    Dialect.SQLITE: ("", "main"),
    Dialect.DUCKDB: ("", "main"),
    Dialect.POSTGRES: ("", "public"),
    Dialect.MYSQL: ("",),
}
"""Qualifiers a schema table may be written with. MySQL has none: the sandbox's database has a
private name, and naming any other database reaches outside the schema."""

_EXECUTABLE_COMMENT = re.compile(r"/\*M?!")
"""MySQL runs the text of `/*! ... */` and `/*M! ... */` comments as SQL; sqlglot skips them."""

_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")
"""Quoted names that read the same unquoted (`"name"`, `[name]`), so the quotes can go."""

_UNRESOLVED = re.compile(r"Column '(?P<name>[^']+)' could not be resolved")


@dataclass(frozen=True)
class CheckedQuery:
    """A query that passed every static check.

    `sql` is the text as given (surrounding whitespace removed) and is what gets executed;
    `normalized` is its canonical form for deduplication; `tables` the schema tables it reads;
    `ordered` whether its top level has an ORDER BY, which makes row order part of its result.
    """

    sql: str
    normalized: str
    tables: tuple[str, ...]
    ordered: bool


def is_forbidden_function(name: str, dialect: Dialect) -> bool:
    """True when the function `name` must not be called in `dialect` (case-insensitive)."""
    lowered = name.lower()
    return lowered in FORBIDDEN_FUNCTIONS[dialect] or lowered.startswith(
        FORBIDDEN_PREFIXES[dialect]
    )


def check_query(sql: str, schema: SchemaInfo) -> CheckedQuery:
    """Runs every static check on `sql` in `schema.dialect`; raises `QueryRejected`.

    Order matters: statement count and kind come first (cheapest, and a second statement must
    be reported as such rather than as whatever error it causes later), then forbidden
    functions and file references, then tables, then columns.
    """
    dialect = schema.dialect
    text = sql.strip()
    try:
        tree = _parse_single(text, dialect)
        if dialect == Dialect.SQLITE and isinstance(tree, exp.Subquery):
            raise QueryRejected(Reason.PARSE, "SQLite does not accept a query in parentheses")
        nodes = list(tree.walk())  # one walk for every check below, not one each
        root = _reject_non_select(tree, nodes)
        if dialect in _DERIVED_ALIAS_REQUIRED:
            _require_derived_aliases(nodes, dialect)
        _reject_keyword_aliases(nodes)
        _reject_forbidden(nodes, dialect, text)
        scopes = _scopes(tree)
        tables = _resolve_tables(nodes, schema, scopes)
        if dialect == Dialect.SQLITE:
            _sqlite_strings_from_double_quotes(schema, text, scopes)
        _reject_alias_references(schema, scopes)
        ordered = _ordered(root)
        qualified = _resolve_columns(tree, nodes, schema, tables)  # rewrites the tree: last
        normalized = _canonical_form(qualified, dialect)
    except RecursionError:
        raise QueryRejected(Reason.PARSE, "query is nested too deeply to check") from None
    return CheckedQuery(sql=text, normalized=normalized, tables=tables, ordered=ordered)


def normalize_sql(sql: str, dialect: Dialect, schema: SchemaInfo | None = None) -> str:
    """Canonical form of `sql` for deduplication; equal forms mean the same query.

    Keywords and function names are upper-cased and unquoted identifiers lower-cased (SQLite
    and DuckDB compare identifiers case-insensitively), whitespace and comments vanish,
    literals are kept as written, columns are qualified, table aliases are renamed by position
    and top-level output aliases, which only name result columns, are renumbered. With a
    `schema`, columns of joined tables are qualified too and `SELECT *` is expanded, which
    makes more equal queries collide: compare only forms made the same way.

    Text that does not parse falls back to case and whitespace folding outside string
    literals, so even broken teacher output deduplicates.
    """
    text = sql.strip()
    try:
        tree = _parse_single(text, dialect)
        if schema is not None and dialect == Dialect.SQLITE:
            _sqlite_strings_from_double_quotes(schema, text, _scopes(tree))
        return _canonical(tree, dialect, schema)
    except (QueryRejected, SqlglotError, RecursionError):
        return _fold(text)


# --- statements -----------------------------------------------------------------------------


def _unencodable_character(text: str) -> str | None:
    """The first character of `text` that has no UTF-8 form, as `U+DCFC`, or None.

    Such a lone surrogate is a non-UTF-8 byte read with `surrogateescape`, or `\\udcfc` in a
    JSON string: no engine driver can send it, and the sandbox worker that tried ended.
    """
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"U+{ord(text[error.start]):04X}"
    return None


def _parse_single(text: str, dialect: Dialect) -> exp.Expr:
    if not text:
        raise QueryRejected(Reason.PARSE, "query is empty")
    if len(text) > MAX_SQL_CHARS:
        raise QueryRejected(
            Reason.FORBIDDEN, f"query is {len(text)} characters long; the limit is {MAX_SQL_CHARS}"
        )
    bad = _unencodable_character(text)
    if bad is not None:
        raise QueryRejected(
            Reason.PARSE,
            f"query text holds {bad}, which is not a character (bytes that were not UTF-8?)",
        )
    tokens = _tokenize(text, dialect)
    _reject_second_statement(tokens, dialect)
    if dialect == Dialect.MYSQL:
        _reject_executable_comments(text, tokens)
    try:
        parsed = sqlglot_dialect(dialect).parser().parse(tokens, text)
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        line, col = first.get("line"), first.get("col")
        where = f" at line {line}, column {col}" if line is not None else ""
        raise QueryRejected(
            Reason.PARSE,
            f"does not parse as {dialect}{where}: {first.get('description', error)}",
            line=line,
            col=col,
        ) from None
    except SqlglotError as error:
        raise QueryRejected(Reason.PARSE, f"does not parse as {dialect}: {error}") from None
    statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    if not statements:
        raise QueryRejected(Reason.PARSE, "query holds no statement (only comments?)")
    return statements[0]


def _tokenize(text: str, dialect: Dialect) -> list[Token]:
    try:
        return sqlglot_dialect(dialect).tokenize(text)
    except TokenError as error:
        raise QueryRejected(Reason.PARSE, f"does not tokenize as {dialect}: {error}") from None


def _reject_second_statement(tokens: list[Token], dialect: Dialect) -> None:
    """Any token after a top-level `;` starts a second statement.

    Working on tokens (not on parse results) means comments and string literals that hold a
    `;` are read the way the dialect's lexer reads them, and a second statement that would
    fail to parse is still reported as a second statement. In SQLite even an empty second
    statement (`SELECT 1;;`) counts: Python's sqlite3 refuses it.
    """
    after_semicolon = False
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON and not (
            after_semicolon and dialect == Dialect.SQLITE
        ):
            after_semicolon = True
        elif after_semicolon:
            raise QueryRejected(
                Reason.MULTIPLE_STATEMENTS,
                f"more than one statement: {token.text!r} at line {token.line}, column "
                f"{token.col} follows a ';'",
                line=token.line,
                col=token.col,
            )


def _reject_executable_comments(text: str, tokens: list[Token]) -> None:
    """MySQL executes `/*! ... */`: SQL there would run without any check having seen it.

    The text between tokens is whitespace and comments, whatever the lexer does with them, so
    the search there cannot be fooled by a `/*!` inside a string literal.
    """
    previous_end = -1
    for token in [*tokens, None]:
        gap = text[previous_end + 1 : token.start if token is not None else len(text)]
        if _EXECUTABLE_COMMENT.search(gap):
            raise QueryRejected(
                Reason.FORBIDDEN,
                "MySQL runs the SQL inside /*! ... */ comments; write it outside the comment",
            )
        if token is not None:
            previous_end = token.end


def _of(nodes: list[exp.Expr], *types: type[exp.Expr]) -> Iterator[Any]:
    """The nodes of the given types, in the order of the walk they came from."""
    return (node for node in nodes if isinstance(node, types))


def _reject_non_select(tree: exp.Expr, nodes: list[exp.Expr]) -> exp.Expr:
    """Returns the query under any wrapping parentheses, or raises NOT_SELECT."""
    root = tree
    while isinstance(root, exp.Subquery):
        root = root.this
    if not isinstance(root, exp.Select | exp.SetOperation):
        kind = tree.key.upper() if not isinstance(tree, exp.Command) else str(tree.this).upper()
        raise QueryRejected(Reason.NOT_SELECT, f"only SELECT queries are allowed, not {kind}")
    for node in nodes:
        if isinstance(node, exp.Into):
            raise QueryRejected(Reason.NOT_SELECT, "SELECT ... INTO writes a table")
        if isinstance(node, _WRITES):
            raise QueryRejected(
                Reason.NOT_SELECT,
                f"a {node.key.upper()} statement inside the query is not allowed",
            )
    return root


_DERIVED_ALIAS_REQUIRED = frozenset({Dialect.POSTGRES, Dialect.MYSQL})
"""Dialects whose servers refuse a subquery in FROM without an alias (PostgreSQL before 16,
the version the sandbox runs; MySQL and MariaDB always)."""


def _require_derived_aliases(nodes: list[exp.Expr], dialect: Dialect) -> None:
    for subquery in _of(nodes, exp.Subquery):
        if isinstance(subquery.parent, exp.From | exp.Join) and not subquery.alias:
            raise QueryRejected(
                Reason.PARSE, f"{dialect} needs an alias for a subquery in FROM: (...) AS t"
            )


def _reject_keyword_aliases(nodes: list[exp.Expr]) -> None:
    for alias in _of(nodes, exp.Alias, exp.TableAlias):
        ident = alias.args.get("alias") if isinstance(alias, exp.Alias) else alias.this
        if (
            isinstance(ident, exp.Identifier)
            and not ident.quoted
            and ident.name.lower() in _STATEMENT_KEYWORDS
        ):
            raise QueryRejected(
                Reason.MULTIPLE_STATEMENTS,
                f"unquoted keyword {ident.name.upper()} used as a name: a second statement "
                "without ';'?",
            )


def _ordered(root: exp.Expr) -> bool:
    node: exp.Expr | None = root
    while node is not None:
        if node.args.get("order") is not None:
            return True
        node = node.this if isinstance(node, exp.Subquery) else None
    return False


# --- functions and file access --------------------------------------------------------------


def _function_names(func: exp.Func) -> set[str]:
    if isinstance(func, exp.Anonymous):
        return {func.name.lower()}
    return {name.lower() for name in func.sql_names()}


def _reject_forbidden(nodes: list[exp.Expr], dialect: Dialect, text: str) -> None:
    for node in _of(nodes, exp.Lock, exp.SessionParameter, exp.PropertyEQ):
        if isinstance(node, exp.Lock):
            raise QueryRejected(
                Reason.FORBIDDEN, "SELECT ... FOR UPDATE/SHARE locks rows; reading needs no lock"
            )
        if isinstance(node, exp.SessionParameter):
            raise QueryRejected(
                Reason.FORBIDDEN, f"server variable @@{node.name} is session state, not data"
            )
        if isinstance(node.this, exp.Parameter):
            raise QueryRejected(
                Reason.FORBIDDEN, f"assigning the session variable @{node.this.name} is not allowed"
            )
    for func in _of(nodes, exp.Func):
        for name in _function_names(func):
            if is_forbidden_function(name, dialect):
                raise QueryRejected(
                    Reason.FORBIDDEN,
                    f"function {name} is not allowed in {dialect}: it reaches files, the "
                    "network or the session",
                )
    for table in _of(nodes, exp.Table):
        if isinstance(table.this, exp.Func):
            name = sorted(_function_names(table.this))[0]
            raise QueryRejected(
                Reason.FORBIDDEN,
                f"table function {name} in FROM is not allowed; read the schema's tables",
            )
        if dialect == Dialect.DUCKDB and _quote_char(table.this, text) == "'":
            raise QueryRejected(
                Reason.FORBIDDEN,
                f"FROM '{table.name}': DuckDB reads a quoted string in FROM as a file or URL",
            )
    for lateral in _of(nodes, exp.Lateral):
        if isinstance(lateral.this, exp.Func):
            raise QueryRejected(Reason.FORBIDDEN, "table functions in LATERAL are not allowed")


def _quote_char(node: exp.Expr | None, text: str) -> str:
    """The character an identifier was written with: `"`, `'`, `[`, a backtick, or ``."""
    if not isinstance(node, exp.Identifier) or not node.quoted:
        return ""
    start = node.meta.get("start")
    return text[start] if isinstance(start, int) and 0 <= start < len(text) else ""


# --- tables ---------------------------------------------------------------------------------


_ALIAS_REUSED = re.compile(r"Alias already used: (?P<alias>.+)")


def _scopes(tree: exp.Expr) -> list[Scope]:
    """sqlglot's scopes of `tree`, each one's sources resolved here (sqlglot resolves them
    lazily and raises on an alias given to two tables, which no reference can then resolve)."""
    try:
        scopes = traverse_scope(tree)
        for scope in scopes:
            scope.selected_sources  # noqa: B018 -- resolved now so its error is mapped here
    except OptimizeError as error:
        reused = _ALIAS_REUSED.search(str(error))
        message = (
            f"alias {reused.group('alias')} names two tables in one FROM"
            if reused is not None
            else str(error)
        )
        raise QueryRejected(Reason.UNKNOWN_COLUMN, message) from None
    return scopes


def _resolve_tables(
    nodes: list[exp.Expr], schema: SchemaInfo, scopes: list[Scope]
) -> tuple[str, ...]:
    """Every table that is not a CTE reference must be a schema table; returns their names.

    CTE references are told apart through sqlglot's scopes (which map a name to the CTE in
    force where it is used), not by name alone: a CTE may shadow a schema table, and a table
    used outside the CTE's reach is the real one.
    """
    cte_refs: set[int] = set()
    for scope in scopes:
        for node, source in scope.selected_sources.values():
            if isinstance(source, Scope) and isinstance(node, exp.Table):
                cte_refs.add(id(node))
    found: set[str] = set()
    for table in _of(nodes, exp.Table):
        if id(table) in cte_refs:
            continue
        qualifier = ".".join(part for part in (table.catalog, table.db) if part)
        ident = table.this
        known = schema.resolve(
            table.name, quoted=isinstance(ident, exp.Identifier) and bool(ident.quoted)
        )
        if known is None or not _reachable(qualifier, known, schema.dialect):
            shown = f"{qualifier}.{table.name}" if qualifier else table.name
            raise QueryRejected(Reason.UNKNOWN_TABLE, f"table {shown} is not in the schema")
        found.add(known.name)
    return tuple(sorted(found))


def _reachable(qualifier: str, table: Table, dialect: Dialect) -> bool:
    """Whether a table written with `qualifier` (`public`, `sales`, none) reaches `table`:
    the default schema of the dialect, or the schema the table was declared in."""
    lowered = qualifier.lower()
    if dialect == Dialect.MYSQL:
        return not lowered  # another database is outside the sandbox's private one
    if table.namespace and lowered == table.namespace.lower():
        return True
    return lowered in _DEFAULT_SCHEMAS[dialect] and (
        not table.namespace or table.namespace.lower() in _DEFAULT_SCHEMAS[dialect]
    )


# --- columns --------------------------------------------------------------------------------


def _column_names(schema: SchemaInfo, table_name: str) -> set[str]:
    table = schema.table(table_name)
    if table is None:
        return set()
    return {c.name.lower() for c in table.columns} | set(_PSEUDO_COLUMNS.get(schema.dialect, ()))


def _outputs(query: exp.Expr) -> list[str] | None:
    """Output column names of a query, or None when they cannot be known (`SELECT *`)."""
    if not isinstance(query, exp.Query):
        return None
    names = query.named_selects
    return None if "*" in names or any(s.is_star for s in query.selects) else names


def _visible_columns(scope: Scope, schema: SchemaInfo) -> set[str] | None:
    """Names a bare column could resolve to here (outer scopes included), None if unknowable.

    Output names count only where given with AS: a bare `"F"` in the select list names no
    output SQLite could resolve it to; it is a string unless a source has a column F.
    """
    names: set[str] = set()
    current: Scope | None = scope
    while current is not None:
        if isinstance(current.expression, exp.Select):
            names.update(
                s.alias.lower() for s in current.expression.selects if isinstance(s, exp.Alias)
            )
        sources = _sources_columns(current, schema)
        if sources is None:
            return None
        names |= sources
        current = current.parent
    return names


def _sources_columns(scope: Scope, schema: SchemaInfo) -> set[str] | None:
    """Columns of everything in a scope's FROM, looking through `SELECT *` of derived tables."""
    names: set[str] = set()
    for node, source in scope.selected_sources.values():
        if isinstance(source, exp.Table):
            names |= _column_names(schema, source.name)
            continue
        names.update(n.lower() for n in _alias_columns(node, source))
        outputs = _outputs(source.expression)
        if outputs is not None:
            names.update(n.lower() for n in outputs)
        elif isinstance(source.expression, exp.Select):
            inner = _sources_columns(source, schema)
            if inner is None:
                return None
            names |= inner | {s.alias_or_name.lower() for s in source.expression.selects}
        else:
            return None
    return names


def _alias_columns(node: exp.Expr, source: Scope) -> Iterator[str]:
    """Column names given in `AS t(a, b)` or `WITH t(a, b) AS (...)`."""
    for owner in (node, source.expression.parent):
        if isinstance(owner, exp.Expression):
            yield from owner.alias_column_names


def _sqlite_strings_from_double_quotes(schema: SchemaInfo, text: str, scopes: list[Scope]) -> None:
    """Rewrites `"US"` into the string 'US' where SQLite would.

    SQLite reads a double-quoted token as an identifier when a column of that name is visible
    and otherwise as a string literal (a legacy rule still on in the default build). Teacher
    models write `WHERE country = "US"` often; without this the query would be rejected as
    an unknown column although SQLite runs it. Brackets and backticks never become strings.
    """
    for scope in scopes:
        visible = _visible_columns(scope, schema)
        if visible is None:
            continue
        for column in scope.columns:
            ident = column.this
            if (
                not column.table
                and isinstance(ident, exp.Identifier)
                and _quote_char(ident, text) == '"'
                and ident.name.lower() not in visible
            ):
                column.replace(exp.Literal.string(ident.name))


@functools.lru_cache(maxsize=16)
def _sqlglot_schema(schema: SchemaInfo, *, pseudo_columns: bool) -> MappingSchema:
    """The schema as `qualify` wants it; with `pseudo_columns`, plus the implicit rowids.

    Cached: building it normalizes every name, which costs as much as checking a small query.
    """
    pseudo = _PSEUDO_COLUMNS.get(schema.dialect, ()) if pseudo_columns else ()
    return mapping_schema(schema, pseudo)


def _resolve_columns(
    tree: exp.Expr, nodes: list[exp.Expr], schema: SchemaInfo, tables: tuple[str, ...]
) -> exp.Expr:
    """Every column must resolve to exactly one source, through aliases, CTEs and subqueries.

    sqlglot's `qualify` does the resolution (it knows each dialect's alias rules); two gaps are
    closed here: the ORDER BY of a set operation, which `qualify` never checks, and the
    message for an ambiguous column, which `qualify` reports as unresolved. The tree is
    qualified in place and returned: the canonical form is made from it, so a query costs one
    `qualify`, not two. Pseudo-columns (`rowid`) join the schema only for a query that names
    one, so `SELECT *` expands to the declared columns.
    """
    _check_set_operation_order(nodes)
    pseudo = _PSEUDO_COLUMNS.get(schema.dialect, ())
    names_pseudo = bool(pseudo) and any(c.name.lower() in pseudo for c in _of(nodes, exp.Column))
    try:
        return qualify(
            for_qualify(tree, schema.dialect),
            dialect=sqlglot_dialect(schema.dialect),
            schema=_sqlglot_schema(schema, pseudo_columns=names_pseudo),
            validate_qualify_columns=True,
            quote_identifiers=False,
        )
    except OptimizeError as error:
        message = str(error)
    match = _UNRESOLVED.search(message)
    if match is not None:
        name = match.group("name").lower()
        owners = [t for t in tables if name in _column_names(schema, t)]
        if len(owners) > 1:
            message = f"column {name} is ambiguous: it is in {', '.join(owners)}"
    raise QueryRejected(Reason.UNKNOWN_COLUMN, message)


_ALIAS_FREE_CLAUSES: dict[Dialect, tuple[type[exp.Expr], ...]] = {
    Dialect.POSTGRES: (exp.Where, exp.Having),
    Dialect.MYSQL: (exp.Where,),
}
"""Clauses where a dialect does not let a name refer to an output alias of the same SELECT
(`SELECT a + 1 AS b FROM t WHERE b > 2`); SQLite and DuckDB allow it everywhere, and sqlglot's
`qualify` resolves such names for every dialect."""


def _names_in_reach(scope: Scope, schema: SchemaInfo) -> tuple[set[str], set[str]] | None:
    """Source columns and output aliases visible in a scope (outer scopes included), or None
    when some source's columns cannot be known (`SELECT *` of an unknown shape)."""
    sources: set[str] = set()
    aliases: set[str] = set()
    current: Scope | None = scope
    while current is not None:
        columns = _sources_columns(current, schema)
        if columns is None:
            return None
        sources |= columns
        if isinstance(current.expression, exp.Select):
            aliases.update(
                s.alias.lower() for s in current.expression.selects if isinstance(s, exp.Alias)
            )
        current = current.parent
    return sources, aliases


def _reject_alias_references(schema: SchemaInfo, scopes: list[Scope]) -> None:
    """A bare name in an alias-free clause (see `_ALIAS_FREE_CLAUSES`) that only an output
    alias could explain is an unknown column to PostgreSQL and MySQL."""
    clauses = _ALIAS_FREE_CLAUSES.get(schema.dialect)
    if clauses is None:
        return
    for scope in scopes:
        reach = _names_in_reach(scope, schema)
        if reach is None:
            continue
        sources, aliases = reach
        select = scope.expression
        for clause in (select.args.get(c.key) for c in clauses):
            if clause is None:
                continue
            for column in clause.find_all(exp.Column):
                name = column.name.lower()
                if (
                    not column.table
                    and column.find_ancestor(exp.Select) is select
                    and name in aliases
                    and name not in sources
                ):
                    raise QueryRejected(
                        Reason.UNKNOWN_COLUMN,
                        f"column {column.name} in {clause.key.upper()} names an output alias, "
                        f"which {schema.dialect} does not allow there; repeat the expression",
                    )


def _leaf_outputs(query: exp.Expr) -> set[str] | None:
    if isinstance(query, exp.SetOperation):
        left, right = _leaf_outputs(query.left), _leaf_outputs(query.right)
        return None if left is None or right is None else left | right
    if isinstance(query, exp.Subquery):
        return _leaf_outputs(query.this)
    outputs = _outputs(query)
    return None if outputs is None else {n.lower() for n in outputs}


def _check_set_operation_order(nodes: list[exp.Expr]) -> None:
    for setop in _of(nodes, exp.SetOperation):
        order = setop.args.get("order")
        names = _leaf_outputs(setop)
        if order is None or names is None:
            continue
        for column in order.find_all(exp.Column):
            if column.find_ancestor(exp.Query) is not setop or column.table:
                continue
            if column.name.lower() not in names:
                raise QueryRejected(
                    Reason.UNKNOWN_COLUMN,
                    f"ORDER BY {column.name}: not a column of the {setop.key.upper()} result",
                )


# --- normalization --------------------------------------------------------------------------


def _canonical(tree: exp.Expr, dialect: Dialect, schema: SchemaInfo | None) -> str:
    try:
        qualified = qualify(
            for_qualify(tree, dialect),
            dialect=sqlglot_dialect(dialect),
            schema=_sqlglot_schema(schema, pseudo_columns=False) if schema else None,
            validate_qualify_columns=False,
            quote_identifiers=False,
        )
    except SqlglotError:
        return tree.sql(dialect=sqlglot_dialect(dialect), comments=False, copy=False)
    return _canonical_form(qualified, dialect)


def _canonical_form(qualified: exp.Expr, dialect: Dialect) -> str:
    """The canonical text of a qualified tree (renames it in place, then consumes it).

    One depth-first walk serves every rewrite below. Identifiers the renamings put in are
    plain `t1`/`c1` names, so unquoting the identifiers of that walk misses none; the ones
    they replace are detached and unquoting them changes nothing. The tree is not used again,
    so it is generated in place (`copy=False`): copying it cost a fifth of a query's time.
    """
    nodes = list(qualified.walk(bfs=False))
    _rename_table_aliases(nodes)
    _renumber_output_aliases(qualified, nodes)
    for ident in _of(nodes, exp.Identifier):
        if ident.quoted and _PLAIN_NAME.fullmatch(ident.name):
            ident.set("quoted", False)
    return qualified.sql(dialect=sqlglot_dialect(dialect), comments=False, copy=False)


_SOURCE_TYPES = (exp.Table, exp.Subquery, exp.Lateral, exp.Unnest, exp.Values)


def _rename_table_aliases(nodes: list[exp.Expr]) -> None:
    """Renames source aliases to t1, t2, ... in order of appearance, consistently everywhere.

    `nodes` is the tree's depth-first walk, which fixes the order of appearance. A bijective
    renaming of alias names cannot change what a query means; after `qualify` every column
    reference names its source by alias, so the references follow along.
    """
    mapping: dict[str, str] = {}
    aliases = [
        a
        for a in _of(nodes, exp.TableAlias)
        if isinstance(a.parent, _SOURCE_TYPES) and isinstance(a.this, exp.Identifier)
    ]
    for alias in aliases:
        mapping.setdefault(alias.name, f"t{len(mapping) + 1}")
    for alias in aliases:
        alias.set("this", exp.to_identifier(mapping[alias.name]))
    for column in _of(nodes, exp.Column):
        if column.table in mapping:
            column.set("table", exp.to_identifier(mapping[column.table]))


def _renumber_output_aliases(tree: exp.Expr, nodes: list[exp.Expr]) -> None:
    """Renames the top-level output aliases to c1, c2, ... (they only name result columns).

    Only when every other bare column of the top-level query was qualified by `qualify`, so
    the only references left to an output alias are those in the top-level ORDER BY. `nodes`
    is the tree's walk: after `qualify` bare columns are rare, so finding them there and
    looking up their ancestors is cheaper than walking the top-level SELECT again.
    """
    root = tree
    while isinstance(root, exp.Subquery):
        root = root.this
    select = root
    while isinstance(select, exp.SetOperation):
        select = select.left
    if not isinstance(select, exp.Select):
        return
    order = root.args.get("order")
    for column in _of(nodes, exp.Column):
        if (
            not column.table
            and _within(column, select)
            and (order is None or column.find_ancestor(exp.Order) is not order)
        ):
            return
    mapping: dict[str, str] = {}
    for position, projection in enumerate(select.expressions, start=1):
        if isinstance(projection, exp.Alias):
            mapping.setdefault(projection.alias, f"c{position}")
            projection.set("alias", exp.to_identifier(f"c{position}"))
    if order is not None:
        for column in order.find_all(exp.Column):
            if not column.table and column.name in mapping:
                column.set("this", exp.to_identifier(mapping[column.name]))


def _within(node: exp.Expr, ancestor: exp.Expr) -> bool:
    """Whether `node` is `ancestor` or lies in its subtree."""
    current: exp.Expr | None = node
    while current is not None and current is not ancestor:
        current = current.parent
    return current is ancestor


_STRING_LITERAL = re.compile(r"('(?:[^']|'')*')")
_WHITESPACE = re.compile(r"\s+")


def _fold(text: str) -> str:
    parts = _STRING_LITERAL.split(text)
    folded = [p if i % 2 else _WHITESPACE.sub(" ", p.lower()) for i, p in enumerate(parts)]
    return "".join(folded).strip().rstrip(";").strip()
