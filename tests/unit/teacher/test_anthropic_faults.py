"""Faults the API throws, through the real SDK: transient ones are retried (by the SDK, then by
us, with every worker pausing), and the ones retrying cannot fix stop the stage at once with a
named reason, keeping what was committed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from distillrun.jobs import generate
from distillrun.jobs.context import StageFailed
from tests.fakes.anthropic_server import (
    Error,
    FakeAnthropic,
    overloaded,
    rate_limited,
    reset,
    server_error,
    spend_limit,
    unauthorized,
)
from tests.fakes.fixtures import fast_teacher, shop_context


def test_a_429_storm_is_ridden_out_beyond_the_sdk_retries(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    fake.script_shard(1, *[rate_limited(retry_after=0.02)] * 7)
    ctx = shop_context(tmp_path, baseUrl=fake.url)
    summary = generate.run(ctx, fast_teacher(ctx)).summary

    assert summary["generated"] == 40
    shard1 = [r for r in fake.message_requests() if r.shard == 1]
    assert [r.status for r in shard1] == [429] * 7 + [200]
    # the SDK retried twice per call (retry counts 0, 1, 2), then our own attempts took over
    assert [r.retry_count for r in shard1] == [0, 1, 2, 0, 1, 2, 0, 1]
    governor = ctx.store.get_json(generate.MANIFEST_KEY)["governor"]
    assert governor["rate_limited"] == 7


def test_overload_server_errors_and_resets_are_retried(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    fake.script_shard(0, overloaded(retry_after=0.01), server_error(), reset())
    ctx = shop_context(tmp_path, baseUrl=fake.url, targetExamples=20)
    summary = generate.run(ctx, fast_teacher(ctx)).summary

    assert summary["generated"] == 20
    assert [r.status for r in fake.message_requests() if r.shard == 0] == [529, 500, 0, 200]
    assert fake.billed.messages == 2 and summary["usage"]["requests"] == 2


def test_a_spend_limit_stops_at_once_without_retrying(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    fake.script_shard(1, spend_limit())
    ctx = shop_context(tmp_path, baseUrl=fake.url)
    with pytest.raises(StageFailed) as failed:
        generate.run(ctx, fast_teacher(ctx))

    assert failed.value.reason == "BudgetExhausted"
    assert "enforced_spend_limit_reached" in str(failed.value)
    assert "1 of 4 shards are committed" in str(failed.value)
    # one request for the stopped shard (no SDK retry) and none for the shards after it
    assert [(r.shard, r.status) for r in fake.message_requests()] == [(0, 200), (1, 429)]


def test_a_refused_key_stops_with_teacher_auth_failed_and_resumes_after(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    fake.script_shard(2, unauthorized())
    ctx = shop_context(tmp_path, baseUrl=fake.url)
    with pytest.raises(StageFailed) as failed:
        generate.run(ctx, fast_teacher(ctx))
    assert failed.value.reason == "TeacherAuthFailed"
    assert "ANTHROPIC_API_KEY was refused" in str(failed.value)
    assert [r.status for r in fake.message_requests()] == [200, 200, 401]

    summary = generate.run(ctx, fast_teacher(ctx)).summary
    assert summary["reused_shards"] == 2 and summary["generated"] == 40
    assert [r.shard for r in fake.message_requests()] == [0, 1, 2, 2, 3]


def test_a_missing_key_stops_before_any_request(
    tmp_path: Path, anthropic_env: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    ctx = shop_context(tmp_path, baseUrl=anthropic_env.url)
    with pytest.raises(StageFailed) as failed:
        generate.run(ctx, fast_teacher(ctx))
    assert failed.value.reason == "TeacherAuthFailed"
    assert anthropic_env.requests == []


def test_an_unknown_model_stops_with_request_invalid(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    anthropic_env.script(Error(404, "not_found_error", "model: claude-nope"))
    ctx = shop_context(tmp_path, baseUrl=anthropic_env.url)
    with pytest.raises(StageFailed) as failed:
        generate.run(ctx, fast_teacher(ctx))
    assert failed.value.reason == "TeacherRequestInvalid"
    assert "claude-nope" in str(failed.value)
    assert len(anthropic_env.message_requests()) == 1


def test_a_dead_endpoint_fails_after_bounded_retries(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    anthropic_env.script(*[Error(500, "api_error", retry_after=0.01)] * 15)
    ctx = shop_context(tmp_path, baseUrl=anthropic_env.url)
    with pytest.raises(StageFailed) as failed:
        generate.run(ctx, fast_teacher(ctx))
    assert failed.value.reason == "TeacherFailed"
    assert "after 5 attempts" in str(failed.value)
    # 5 attempts of 3 HTTP requests each for the first shard; the others stop without calling
    assert len(anthropic_env.message_requests()) == 15


def test_dropped_connections_do_not_use_up_the_rate_limits(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    fake.script_shard(0, reset(), reset(), reset())
    # room for two requests' max_tokens a minute: kept reservations would stall the third
    limits = {"requestsPerMinute": 50, "inputTokensPerMinute": 10**6, "outputTokensPerMinute": 4000}
    ctx = shop_context(tmp_path, baseUrl=fake.url, targetExamples=10, rateLimits=limits)
    started = time.monotonic()
    assert generate.run(ctx, fast_teacher(ctx)).summary["generated"] == 10
    assert time.monotonic() - started < 10
    assert [r.status for r in fake.message_requests()] == [0, 0, 0, 200]
