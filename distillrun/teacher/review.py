"""A first look at an LLM teacher's drafts before they are stored: cheap checks that save
validation time, and tags read off the SQL rather than taken on the model's word.

- Identical SQL after normalization (`sql.checks.normalize_sql` without the schema: a few
  times cheaper than with it, and the validate stage runs the full form anyway) is kept once.
- Near-duplicate questions (`teacher.diversity`, the rule the validate stage applies across
  shards) are kept once: the student learns nothing from a paraphrase it has already seen.
- `tables` and `constructs` (`sql.constructs`) come from the parsed query, so they can never
  disagree with it; SQL that does not parse keeps empty tags and is judged by the validate
  stage.

Dropped drafts become problems (`duplicate_sql`, `duplicate_question`), counted like every
other reason. `shard_from_reply` is where every provider turns a reply into a stored shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from distillrun.api.spec import Dialect
from distillrun.sql.checks import normalize_sql
from distillrun.sql.constructs import constructs_of_tree
from distillrun.sql.schema import SchemaInfo
from distillrun.teacher.accounting import apportion
from distillrun.teacher.base import GeneratedExample, ShardOutput, ShardRequest, Usage
from distillrun.teacher.diversity import QuestionIndex
from distillrun.teacher.parsing import Completion, Draft, parse_reply


@dataclass(frozen=True)
class Reviewed:
    """A draft that passed review, with what its SQL reads and uses."""

    draft: Draft
    tables: list[str]
    constructs: list[str]


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
    return tables, constructs_of_tree(tree)


def review(drafts: list[Draft], schema: SchemaInfo) -> tuple[list[Reviewed], list[dict[str, Any]]]:
    """The drafts worth validating, in order, and a problem record for each one dropped."""
    dialect = Dialect(schema.dialect)
    kept: list[Reviewed] = []
    problems: list[dict[str, Any]] = []
    seen_sql: set[str] = set()
    questions = QuestionIndex()
    for i, draft in enumerate(drafts):
        normalized = normalize_sql(draft.sql, dialect)
        if normalized in seen_sql:
            problems.append(_dropped("duplicate_sql", draft))
            continue
        if questions.find(draft.question) is not None:
            problems.append(_dropped("duplicate_question", draft))
            continue
        seen_sql.add(normalized)
        questions.add(draft.question, str(i))
        kept.append(Reviewed(draft, *_tags(draft.sql, dialect)))
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
    usage (with its cost) as the server reported it, shared out over the examples and problems
    (`accounting.apportion`). `reply` is (tool inputs, texts, how it ended, the provider's raw
    stop reason)."""
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
    return apportion(
        ShardOutput(
            key=request.key, examples=examples, usage=usage, malformed=parsed.problems + dropped
        )
    )
