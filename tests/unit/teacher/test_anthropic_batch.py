"""Batch mode through the real SDK's Message Batches client against the fake API: the batch id
recorded before waiting, results matched by custom_id in any order, the batch price exactly,
failed requests written in realtime afterwards, the budget, and what `mode: auto` chooses."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from distillrun.jobs import generate
from distillrun.jobs.context import StageFailed
from distillrun.teacher.accounting import usage_sum
from distillrun.teacher.base import ShardOutput, Usage
from distillrun.teacher.pricing import from_usd, load_prices
from tests.fakes.anthropic_server import Billed, Error, FakeAnthropic, rate_limited, reset
from tests.fakes.fixtures import MODEL, billed_usage, fast_teacher, list_usd, shop_context


def _batch_usd(billed: Billed) -> Decimal:
    return list_usd(billed) * (1 - load_prices().price(MODEL).batch_discount)


def test_batch_mode_writes_every_shard_at_the_batch_price(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    fake.batch_polls_to_end = 2
    ctx = shop_context(tmp_path, baseUrl=fake.url, mode="batch")
    teacher = fast_teacher(ctx)
    summary = generate.run(ctx, teacher, poll_interval_s=0.01).summary

    assert fake.batches_created == 1 and fake.message_requests() == []
    (record_key,) = ctx.store.list_keys(generate.BATCHES_PREFIX)
    record = ctx.store.get_json(record_key)
    plan = [r.key for r in generate.plan_shards(ctx, teacher)]
    assert record_key == f"{generate.BATCHES_PREFIX}{record['id']}.json"
    assert record["shards"] == plan
    assert summary["generated"] == 40 and summary["usage"]["requests"] == 4
    assert from_usd(summary["usage"]["usd"]) == _batch_usd(fake.billed_batch)
    # the records' shares add up to what the server reported for the batch, at the batch price
    shards = [
        ShardOutput.model_validate_json(ctx.store.get_bytes(generate.shard_object_key(key)))
        for key in plan
    ]
    records = usage_sum(e.usage for s in shards for e in s.examples)
    billed = fake.billed_batch
    assert all(s.unattributed == Usage() and len(s.examples) == 10 for s in shards)
    assert records.model_copy(update={"usd": 0.0}) == billed_usage(billed)
    assert from_usd(records.usd) == _batch_usd(billed)
    assert ctx.store.get_json(generate.MANIFEST_KEY)["governor"]["mode"] == "batch"
    # a second run finds every shard committed and neither submits nor polls anything
    polls = len(fake.requests)
    assert generate.run(ctx, teacher, poll_interval_s=0.01).reused
    assert len(fake.requests) == polls


def test_failed_batch_requests_are_written_in_realtime_afterwards(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    ctx = shop_context(tmp_path, baseUrl=fake.url, mode="batch")
    teacher = fast_teacher(ctx)
    plan = [r.key for r in generate.plan_shards(ctx, teacher)]
    fake.batch_outcome(plan[1], "errored")
    fake.batch_outcome(plan[2], "expired")
    summary = generate.run(ctx, teacher, poll_interval_s=0.01).summary

    assert fake.batches_created == 1
    assert sorted(fake.shards_asked()) == [1, 2]
    assert summary["generated"] == 40 and summary["usage"]["requests"] == 4
    shards = {
        key: ShardOutput.model_validate_json(ctx.store.get_bytes(generate.shard_object_key(key)))
        for key in plan
    }
    assert all(len(s.examples) == 10 for s in shards.values())


def test_a_batch_holds_only_the_shards_the_budget_can_pay_for(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    ctx = shop_context(
        tmp_path, baseUrl=fake.url, mode="batch", targetExamples=200, budget={"maxUSD": 0.1}
    )
    with pytest.raises(StageFailed) as failed:
        generate.run(ctx, fast_teacher(ctx), poll_interval_s=0.01)

    assert failed.value.reason == "BudgetExhausted"
    (record_key,) = ctx.store.list_keys(generate.BATCHES_PREFIX)
    submitted = ctx.store.get_json(record_key)["shards"]
    assert 0 < len(submitted) < 20 and fake.message_requests() == []
    assert len(ctx.store.list_keys(generate.SHARDS_PREFIX)) == len(submitted)
    assert _batch_usd(fake.billed_batch) <= Decimal("0.1")


def test_auto_mode_batches_only_when_realtime_would_be_slow(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    small = shop_context(tmp_path, baseUrl=anthropic_env.url, mode="auto")
    estimate = generate.preflight(small, fast_teacher(small))
    assert estimate is not None and not estimate.batch
    assert estimate.realtime_minutes < generate.AUTO_BATCH_AFTER_MINUTES

    large = shop_context(tmp_path, baseUrl=anthropic_env.url, mode="auto", targetExamples=20_000)
    estimate = generate.preflight(large, fast_teacher(large))
    assert estimate is not None and estimate.batch
    realtime = fast_teacher(large).estimate(
        generate.plan_shards(large, fast_teacher(large)),
        large.run.spec.teacher.rate_limits,
        batch=False,
    )
    assert estimate.usd == realtime.usd / 2
    assert anthropic_env.requests == []


def test_auto_mode_follows_the_deadline_when_there_is_one(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    # A day or more: the batch window fits, so even a small run takes the cheaper batch.
    small = shop_context(tmp_path, baseUrl=anthropic_env.url, mode="auto", deadlineHours=24)
    estimate = generate.preflight(small, fast_teacher(small))
    assert estimate is not None and estimate.batch

    # Less than a day: a batch might miss it, so realtime, however slow.
    large = shop_context(
        tmp_path, baseUrl=anthropic_env.url, mode="auto", targetExamples=20_000, deadlineHours=2
    )
    estimate = generate.preflight(large, fast_teacher(large))
    assert estimate is not None and not estimate.batch
    assert estimate.realtime_minutes > generate.AUTO_BATCH_AFTER_MINUTES
    assert anthropic_env.requests == []


@pytest.mark.parametrize(
    ("realtime_minutes", "deadline_hours", "batch"),
    [
        (5, None, False),
        (45, None, True),
        (5, 24, True),
        (5, 72, True),
        (45, 23.5, False),
        (5000, 1, False),
    ],
)
def test_auto_mode_choice(
    realtime_minutes: float, deadline_hours: float | None, batch: bool
) -> None:
    assert generate.auto_uses_batch(realtime_minutes, deadline_hours) is batch


def test_a_refused_submission_is_retried_but_a_dropped_one_is_not(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    fake.script_batch_create(rate_limited(retry_after=0.01), Error(500, "api_error"))
    ctx = shop_context(tmp_path, baseUrl=fake.url, mode="batch")
    assert generate.run(ctx, fast_teacher(ctx), poll_interval_s=0.01).summary["generated"] == 40
    posts = [r.status for r in fake.requests if r.path == "/v1/messages/batches"]
    assert posts == [429, 500, 200] and fake.batches_created == 1

    fake.script_batch_create(reset())
    again = shop_context(tmp_path / "again", baseUrl=fake.url, mode="batch")
    with pytest.raises(StageFailed) as failed:
        generate.run(again, fast_teacher(again), poll_interval_s=0.01)
    assert failed.value.reason == "TeacherFailed" and "whether it was created" in str(failed.value)
    posts = [r.status for r in fake.requests if r.path == "/v1/messages/batches"]
    assert posts == [429, 500, 200, 0]  # never resent: a second batch could have been billed
