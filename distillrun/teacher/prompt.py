"""What an LLM teacher is asked, the same for every provider.

A request is built in two parts. The system prompt holds everything that is the same for every
shard of a run (the task, the dialect, the schema DDL, the seed questions, the rules) and is
marked for prompt caching, so after the first call a shard pays the cache-read price for it. The
DDL is the text the student reads (`sql.ddl_render`): rendered in the target dialect, so it loads
in the engine, and the same, so the teacher writes no query from information the student never
sees. The user message is what differs per shard: how many examples, and which tables and SQL
constructs to lean on. That steering walks through the schema's tables and a list of constructs
by shard index, so coverage is spread evenly over a run and every shard's request is a pure
function of its inputs (shard keys stay meaningful).

The answer comes back through one forced tool call whose JSON schema is `EXAMPLES_TOOL`; the
parser (`teacher.parsing`) is tolerant of everything else a model may send instead.
`max_tokens` is sized per example, tight as the rate limits want (output tokens are reserved
from it at request start).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from distillrun.api.spec import Dialect
from distillrun.sql.constructs import CONSTRUCTS as CONSTRUCT_WORDS
from distillrun.sql.ddl_render import render_ddl
from distillrun.teacher.base import ShardRequest

TOOL_NAME = "record_examples"

OUTPUT_TOKENS_PER_EXAMPLE = {True: 170, False: 110}
"""`max_tokens` per asked-for example, with and without an explanation (a question, a query of a
few joins and a two-sentence explanation stay well under it)."""
OUTPUT_TOKENS_OVERHEAD = 200
"""`max_tokens` on top, for the tool-call framing."""
SEED_QUESTIONS_IN_SYSTEM = 40
"""Seed questions shown in the cached system prompt; more are rotated through shard messages."""
SEED_QUESTIONS_PER_SHARD = 5

CONSTRUCTS = (
    "joins of three or more tables",
    "GROUP BY with HAVING",
    "a correlated or scalar subquery",
    "window functions (ROW_NUMBER, RANK, running totals)",
    "a common table expression (WITH ...)",
    "date and time filters",
    "COUNT(DISTINCT ...) and other aggregates",
    "ORDER BY with LIMIT (top-N)",
    "NULL handling (IS NULL, COALESCE)",
    "CASE expressions",
    "EXISTS / NOT EXISTS",
    "simple filters a new user would ask",
)
CONSTRUCTS_PER_SHARD = 3
TABLES_PER_SHARD = 2

_SYSTEM = """\
You write training data for a small Text-to-SQL model that must learn one database.

Each example is a question a business user could ask about this database, the {dialect} SQL \
query that answers it, and {explanation_rule}

Dialect: {dialect}. Every query must run on {dialect} exactly as written.

Schema (the complete database, as {dialect} DDL):
{ddl}

Questions users have asked (for tone and intent; write new ones, do not repeat these):
{seeds}

Rules:
1. Use only the tables and columns in the schema above. Never invent a table or a column.
2. Each query is one read-only statement: SELECT, or WITH ... SELECT. No DDL, no DML, no \
several statements, no comments.
3. Vary the phrasing: terse and wordy, business words for the same columns, different \
sentence shapes. No two examples may ask the same thing.
4. Include hard cases: joins of three or more tables, subqueries, window functions, \
GROUP BY with HAVING, CTEs, date arithmetic, NULL handling.
5. A question must be answerable by its query alone, with no hidden assumptions.

Answer only by calling the {tool} tool, once, with all the examples."""

_EXPLAINED = "a short explanation (one or two sentences) of how the query answers it."
_UNEXPLAINED = "nothing else: no explanation."

_USER = """\
Shard {index}: write {count} new examples.
Lean on these tables: {tables} (others may appear too).
Across the set, use at least: {constructs}.{extra_seeds}"""

_FOCUS = """\
The accepted examples so far under-use some of the database. Write most of these examples \
about {wanted}, and ask questions unlike the usual ones."""
"""Added to the user message of a top-up shard (one with a focus). Deliberately not part of
TEMPLATE_VERSION: shards without a focus keep their keys, and a focused shard's key already
hashes its focus."""


@dataclass(frozen=True)
class Prompt:
    """One request's prompt in provider-neutral form."""

    system: str
    user: str
    max_tokens: int
    reasoning: bool

    @property
    def tool_schema(self) -> dict[str, Any]:
        """JSON schema of the tool's input: a list of examples."""
        item: dict[str, Any] = {
            "type": "object",
            "properties": {
                "question": {"type": "string", "description": "The user's question."},
                "sql": {"type": "string", "description": "The query that answers it."},
            },
            "required": ["question", "sql"],
        }
        if self.reasoning:
            item["properties"]["explanation"] = {
                "type": "string",
                "description": "How the query answers the question.",
            }
            item["required"].append("explanation")
        return {
            "type": "object",
            "properties": {"examples": {"type": "array", "items": item}},
            "required": ["examples"],
        }


TEMPLATE_VERSION = hashlib.sha256(
    "\n".join(
        [_SYSTEM, _EXPLAINED, _UNEXPLAINED, _USER, *CONSTRUCTS, TOOL_NAME]
        + [str(v) for v in (OUTPUT_TOKENS_PER_EXAMPLE, OUTPUT_TOKENS_OVERHEAD)]
        + [str(v) for v in (SEED_QUESTIONS_IN_SYSTEM, SEED_QUESTIONS_PER_SHARD)]
        + [str(v) for v in (CONSTRUCTS_PER_SHARD, TABLES_PER_SHARD)]
    ).encode()
).hexdigest()[:12]
"""Part of every LLM shard key: a changed prompt never reuses shards the old one wrote."""


def _window(items: tuple[str, ...], start: int, size: int) -> list[str]:
    if not items:
        return []
    return [items[(start + k) % len(items)] for k in range(min(size, len(items)))]


def _dialect_name(dialect: Dialect | str) -> str:
    return {"postgres": "PostgreSQL", "mysql": "MySQL", "sqlite": "SQLite", "duckdb": "DuckDB"}.get(
        str(dialect), str(dialect)
    )


def max_tokens_for(count: int, reasoning: bool) -> int:
    return count * OUTPUT_TOKENS_PER_EXAMPLE[reasoning] + OUTPUT_TOKENS_OVERHEAD


def build_prompt(request: ShardRequest) -> Prompt:
    """The prompt for one shard; the system part is identical across a run's shards."""
    schema = request.schema
    shown = request.seed_questions[:SEED_QUESTIONS_IN_SYSTEM]
    system = _SYSTEM.format(
        dialect=_dialect_name(schema.dialect),
        explanation_rule=_EXPLAINED if request.reasoning else _UNEXPLAINED,
        ddl=render_ddl(schema),
        seeds="\n".join(f"- {q}" for q in shown) or "- (none given)",
        tool=TOOL_NAME,
    )
    # Spread shards evenly: shard i starts its table window at i * TABLES_PER_SHARD, and the
    # seed offsets the construct window so two runs with different seeds ask differently. A
    # top-up shard's focus (what the accepted examples under-cover) replaces the windows.
    tables = tuple(t.name for t in schema.tables)
    focus_tables = list(request.focus_tables) or _window(
        tables, request.index * TABLES_PER_SHARD, TABLES_PER_SHARD
    )
    focus_constructs = [CONSTRUCT_WORDS.get(c, c) for c in request.focus_constructs]
    constructs = focus_constructs or _window(
        CONSTRUCTS, request.seed + request.index * CONSTRUCTS_PER_SHARD, CONSTRUCTS_PER_SHARD
    )
    rest = request.seed_questions[SEED_QUESTIONS_IN_SYSTEM:]
    extra = _window(rest, request.index * SEED_QUESTIONS_PER_SHARD, SEED_QUESTIONS_PER_SHARD)
    extra_seeds = "".join(f"\n- {q}" for q in extra)
    user = _USER.format(
        index=request.index,
        count=request.count,
        tables=", ".join(focus_tables) or "any",
        constructs="; ".join(constructs),
        extra_seeds=f"\nMore questions users asked:{extra_seeds}" if extra else "",
    )
    if request.focus_tables or request.focus_constructs:
        wanted = [f"the tables {', '.join(request.focus_tables)}"] if request.focus_tables else []
        wanted += [f"these constructs: {'; '.join(focus_constructs)}"] if focus_constructs else []
        user += "\n" + _FOCUS.format(wanted=" and ".join(wanted))
    return Prompt(
        system=system,
        user=user,
        max_tokens=max_tokens_for(request.count, request.reasoning),
        reasoning=request.reasoning,
    )
