"""Schema text made ready for an engine: dump tool noise removed, statements found.

Real schemas come from `sqlite3 .schema`, `pg_dump --schema-only` and `mysqldump --no-data` as
often as from hand-written files. Each tool leaves something the engine (or a plain driver,
which is what the sandboxes use) does not take as SQL: psql meta-commands (`\\restrict` in
recent pg_dump output), pg_dump's emptied search_path, the internal `sqlite_sequence` table
SQLite refuses to have created, a byte-order mark, Windows line ends. `clean_ddl` removes
exactly those, so the DDL the model is built from is the DDL every sandbox loads.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from sqlglot.tokenizer_core import Token, TokenType

from distillrun.api.spec import Dialect

_PSQL_META_LINE = re.compile(r"^[ \t]*\\[A-Za-z!?].*$\n?", re.MULTILINE)
"""A line that starts with a backslash command (`\\restrict`, `\\connect`, `\\.`): psql runs
it, a server never sees it. Schema-only dumps have no COPY data, where such lines could be
data."""

_PG_DUMP_EMPTY_SEARCH_PATH = re.compile(
    r"^SELECT pg_catalog\.set_config\('search_path', '', false\);[ \t]*$\n?", re.MULTILINE
)
"""pg_dump empties the session's search_path (it qualifies every name itself); left in, the
seed rows loaded after the schema in the same session could not name a table unqualified."""

_SQLITE_INTERNAL_TABLE = re.compile(
    r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[\"'`\[]?sqlite_", re.IGNORECASE
)
"""`CREATE TABLE sqlite_sequence(name,seq)` and its kind: `.schema` prints them, SQLite makes
them itself and refuses them ("object name reserved for internal use")."""

_MYSQL_EXECUTABLE_COMMENT = re.compile(r"/\*M?!(\d{5,6})?\s?(.*?)\*/", re.DOTALL)
"""`/*!50001 CREATE VIEW ... */`: MySQL and MariaDB run the text inside (mysqldump wraps its
views and session settings in them) when their version is at least the number."""

_NEVER_RUN_VERSION = 999999
"""`/*M!999999\\- enable the sandbox mode */` (MariaDB 11 dumps) is for the mariadb client
only: no server is that new, so none runs it."""


def split_script(script: str) -> list[str]:
    """Statements of a SQLite script, split where SQLite's own tokenizer ends one.

    `sqlite3.complete_statement` knows SQLite's strings, comments and trigger bodies, so a
    `;` inside any of them never splits.
    """
    statements: list[str] = []
    start = 0
    for position, char in enumerate(script):
        if char == ";" and sqlite3.complete_statement(script[start : position + 1]):
            statements.append(script[start : position + 1].strip())
            start = position + 1
    rest = script[start:].strip()
    if rest:
        statements.append(rest)
    return statements


def normalize_text(text: str) -> str:
    """Without a leading byte-order mark, with `\\n` line ends (so line numbers are right)."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def clean_ddl(ddl: str, dialect: Dialect) -> str:
    """The DDL as the sandbox of `dialect` loads it (see the module docstring)."""
    text = normalize_text(ddl)
    if dialect == Dialect.POSTGRES:
        return _PG_DUMP_EMPTY_SEARCH_PATH.sub("", _PSQL_META_LINE.sub("", text))
    if dialect == Dialect.SQLITE and _SQLITE_INTERNAL_TABLE.search(text):
        kept = [s for s in split_script(text) if not _SQLITE_INTERNAL_TABLE.match(code_start(s))]
        return "\n".join(kept) + "\n"
    return text


_LEADING_COMMENTS = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)


def code_start(statement: str) -> str:
    """The statement from its first token on (leading comments and blanks skipped)."""
    skipped = _LEADING_COMMENTS.match(statement)
    return statement[skipped.end() if skipped else 0 :]


def unwrap_executable_comments(ddl: str) -> str:
    """MySQL DDL with its `/*! ... */` comments replaced by their text, as the server reads it."""

    def text(match: re.Match[str]) -> str:
        version = match.group(1)
        return "" if version and int(version) >= _NEVER_RUN_VERSION else match.group(2)

    return _MYSQL_EXECUTABLE_COMMENT.sub(text, ddl)


@dataclass(frozen=True)
class TokenStatement:
    """One statement of a script as the dialect's lexer reads it: its tokens (comments and
    the closing `;` left out) and whether a `;` closed it."""

    tokens: list[Token]
    closed: bool

    @property
    def line(self) -> int:
        return self.tokens[0].line

    def text(self, script: str) -> str:
        return script[self.tokens[0].start : self.tokens[-1].end + 1]


def token_statements(script: str, dialect: Dialect) -> list[TokenStatement]:
    """The statements of `script`, split at top-level `;` (never inside a string or comment).

    Raises sqlglot's TokenError when the text does not tokenize (an unclosed string).
    """
    from distillrun.sql.schema import sqlglot_dialect

    statements: list[TokenStatement] = []
    current: list[Token] = []
    for token in sqlglot_dialect(dialect).tokenize(script):
        if token.token_type != TokenType.SEMICOLON:
            current.append(token)
        elif current:
            statements.append(TokenStatement(current, closed=True))
            current = []
    if current:
        statements.append(TokenStatement(current, closed=False))
    return statements
