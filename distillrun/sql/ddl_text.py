"""Schema text made ready for an engine: dump tool noise removed, statements found.

Real schemas come from `sqlite3 .schema`, `pg_dump --schema-only` and `mysqldump --no-data` as
often as from hand-written files. Each tool leaves something the engine (or a plain driver,
which is what the sandboxes use) does not take as SQL, or that only the server the dump came
from takes: psql meta-commands (`\\restrict` in recent pg_dump output), pg_dump's emptied
search_path, owners and grants naming that server's roles, mysqldump's DEFINER accounts, the
internal `sqlite_sequence` table SQLite refuses to have created, a byte-order mark, Windows line
ends. `clean_ddl` removes exactly those (keeping every line, so errors name the line of the
file), and the DDL the model is built from is the DDL every sandbox loads. The mysql client's
`DELIMITER` commands stay: the sandbox cuts statements where the client would
(`client_blocks`), and the schema reader skips what they delimit (`without_client_blocks`).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from sqlglot.tokenizer_core import Token, TokenType

from distillrun.api.spec import Dialect

_PSQL_META_LINE = re.compile(r"^[ \t]*\\[A-Za-z!?].*$", re.MULTILINE)
"""A line that starts with a backslash command (`\\restrict`, `\\connect`, `\\.`): psql runs
it, a server never sees it. Schema-only dumps have no COPY data, where such lines could be
data."""

_PG_DUMP_EMPTY_SEARCH_PATH = re.compile(
    r"^SELECT pg_catalog\.set_config\('search_path', '', false\);[ \t]*$", re.MULTILINE
)
"""pg_dump empties the session's search_path (it qualifies every name itself); left in, the
seed rows loaded after the schema in the same session could not name a table unqualified."""

_PG_PRIVILEGE_STATEMENT = re.compile(
    r"^[ \t]*(?:ALTER\b[^;]*?\bOWNER\s+TO\b|GRANT\b|REVOKE\b|ALTER\s+DEFAULT\s+PRIVILEGES\b)"
    r"(?:[^;'\"]|'[^']*'|\"[^\"]*\")*;",
    re.IGNORECASE | re.MULTILINE,
)
"""Ownership and privileges (`ALTER TABLE x OWNER TO app`, `GRANT SELECT ... TO analyst`), as
pg_dump writes them without --no-owner --no-privileges: they name roles of the server the dump
came from, which the sandbox server lacks, and a read-only sandbox grants its own reader."""

_MYSQL_DEFINER = re.compile(
    r"\bDEFINER\s*=\s*(?:`[^`]*`|'[^']*'|\"[^\"]*\"|[\w.$-]+)"
    r"(?:\s*@\s*(?:`[^`]*`|'[^']*'|\"[^\"]*\"|[\w.%$-]+))?",
    re.IGNORECASE,
)
"""`DEFINER=`app`@`%`` on mysqldump's views and triggers: an account of the server the dump
came from; the sandbox would refuse it or fail every query on the view. Without it the
sandbox's administrator, who creates them, is their definer."""

_MYSQL_DELIMITER_COMMAND = re.compile(r"^[ \t]*DELIMITER[ \t]+(\S+)[ \t]*$", re.I | re.M)
"""The mysql client's `DELIMITER ;;`: until the next one, statements (trigger and routine
bodies, whose `;` are their own) end with that text. No server sees the command."""

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


def _blank(match: re.Match[str]) -> str:
    """What replaces removed text: its line ends alone, so later line numbers stay right."""
    return "\n" * match.group(0).count("\n")


def clean_ddl(ddl: str, dialect: Dialect) -> str:
    """The DDL as the sandbox of `dialect` loads it (see the module docstring)."""
    text = normalize_text(ddl)
    if dialect == Dialect.POSTGRES:
        text = _PG_DUMP_EMPTY_SEARCH_PATH.sub("", _PSQL_META_LINE.sub("", text))
        return _PG_PRIVILEGE_STATEMENT.sub(_blank, text)
    if dialect == Dialect.MYSQL:
        return _MYSQL_DEFINER.sub("", text)
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


def client_blocks(script: str) -> list[tuple[int, int, str]]:
    """A MySQL client script cut at its DELIMITER commands: `(start, end, delimiter)` of each
    stretch of text between them, in order (the command lines belong to none)."""
    blocks: list[tuple[int, int, str]] = []
    start, delimiter = 0, ";"
    for command in _MYSQL_DELIMITER_COMMAND.finditer(script):
        blocks.append((start, command.start(), delimiter))
        start, delimiter = command.end(), command.group(1)
    blocks.append((start, len(script), delimiter))
    return blocks


def without_client_blocks(script: str) -> str:
    """The script with its DELIMITER commands and what they delimit blanked out (line ends
    kept): triggers, routines and events, which define no table a query reads."""
    kept = [
        script[start:end] if delimiter == ";" else "\n" * script.count("\n", start, end)
        for start, end, delimiter in client_blocks(script)
    ]
    commands = [_blank(m) for m in _MYSQL_DELIMITER_COMMAND.finditer(script)]
    return "".join(part for pair in zip(kept, [*commands, ""], strict=True) for part in pair)


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
