"""A CREATE TABLE that sqlglot cannot parse whole, read one element at a time.

sqlglot knows most of each dialect's DDL, not all of it: PostgreSQL's `bit varying(n)`,
MySQL's spatial types (`point`, `polygon`), MariaDB's `inet6` and `COMPRESSED` columns, a
partition list with per-partition options, `WITH SYSTEM VERSIONING`. The engine loads them,
so distillrun must too. Such a statement is cut into its head (`CREATE TABLE name`), its
elements (the column definitions and table constraints inside the outer parentheses, split at
top-level commas) and its tail (table options), and each element is parsed alone:

- a column whose type sqlglot does not know is parsed with a stand-in type and keeps its type
  as written (`point`), of no known kind; modifiers that still do not parse are dropped, unless
  they declare a key;
- of the tail, only PostgreSQL's INHERITS shapes the model (the parents' columns); storage,
  partitioning and versioning options do not, and are dropped when they do not parse.

An element that cannot be read even so raises SchemaError naming the table, its line and the
element's text.
"""

from __future__ import annotations

from itertools import pairwise

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import Token, TokenType

from distillrun.api.spec import Dialect
from distillrun.sql.ddl_text import TokenStatement
from distillrun.sql.schema import SchemaError, sqlglot_dialect

_TABLE_CONSTRAINT = frozenset(
    {
        "CONSTRAINT", "PRIMARY", "FOREIGN", "UNIQUE", "CHECK", "KEY", "INDEX", "FULLTEXT",
        "SPATIAL", "EXCLUDE", "LIKE", "PERIOD",
    }
)  # fmt: skip
"""Words that start a table element that is not a column."""

_COLUMN_MODIFIER = frozenset(
    {
        "NOT", "NULL", "DEFAULT", "PRIMARY", "REFERENCES", "UNIQUE", "CHECK", "COLLATE",
        "GENERATED", "AS", "CONSTRAINT", "COMMENT", "AUTO_INCREMENT", "ON", "CHARACTER",
        "CHARSET", "INVISIBLE", "COMPRESSED", "KEY", "IDENTITY", "STORAGE", "COMPRESSION",
        "VIRTUAL", "PERSISTENT", "STORED",
    }
)  # fmt: skip
"""Words that end a column's type and start its modifiers (after the type's first word, which
may be one of them: `character varying`)."""

_KEY_WORDS = frozenset({"PRIMARY", "FOREIGN", "REFERENCES", "UNIQUE", "LIKE"})
"""Words of an element that shapes the model (a key, copied columns): never dropped. Other
table constraints (CHECK, indexes, EXCLUDE) that do not parse are dropped: they shape
nothing a query can read."""

_STAND_IN_TYPE = "TEXT"


def _span(text: str, tokens: list[Token]) -> str:
    return text[tokens[0].start : tokens[-1].end + 1] if tokens else ""


def _word(token: Token) -> str:
    """A keyword token's first word, upper-cased (the lexer makes one token of `PRIMARY KEY`);
    empty for a quoted name or a string."""
    if token.token_type in (TokenType.IDENTIFIER, TokenType.STRING) or not token.text.strip():
        return ""
    return token.text.split()[0].upper()


def declares_key(tokens: list[Token]) -> bool:
    """Whether the tokens declare a key or take another table's columns."""
    return any(_word(t) in _KEY_WORDS for t in tokens)


def _matching_paren(tokens: list[Token], open_at: int) -> int | None:
    depth = 0
    for index in range(open_at, len(tokens)):
        kind = tokens[index].token_type
        depth += kind == TokenType.L_PAREN
        depth -= kind == TokenType.R_PAREN
        if depth == 0:
            return index
    return None


def _application_time_key(tokens: list[Token]) -> bool:
    """Whether the tokens declare MariaDB's application-time key (`UNIQUE (id, p WITHOUT
    OVERLAPS)`): its columns are unique only among rows whose periods overlap, so it makes no
    column unique and is no part of the model."""
    words = " ".join(token.text.upper() for token in tokens).split()
    return any(a == "WITHOUT" and b == "OVERLAPS" for a, b in pairwise(words))


def key_prefix(tokens: list[Token]) -> list[Token] | None:
    """The tokens of a key declaration up to the end of its column list, without what may
    follow (`MATCH FULL`, `ON DELETE SET NULL (a)`, `NOT VALID`, `WITHOUT OVERLAPS`): what
    the model needs of a key, and all of it sqlglot parses. None when no key is declared."""
    words = [_word(t) for t in tokens]
    if "REFERENCES" in words:
        at = words.index("REFERENCES") + 1  # the referenced table's name, maybe qualified
        while at + 2 < len(tokens) and tokens[at + 1].token_type == TokenType.DOT:
            at += 2
        if at + 1 < len(tokens) and tokens[at + 1].token_type == TokenType.L_PAREN:
            at = _matching_paren(tokens, at + 1) or at
        return tokens[: at + 1]
    start = next((i for i, w in enumerate(words) if w in ("PRIMARY", "UNIQUE")), None)
    open_at = next(
        (i for i in range(start or 0, len(tokens)) if tokens[i].token_type == TokenType.L_PAREN),
        None,
    )
    close_at = _matching_paren(tokens, open_at) if start is not None and open_at else None
    return tokens[: close_at + 1] if close_at is not None else None


def _split_elements(tokens: list[Token]) -> list[list[Token]]:
    elements: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        depth += token.token_type == TokenType.L_PAREN
        depth -= token.token_type == TokenType.R_PAREN
        if token.token_type == TokenType.COMMA and depth == 0:
            elements.append([])
        else:
            elements[-1].append(token)
    return [e for e in elements if e]


class _Statement:
    """One CREATE TABLE's text and the parse of its pieces."""

    def __init__(self, statement: TokenStatement, text: str, dialect: Dialect) -> None:
        self.statement = statement
        self.text = text
        self.dialect = dialect

    def parse(self, sql: str) -> exp.Create | None:
        try:
            node: exp.Expr = exp.maybe_parse(sql, dialect=sqlglot_dialect(self.dialect))
        except SqlglotError:
            return None
        return node if isinstance(node, exp.Create) else None

    def refuse(self, table: str, element: list[Token], why: str) -> SchemaError:
        shown = " ".join(_span(self.text, element).split())
        return SchemaError(
            f"schema DDL line {element[0].line}: table {table}: {why}: {shown[:120]}"
        )


def _column(piece: _Statement, head: str, table: str, element: list[Token]) -> exp.Expr:
    """A column definition whose type sqlglot does not know: parsed with a stand-in type,
    then given its type as written."""
    name, rest = element[0], element[1:]
    type_end = next(
        (i for i in range(1, len(rest)) if _word(rest[i]) in _COLUMN_MODIFIER), len(rest)
    )
    written = " ".join(_span(piece.text, rest[:type_end]).split())
    modifiers = rest[type_end:]
    attempts = [_span(piece.text, modifiers)]
    if not declares_key(modifiers):
        attempts.append("")  # modifiers sqlglot cannot read either, and no key among them
    for attempt in attempts:
        column = f"{_span(piece.text, [name])} {_STAND_IN_TYPE} {attempt}"
        node = piece.parse(f"{head} ({column})")
        found = node.find(exp.ColumnDef) if node is not None else None
        if found is not None:
            if written:
                found.set("kind", exp.DataType(this=exp.DataType.Type.USERDEFINED, kind=written))
            else:
                found.set("kind", None)
            return found
    raise piece.refuse(table, element, "a column definition that cannot be read")


def _tail(piece: _Statement, head: str, tokens: list[Token]) -> exp.Properties | None:
    """The table options that shape the model (PostgreSQL's INHERITS), else None."""
    if not tokens:
        return None
    node = piece.parse(f"{head} (stand_in INT) {_span(piece.text, tokens)}")
    if node is None:
        at = next((i for i, t in enumerate(tokens) if t.text.upper() == "INHERITS"), None)
        close = _matching_paren(tokens, at + 1) if at is not None else None
        if at is None or close is None:
            return None  # storage, partitioning, versioning: not part of the model
        node = piece.parse(f"{head} (stand_in INT) {_span(piece.text, tokens[at : close + 1])}")
    properties = node.args.get("properties") if node is not None else None
    return properties if isinstance(properties, exp.Properties) else None


def parse_by_elements(statement: TokenStatement, text: str, dialect: Dialect) -> exp.Create | None:
    """The CREATE TABLE `statement` of `text`, read element by element (see the module);
    None when it has no column list in balanced parentheses after a name sqlglot reads."""
    piece = _Statement(statement, text, dialect)
    tokens = statement.tokens
    open_at = next((i for i, t in enumerate(tokens) if t.token_type == TokenType.L_PAREN), None)
    close_at = _matching_paren(tokens, open_at) if open_at is not None else None
    if open_at is None or close_at is None:
        return None
    head = _span(text, tokens[:open_at])
    shell = piece.parse(f"{head} (stand_in INT)")
    target = shell.this if shell is not None else None
    if shell is None or not isinstance(target, exp.Schema):
        return None
    table = target.this.name if isinstance(target.this, exp.Table) else head
    items: list[exp.Expr] = []
    for element in _split_elements(tokens[open_at + 1 : close_at]):
        node = piece.parse(f"{head} ({_span(text, element)})")
        schema = node.this if node is not None else None
        if not (isinstance(schema, exp.Schema) and schema.expressions):
            if _word(element[0]) not in _TABLE_CONSTRAINT:
                items.append(_column(piece, head, table, element))
                continue
            if not declares_key(element) or _application_time_key(element):
                continue  # a CHECK, an index sqlglot does not know: no part of the model
            key = key_prefix(element)
            node = piece.parse(f"{head} ({_span(text, key)})") if key else None
            schema = node.this if node is not None else None
        if not (isinstance(schema, exp.Schema) and schema.expressions):
            raise piece.refuse(table, element, "a key declaration that cannot be read")
        items.extend(schema.expressions)
    target.set("expressions", items)
    shell.set("properties", _tail(piece, head, tokens[close_at + 1 :]))
    return shell
