"""A first look at an LLM teacher's drafts before they are stored: cheap checks that save
validation time, and tags read off the SQL rather than taken on the model's word.

- Identical SQL after normalization (`sql.checks.normalize_sql` without the schema: a few
  times cheaper than with it, and the validate stage runs the full form anyway) is kept once.
- Near-duplicate questions (the same content words, give or take a few) are kept once: the
  student learns nothing from a paraphrase it has already seen with the same query shape.
- `tables` and `constructs` come from the parsed query, so they can never disagree with it;
  SQL that does not parse keeps empty tags and is judged by the validate stage.

Dropped drafts become problems (`duplicate_sql`, `duplicate_question`), counted like every
other reason. `shard_from_reply` is where every provider turns a reply into a stored shard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from distillrun.api.spec import Dialect
from distillrun.sql.checks import normalize_sql
from distillrun.sql.schema import SchemaInfo
from distillrun.teacher.base import GeneratedExample, ShardOutput, ShardRequest, Usage
from distillrun.teacher.parsing import Completion, Draft, parse_reply

NEAR_DUPLICATE_JACCARD = 0.8
"""Questions whose content-word sets overlap at least this much count as the same question."""

_WORD = re.compile(r"[a-z0-9_]+")
# fmt: off
_STOPWORDS = frozenset({
    "a", "an", "the", "of", "for", "in", "on", "at", "to", "by", "with", "from", "and", "or",
    "is", "are", "was", "were", "be", "been", "do", "does", "did", "what", "which", "who",
    "whom", "whose", "how", "many", "much", "all", "each", "every", "there", "their", "its",
    "it", "this", "that", "these", "those", "me", "my", "show", "list", "give", "tell", "find",
    "get", "please",
})
# fmt: on


@dataclass(frozen=True)
class Reviewed:
    """A draft that passed review, with what its SQL reads and uses."""

    draft: Draft
    tables: list[str]
    constructs: list[str]


def _content_words(question: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(question.lower()) if w not in _STOPWORDS)


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    if not a or not b:
        return a == b
    return len(a & b) / len(a | b) >= NEAR_DUPLICATE_JACCARD


_CONSTRUCT_NODES: tuple[tuple[type[exp.Expr], str], ...] = (
    (exp.Join, "join"),
    (exp.Where, "filter"),
    (exp.Group, "group_by"),
    (exp.Having, "having"),
    (exp.Order, "order_by"),
    (exp.Limit, "limit"),
    (exp.Window, "window"),
    (exp.CTE, "cte"),
    (exp.AggFunc, "aggregate"),
    (exp.Case, "case"),
    (exp.Exists, "exists"),
    (exp.Union, "set_operation"),
)


def _constructs(tree: exp.Expr) -> set[str]:
    tags: set[str] = set()
    for node in tree.walk():
        if isinstance(node, exp.Select) and node is not tree and node.parent_select is not None:
            tags.add("subquery")
        tags.update(tag for kind, tag in _CONSTRUCT_NODES if isinstance(node, kind))
    return tags


def _tags(sql: str, dialect: Dialect) -> tuple[list[str], list[str]]:
    """(tables, constructs) of `sql`, read off its tree; empty when it does not parse."""
    try:
        tree = sqlglot.parse_one(sql, read=str(dialect))
    except SqlglotError:
        return [], []
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    tables: list[str] = []
    for table in tree.find_all(exp.Table):
        if table.name and table.name not in ctes and table.name not in tables:
            tables.append(table.name)
    return tables, sorted(_constructs(tree))


def review(drafts: list[Draft], schema: SchemaInfo) -> tuple[list[Reviewed], list[dict[str, Any]]]:
    """The drafts worth validating, in order, and a problem record for each one dropped."""
    dialect = Dialect(schema.dialect)
    kept: list[Reviewed] = []
    problems: list[dict[str, Any]] = []
    seen_sql: set[str] = set()
    seen_questions: list[frozenset[str]] = []
    for draft in drafts:
        normalized = normalize_sql(draft.sql, dialect)
        tables, constructs = _tags(draft.sql, dialect)
        words = _content_words(draft.question)
        if normalized in seen_sql:
            problems.append(_dropped("duplicate_sql", draft))
            continue
        if any(_similar(words, other) for other in seen_questions):
            problems.append(_dropped("duplicate_question", draft))
            continue
        seen_sql.add(normalized)
        seen_questions.append(words)
        kept.append(Reviewed(draft, tables, constructs))
    return kept, problems


def _dropped(reason: str, draft: Draft) -> dict[str, Any]:
    return {
        "reason": reason,
        "stop_reason": None,
        "detail": "dropped before validation",
        "item": {"question": draft.question, "sql": draft.sql},
    }


def shard_from_reply(
    request: ShardRequest,
    reply: tuple[list[Any], list[str], Completion, str | None],
    usage: Usage,
    teacher: str,
) -> ShardOutput:
    """The shard a reply makes: reviewed examples, every unusable part as a problem, and the
    usage (with its cost) as the server reported it. `reply` is (tool inputs, texts, how it
    ended, the provider's raw stop reason)."""
    tool_inputs, texts, completion, stop_reason = reply
    parsed = parse_reply(tool_inputs, texts, completion, stop_reason)
    kept, dropped = review(parsed.drafts, request.schema)
    examples = [
        GeneratedExample(
            id=f"{request.key}-{i:03d}",
            shard=request.key,
            question=item.draft.question,
            sql=item.draft.sql,
            explanation=item.draft.explanation if request.reasoning else "",
            tables=item.tables,
            constructs=item.constructs,
            teacher=teacher,
        )
        for i, item in enumerate(kept)
    ]
    return ShardOutput(
        key=request.key, examples=examples, usage=usage, malformed=parsed.problems + dropped
    )
