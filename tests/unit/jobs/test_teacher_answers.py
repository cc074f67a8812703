"""The LLM teacher answers the evaluation questions (through the real anthropic SDK against the
fake API): its SQL comes back per question, costs what the server billed, stays within the
budget generation left, is kept so it is never paid for twice, and is scored like the
student's."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from distillrun.jobs import teacher_answers
from distillrun.jobs.training import scoring
from distillrun.teacher.pricing import from_usd
from tests.fakes.anthropic_server import Content, FakeAnthropic
from tests.fakes.fixtures import anthropic_env, fake, list_usd, shop_context

__all__ = ["anthropic_env", "fake"]

QUESTIONS = [
    ("How many customers are there?", "SELECT COUNT(*) FROM customers"),
    ("How many products are there?", "SELECT COUNT(*) FROM products"),
    ("How many orders are there?", "SELECT COUNT(*) FROM orders"),
]


def answers_reply(answers: dict[int, str]) -> Content:
    block = {
        "type": "tool_use",
        "id": "toolu_answers",
        "name": teacher_answers.TOOL_NAME,
        "input": {"answers": [{"number": n, "sql": sql} for n, sql in answers.items()]},
    }
    return Content((block,), "tool_use")


def context(tmp_path: Path, fake: FakeAnthropic, **teacher: Any) -> Any:
    ctx = shop_context(tmp_path, baseUrl=fake.url, **teacher)
    ctx.seed_sql = (Path(__file__).parents[3] / "examples/shop/seed.sql").read_text()
    return ctx


def test_the_teacher_answers_every_question_and_is_scored_like_the_student(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    ctx = context(tmp_path, anthropic_env)
    assert teacher_answers.wanted(ctx)
    # right, wrong, and one question the teacher skipped
    anthropic_env.script(answers_reply({1: QUESTIONS[0][1], 2: "SELECT COUNT(*) FROM customers"}))
    asked = teacher_answers.ask(ctx, [q for q, _ in QUESTIONS])
    assert asked.skipped is None
    requests = anthropic_env.message_requests(200)
    assert len(requests) == 1
    body = requests[0].body
    assert body["tool_choice"]["name"] == teacher_answers.TOOL_NAME
    assert "CREATE TABLE customers" in body["system"][0]["text"]
    assert "3. How many orders are there?" in body["messages"][0]["content"]
    assert from_usd(asked.usage.usd) == list_usd(anthropic_env.billed)
    assert asked.usage.requests == 1

    records = [{"id": f"q{i}", "question": q, "sql": sql} for i, (q, sql) in enumerate(QUESTIONS)]
    predictions = scoring.score(
        records,
        asked.answers,
        ctx.schema,
        ctx.seed_sql,
        ctx.run.spec.database.sandbox,
        comparison=ctx.run.spec.evaluation.comparison,
    )
    assert [p["reason"] for p in predictions] == ["correct", "wrong_result", "no_sql"]
    assert scoring.accuracy(predictions)["correct"] == 1

    # asked again (a retrained student is scored): the stored answers, no new request
    again = teacher_answers.ask(ctx, [q for q, _ in QUESTIONS])
    assert again.answers == asked.answers and again.usage == asked.usage
    assert len(anthropic_env.message_requests()) == 1


def test_the_teacher_is_not_asked_past_the_budget(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    ctx = context(tmp_path, anthropic_env, budget={"maxUSD": 0.0001})
    asked = teacher_answers.ask(ctx, [q for q, _ in QUESTIONS])
    assert asked.skipped is not None and "budget" in asked.skipped.lower()
    assert asked.answers == ["", "", ""] and asked.usage.usd == 0.0
    assert anthropic_env.message_requests() == []
    assert Decimal(0) == from_usd(asked.usage.usd)


def test_only_llm_teachers_are_asked_and_the_field_turns_it_off(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    assert not teacher_answers.wanted(context(tmp_path, anthropic_env, provider="synthetic"))
    off = shop_context(tmp_path, baseUrl=anthropic_env.url)
    off.run.spec.evaluation.ask_teacher = False
    assert not teacher_answers.wanted(off)
