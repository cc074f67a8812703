"""The openai-compatible teacher against a fake chat-completions server: same prompt, parsing,
limits and accounting as the anthropic teacher (including adapting to `x-ratelimit-*` headers);
price 0 unless the prices file says otherwise."""

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
from distillrun.teacher.governor import (
    GovernorClient,
    LocalGovernor,
    ObservedLimits,
    RateGovernor,
    Room,
)
from distillrun.teacher.openai_compatible import (
    OpenAICompatibleTeacher,
    duration_s,
    observed_limits,
)
from distillrun.teacher.pricing import PRICES_ENV, from_usd
from distillrun.teacher.prompt import TOOL_NAME, build_prompt
from tests.fakes.fixtures import shop_context
from tests.fakes.openai_server import (
    Body,
    FakeOpenAI,
    Finish,
    RateHeaders,
    Reset,
    Status,
    insufficient_quota,
)

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
    with pytest.raises(StageFailed) as failed:  # the filtered reply kept no example
        generate.run(ctx, teacher_of(ctx))
    assert failed.value.reason == "TeacherReplyUnusable"
    assert "stop reason 'content_filter'" in str(failed.value)
    summary = generate.run(ctx, teacher_of(ctx)).summary

    assert server.statuses == [429, 503, 0, 200, 200, 200, 200, 200]
    assert summary["malformed_by_reason"] == {"truncated": 1}
    assert summary["unusable_replies"] == 1
    plan = generate.plan_shards(ctx, teacher_of(ctx))
    first = ShardOutput.model_validate_json(
        ctx.store.get_bytes(generate.shard_object_key(plan[0].key))
    )
    assert 0 < len(first.examples) < 10  # the cut reply's complete examples are kept


@pytest.mark.parametrize(
    "garbage",
    [
        {},
        {"choices": [], "usage": {"prompt_tokens": 900, "completion_tokens": 3}},
        {
            "choices": [
                {
                    "message": {
                        "tool_calls": [
                            {"function": {"name": TOOL_NAME, "arguments": '{"examples": []}'}}
                        ]
                    },
                    "finish_reason": "tool_calls",
                }
            ]
        },
    ],
    ids=["empty-object", "no-choices", "no-examples"],
)
def test_a_200_without_examples_is_not_a_done_shard(
    tmp_path: Path, server: FakeOpenAI, garbage: dict[str, object]
) -> None:
    server.script(*(Body(garbage) for _ in range(4)))  # broken for every shard
    ctx = context(tmp_path, server)
    with pytest.raises(StageFailed) as failed:
        generate.run(ctx, teacher_of(ctx))
    assert failed.value.reason == "TeacherReplyUnusable"
    assert "the teacher's reply for shard" in str(failed.value)
    assert "0 of 4 shards are committed" in str(failed.value)
    assert ctx.store.list_keys(generate.SHARDS_PREFIX) == []

    # the server is fixed: a rerun asks for every shard again instead of reusing nothing
    summary = generate.run(ctx, teacher_of(ctx)).summary
    assert server.statuses == [200] * 8 and summary["teacher_calls"] == 4
    assert summary["generated"] == 40 and summary["unusable_replies"] == 4


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


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("59.789s", 59.789),
        ("250us", 0.00025),
        ("0.5", 0.5),  # a bare number of seconds, as some gateways send
        (None, None),
        ("", None),
        ("soon", None),
        ("6m0", None),  # a trailing number without its unit
        ("-1s", None),
        ("1s 2s", None),
        ("2d", None),
    ],
)
def test_reset_durations_parse_or_are_ignored(text: str | None, seconds: float | None) -> None:
    assert duration_s(text) == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    ("headers", "requests", "tokens"),
    [
        ({}, Room(), Room()),  # vLLM: nothing to adapt to
        (
            RateHeaders(60, 59, "1s", 150000, 149984, "6m0s").headers(),
            Room(limit=60, remaining=59, reset_s=1.0),
            Room(limit=150000, remaining=149984, reset_s=360.0),
        ),
        ({"x-ratelimit-limit-requests": "500"}, Room(limit=500), Room()),  # partial
        (
            {
                "x-ratelimit-limit-requests": "lots",
                "x-ratelimit-remaining-requests": "-3",
                "x-ratelimit-reset-requests": "whenever",
                "x-ratelimit-limit-tokens": "inf",
                "x-ratelimit-remaining-tokens": "12",
                "x-ratelimit-reset-tokens": "20ms",
            },
            Room(),
            Room(remaining=12, reset_s=0.02),
        ),
        (  # another provider's headers are not this one's
            {"anthropic-ratelimit-requests-limit": "5"},
            Room(),
            Room(),
        ),
    ],
)
def test_ratelimit_headers_map_onto_the_governor_axes(
    headers: dict[str, str], requests: Room, tokens: Room
) -> None:
    # one token budget for prompt and completion bounds both token axes
    assert observed_limits(headers) == ObservedLimits(
        requests=requests, input_tokens=tokens, output_tokens=tokens
    )


class Clock:
    """The governor's clock and its clients' sleep: waiting costs no wall time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def paced(ctx: StageContext, clock: Clock) -> tuple[OpenAICompatibleTeacher, RateGovernor]:
    governor = RateGovernor(ctx.run.spec.teacher.rate_limits, None, clock=clock)
    client = GovernorClient(LocalGovernor(governor), sleep=clock.sleep)
    return teacher_of(ctx).with_governor(client), governor


def test_a_lower_limit_from_the_server_paces_the_run(tmp_path: Path, server: FakeOpenAI) -> None:
    server.ratelimit = RateHeaders(
        limit_requests=6, remaining_requests=5, limit_tokens=10**6, remaining_tokens=10**6 - 1
    )
    ctx = context(
        tmp_path,
        server,
        targetExamples=80,
        rateLimits={
            "requestsPerMinute": 60,
            "inputTokensPerMinute": 10**7,
            "outputTokensPerMinute": 10**7,
        },
    )
    clock = Clock()
    teacher, governor = paced(ctx, clock)
    started = []
    for request in generate.plan_shards(ctx, teacher):
        teacher.write_shard(request)
        started.append(clock.now)  # nothing waits after the grant: this is when it was sent

    # the spec allows 60/min, the server 6/min with 5 left: 6 at once, then one per 10 s
    assert started == pytest.approx([0.0] * 6 + [10.0, 20.0])
    assert governor.snapshot()["limits"] == {
        "requests_per_minute": 6,
        "input_tokens_per_minute": 10**6,
        "output_tokens_per_minute": 10**6,
    }


def test_a_429_with_ratelimit_headers_waits_for_the_reset_it_names(
    tmp_path: Path, server: FakeOpenAI
) -> None:
    empty = RateHeaders(limit_requests=600, remaining_requests=0, reset_requests="2.5s")
    server.script(Status(429, retry_after=0.01, ratelimit=empty))
    ctx = context(tmp_path, server, targetExamples=10)
    clock = Clock()
    teacher, governor = paced(ctx, clock)
    teacher.write_shard(generate.plan_shards(ctx, teacher)[0])

    assert server.statuses == [429, 200]
    # not after the 0.01 s retry-after, nor the 1.2 s refill at the spec's 50/min: after the
    # 2.5 s reset (the server's higher limit of 600 is not adopted)
    assert ctx.run.spec.teacher.rate_limits.requests_per_minute == 50
    assert clock.now == pytest.approx(2.5)
    numbers = governor.snapshot()
    assert numbers["rate_limited"] == 1 and numbers["limits"]["requests_per_minute"] == 50


def test_replies_that_are_not_json_do_not_use_up_the_rate_limits(
    tmp_path: Path, server: FakeOpenAI
) -> None:
    server.script(*[Status(200, "<html>gateway</html>")] * 3)
    # room for two requests' max_tokens a minute: kept reservations would stall the fourth
    limits = {"requestsPerMinute": 50, "inputTokensPerMinute": 10**6, "outputTokensPerMinute": 4000}
    ctx = context(tmp_path, server, targetExamples=10, rateLimits=limits)
    clock = Clock()
    teacher, _ = paced(ctx, clock)
    request = generate.plan_shards(ctx, teacher)[0]
    assert 4000 // 3 < build_prompt(request).max_tokens <= 4000 // 2
    teacher.write_shard(request)

    assert server.statuses == [200] * 4
    assert clock.now == 0.0
