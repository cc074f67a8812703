"""Asking the LLM teacher the evaluation questions, so its SQL is scored beside the student's.

With `spec.evaluation.askTeacher` (on by default) and an Anthropic teacher, evaluate sends the
holdout and gold questions to the teacher -- the schema and dialect in the system prompt, the
questions numbered in the user message, `QUESTIONS_PER_CALL` per call, the SQL back through one
forced tool call -- and scores the answers exactly as the student's. Every call goes through
`teacher.calls.paid_call` with a governor that holds what generation left of
`spec.teacher.budget.maxUSD`: a call the budget cannot pay for at its worst case is not made,
and the comparison says why it is missing. The answers are kept in the store under a
fingerprint of the questions, schema and teacher model, so scoring a retrained student never
pays the teacher twice.

The synthetic teacher is never asked: it writes SQL from templates, not answers to questions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from distillrun.api.layout import TEACHER_ANSWERS_KEY
from distillrun.api.spec import TeacherProvider
from distillrun.jobs.context import StageContext
from distillrun.jobs.prompting import format_answer, schema_ddl
from distillrun.teacher.anthropic import AnthropicTeacher
from distillrun.teacher.anthropic.errors import classify
from distillrun.teacher.anthropic.replies import message_usage
from distillrun.teacher.base import Usage
from distillrun.teacher.calls import paid_call
from distillrun.teacher.errors import TeacherStop
from distillrun.teacher.estimate import worst_case_usd
from distillrun.teacher.factory import TeacherUnavailable, make_teacher
from distillrun.teacher.governor import GovernorClient, open_governor
from distillrun.teacher.pricing import from_usd, to_usd
from distillrun.teacher.prompt import Prompt

TOOL_NAME = "record_answers"
QUESTIONS_PER_CALL = 20
OUTPUT_TOKENS_PER_ANSWER = 150
OUTPUT_TOKENS_OVERHEAD = 200
PROMPT_VERSION = 1
"""Bump when the prompt changes: stored answers are then asked for again."""

_SYSTEM = """\
You answer questions about one {dialect} database with SQL.

Schema:
{ddl}

For every numbered question write one read-only {dialect} query (SELECT, or WITH ... SELECT) \
that answers it, using only the tables and columns above. Answer only by calling the {tool} \
tool, once, with an answer for every question."""

TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answers": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "number": {"type": "integer", "description": "The question's number."},
                    "sql": {"type": "string", "description": "The query that answers it."},
                },
                "required": ["number", "sql"],
            },
        }
    },
    "required": ["answers"],
}


@dataclass(frozen=True)
class TeacherAnswers:
    """The teacher's answers (in `extract_sql`'s format, "" where it gave none), what asking
    cost, and why it was not asked (or stopped) when that happened."""

    model: str
    answers: list[str]
    usage: Usage
    skipped: str | None = None


def wanted(ctx: StageContext) -> bool:
    """Whether this run asks its teacher: an Anthropic teacher and `evaluation.askTeacher`."""
    spec = ctx.run.spec
    return spec.evaluation.ask_teacher and spec.teacher.provider == TeacherProvider.ANTHROPIC


def _fingerprint(ctx: StageContext, questions: Sequence[str]) -> str:
    material = {
        "questions": list(questions),
        "model": ctx.run.spec.teacher.model,
        "schema": ctx.schema.fingerprint,
        "prompt": PROMPT_VERSION,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _prompt(ctx: StageContext, numbered: Sequence[tuple[int, str]]) -> Prompt:
    dialect = str(ctx.schema.dialect)
    system = _SYSTEM.format(dialect=dialect, ddl=schema_ddl(ctx.schema), tool=TOOL_NAME)
    user = f"Answer these {len(numbered)} questions:\n" + "\n".join(
        f"{number}. {question}" for number, question in numbered
    )
    max_tokens = OUTPUT_TOKENS_OVERHEAD + OUTPUT_TOKENS_PER_ANSWER * len(numbered)
    return Prompt(system=system, user=user, max_tokens=max_tokens, reasoning=False)


def _params(prompt: Prompt, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": prompt.max_tokens,
        "system": [{"type": "text", "text": prompt.system, "cache_control": {"type": "ephemeral"}}],
        "tools": [
            {
                "name": TOOL_NAME,
                "description": "Record the SQL answer to every question.",
                "input_schema": TOOL_SCHEMA,
            }
        ],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
        "messages": [{"role": "user", "content": prompt.user}],
    }


def _answers_in(message: Any) -> dict[int, str]:
    """Question number -> SQL, from the reply's tool call (whatever else it holds is ignored)."""
    found: dict[int, str] = {}
    for block in message.content:
        if block.type != "tool_use" or not isinstance(block.input, dict):
            continue
        for item in block.input.get("answers") or []:
            if isinstance(item, dict) and isinstance(item.get("sql"), str):
                try:
                    found[int(item["number"])] = item["sql"]
                except (KeyError, TypeError, ValueError):
                    continue
    return found


def _call(
    teacher: AnthropicTeacher, governor: GovernorClient, prompt: Prompt
) -> tuple[Any, Decimal]:
    """One paid Messages call for `prompt` (budget reserved first, retries after)."""
    params = _params(prompt, teacher.model)
    with teacher.client() as client:
        return paid_call(
            lambda: client.messages.create(**params),
            governor=governor,
            worst_usd=worst_case_usd(prompt, teacher.price, batch=False),
            cost_of=lambda message: teacher.price.cost(message_usage(message)),
            classify=lambda exc: classify(exc, teacher.api_key_variable),
            retry=teacher.retry,
        )


def _spent_on_generation(ctx: StageContext) -> Decimal:
    manifest_key = "generate/_manifest.json"
    if not ctx.store.exists(manifest_key):
        return Decimal(0)
    usage = ctx.store.get_json(manifest_key).get("usage") or {}
    return from_usd(float(usage.get("usd") or 0.0))


def ask(ctx: StageContext, questions: Sequence[str]) -> TeacherAnswers:
    """The teacher's answer to every question, from the store when already asked."""
    spec = ctx.run.spec.teacher
    fingerprint = _fingerprint(ctx, questions)
    if ctx.store.exists(TEACHER_ANSWERS_KEY):
        stored = ctx.store.get_json(TEACHER_ANSWERS_KEY)
        if stored.get("fingerprint") == fingerprint and not stored.get("skipped"):
            return TeacherAnswers(
                spec.model, list(stored["answers"]), Usage.model_validate(stored["usage"])
            )
    answers = [""] * len(questions)
    usage = Usage()
    spent = Decimal(0)
    skipped: str | None = None
    try:
        teacher = make_teacher(spec)
    except TeacherUnavailable as exc:
        return TeacherAnswers(spec.model, answers, usage, f"{exc.field}: {exc}")
    assert isinstance(teacher, AnthropicTeacher)  # `wanted` lets no other provider here
    budget = Decimal(str(spec.budget.max_usd))
    with open_governor(spec.rate_limits, budget, _spent_on_generation(ctx)) as governor:
        governed = teacher.with_governor(governor)
        for start in range(0, len(questions), QUESTIONS_PER_CALL):
            numbered = list(enumerate(questions[start : start + QUESTIONS_PER_CALL], start=1))
            try:
                message, cost = _call(governed, governor, _prompt(ctx, numbered))
            except TeacherStop as stop:
                skipped = f"the teacher was not asked every question: {stop}"
                break
            got = _answers_in(message)
            for number, _ in numbered:
                if number in got:
                    answers[start + number - 1] = format_answer(got[number], reasoning=False)
            spent += cost
            usage = _add(usage, message_usage(message))
    usage = usage.model_copy(update={"usd": to_usd(spent)})
    ctx.store.put_json(
        TEACHER_ANSWERS_KEY,
        {
            "fingerprint": fingerprint,
            "model": spec.model,
            "answers": answers,
            "usage": usage.model_dump(),
            "skipped": skipped,
        },
    )
    return TeacherAnswers(spec.model, answers, usage, skipped)


def _add(total: Usage, more: Usage) -> Usage:
    return Usage(
        input_tokens=total.input_tokens + more.input_tokens,
        output_tokens=total.output_tokens + more.output_tokens,
        cache_read_tokens=total.cache_read_tokens + more.cache_read_tokens,
        cache_write_tokens=total.cache_write_tokens + more.cache_write_tokens,
        requests=total.requests + more.requests,
    )
