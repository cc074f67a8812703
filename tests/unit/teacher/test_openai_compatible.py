"""The openai-compatible teacher against a fake chat-completions server: same prompt, parsing,
limits and accounting as the anthropic teacher; price 0 unless the prices file says otherwise."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from distillrun.jobs import generate
from distillrun.jobs.context import StageContext, StageFailed
from distillrun.teacher.base import ShardOutput
from distillrun.teacher.calls import RetryPolicy
from distillrun.teacher.factory import make_teacher
from distillrun.teacher.openai_compatible import OpenAICompatibleTeacher
from distillrun.teacher.pricing import PRICES_ENV, from_usd
from distillrun.teacher.prompt import TOOL_NAME
from tests.fakes.fixtures import shop_context
from tests.fakes.openai_server import FakeOpenAI, Finish, Reset, Status, insufficient_quota

KEY = "sk-local-test"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv(PRICES_ENV, raising=False)
    with FakeOpenAI(api_key=KEY, cached_prompt_tokens=300) as fake:
        yield fake


def context(tmp_path: Path, server: FakeOpenAI, **teacher: object) -> StageContext:
    return shop_context(
        tmp_path,
        provider="openai-compatible",
        model="qwen3-coder-30b",
        baseUrl=server.url,
        temperature=0.7,
        **teacher,
    )


def teacher_of(ctx: StageContext) -> OpenAICompatibleTeacher:
    teacher = make_teacher(ctx.run.spec.teacher)
    assert isinstance(teacher, OpenAICompatibleTeacher)
    return dataclasses.replace(teacher, retry=RetryPolicy(backoff_s=0.01, max_backoff_s=0.05))


def test_a_run_through_chat_completions_is_free_and_counted_exactly(
    tmp_path: Path, server: FakeOpenAI
) -> None:
    ctx = context(tmp_path, server)
    summary = generate.run(ctx, teacher_of(ctx)).summary

    assert summary["generated"] == 40 and summary["malformed"] == 0
    body = server.requests[0]
    assert body["tool_choice"] == {"type": "function", "function": {"name": TOOL_NAME}}
    assert body["temperature"] == 0.7 and body["messages"][0]["role"] == "system"
    assert "CREATE TABLE orders" in body["messages"][0]["content"]
    usage = summary["usage"]
    assert usage["input_tokens"] + usage["cache_read_tokens"] == server.prompt_tokens
    assert usage["cache_read_tokens"] == 4 * 300
    assert usage["output_tokens"] == server.completion_tokens and usage["usd"] == 0


def test_a_priced_model_is_charged_from_the_prices_file(
    tmp_path: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = tmp_path / "prices.json"
    entry = {"input": "0.5", "output": "2", "cacheWrite": "0", "cacheRead": "0.05"}
    prices.write_text(json.dumps({"models": {"qwen3-coder": entry}}))
    monkeypatch.setenv(PRICES_ENV, str(prices))
    ctx = context(tmp_path, server, targetExamples=20)
    usage = generate.run(ctx, teacher_of(ctx)).summary["usage"]
    expected = (
        usage["input_tokens"] * Decimal("0.5")
        + usage["output_tokens"] * Decimal(2)
        + usage["cache_read_tokens"] * Decimal("0.05")
    ) / Decimal(1_000_000)
    assert from_usd(usage["usd"]) == expected > 0


def test_faults_are_retried_and_cut_or_filtered_replies_counted(
    tmp_path: Path, server: FakeOpenAI
) -> None:
    server.script(
        Status(429, retry_after=0.01),
        Status(503),
        Reset(),
        Finish("length", max_tokens=150),
        Finish("content_filter"),
    )
    ctx = context(tmp_path, server)
    summary = generate.run(ctx, teacher_of(ctx)).summary

    assert server.statuses == [429, 503, 0, 200, 200, 200, 200]
    assert summary["malformed_by_reason"] == {"refusal": 1, "truncated": 1}
    plan = generate.plan_shards(ctx, teacher_of(ctx))
    first = ShardOutput.model_validate_json(
        ctx.store.get_bytes(generate.shard_object_key(plan[0].key))
    )
    assert 0 < len(first.examples) < 10  # the cut reply's complete examples are kept


@pytest.mark.parametrize(
    ("reply", "reason"),
    [(Status(401), "TeacherAuthFailed"), (insufficient_quota(), "BudgetExhausted")],
)
def test_a_refused_key_or_an_empty_quota_stops_at_once(
    tmp_path: Path, server: FakeOpenAI, reply: Status, reason: str
) -> None:
    server.script(reply)
    ctx = context(tmp_path, server)
    with pytest.raises(StageFailed) as failed:
        generate.run(ctx, teacher_of(ctx))
    assert failed.value.reason == reason and len(server.requests) == 1
