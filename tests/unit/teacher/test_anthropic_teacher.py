"""The anthropic teacher through the real SDK against the fake API: the request it sends (cached
system prompt, forced tool call), what it keeps of each reply, and its accounting, which must
equal what the server reported exactly."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from distillrun.jobs import generate, validate
from distillrun.jobs.context import StageContext, StageFailed
from distillrun.teacher.accounting import usage_sum
from distillrun.teacher.base import ShardOutput, Usage
from distillrun.teacher.pricing import from_usd
from distillrun.teacher.prompt import TOOL_NAME
from tests.fakes.anthropic_server import (
    FakeAnthropic,
    bogus_tables,
    malformed_json,
    no_examples,
    refusal,
    truncated,
)
from tests.fakes.fixtures import billed_usage, fast_teacher, list_usd, shop_context


def stored_shards(ctx: StageContext) -> list[ShardOutput]:
    """The committed shards of the run's plan, in plan order."""
    return [
        ShardOutput.model_validate_json(ctx.store.get_bytes(generate.shard_object_key(r.key)))
        for r in generate.plan_shards(ctx, fast_teacher(ctx))
    ]


def test_a_run_sends_cached_schema_and_a_forced_tool_call(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    ctx = shop_context(tmp_path, baseUrl=fake.url)
    result = generate.run(ctx, fast_teacher(ctx))

    assert result.summary["generated"] == 40 and result.summary["malformed"] == 0
    asked = fake.message_requests()
    assert len(asked) == 4 and sorted(fake.shards_asked()) == [0, 1, 2, 3]
    body = asked[0].body
    assert body is not None
    system = body["system"]
    assert system[0]["cache_control"] == {"type": "ephemeral"}
    assert "CREATE TABLE customers" in system[0]["text"] and "SQLite" in system[0]["text"]
    assert "How many customers signed up in each country?" in system[0]["text"]
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    assert body["tools"][0]["input_schema"]["properties"]["examples"]["type"] == "array"
    assert body["max_tokens"] <= 10 * 170 + 200
    # the system prompt is the same for every shard (one cache entry); the user turn differs
    assert len({str(r.body["system"]) for r in asked if r.body}) == 1
    assert len({str(r.body["messages"]) for r in asked if r.body}) == 4
    assert fake.billed.cache_creation_input_tokens > 0 and fake.billed.cache_read_input_tokens > 0

    example = ShardOutput.model_validate_json(
        ctx.store.get_bytes(
            generate.shard_object_key(generate.plan_shards(ctx, fast_teacher(ctx))[0].key)
        )
    ).examples[0]
    assert example.teacher == "anthropic:claude-sonnet-5-5"
    assert example.explanation and example.tables and "filter" in example.constructs


def test_accounting_equals_what_the_server_reported(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    ctx = shop_context(tmp_path, baseUrl=fake.url, targetExamples=60)
    summary = generate.run(ctx, fast_teacher(ctx)).summary
    usage = Usage.model_validate(summary["usage"])
    billed = fake.billed
    assert usage.model_copy(update={"usd": 0.0}) == billed_usage(billed)
    assert from_usd(usage.usd) == list_usd(billed)
    # every record carries its share, and the shares add up to the server's numbers: no reply
    # had a malformed entry, so nothing is left unattributed
    assert usage.cache_write_tokens > 0 and usage.cache_read_tokens > 0
    shards = stored_shards(ctx)
    assert all(s.unattributed == Usage() for s in shards)
    records = [e.usage for s in shards for e in s.examples]
    assert len(records) == 60 and all(r.output_tokens > 0 and r.usd > 0 for r in records)
    assert all(usage_sum(e.usage for e in s.examples) == s.usage for s in shards)
    assert usage_sum(records) == usage
    assert generate.run(ctx, fast_teacher(ctx)).summary["usage"] == summary["usage"]


def test_every_unusable_reply_is_classified_counted_and_asked_again(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    fake.script_shard(0, truncated(max_tokens=150))
    fake.script_shard(1, refusal())
    fake.script_shard(2, malformed_json())
    fake.script_shard(3, bogus_tables())
    fake.script_shard(4, no_examples())  # a 200 whose JSON holds no example
    ctx = shop_context(tmp_path, baseUrl=fake.url, targetExamples=50)
    teacher = fast_teacher(ctx)
    plan = generate.plan_shards(ctx, teacher)
    with pytest.raises(StageFailed) as failed:
        generate.run(ctx, teacher)

    # the three replies that held no example are not shards: the stage names the reply as the
    # cause, keeps them aside, and commits only the shards that have examples
    assert failed.value.reason == "TeacherReplyUnusable"
    assert "the teacher's reply for shard" in str(failed.value)
    assert "a rerun asks the teacher for it again" in str(failed.value)
    committed = ctx.store.list_keys(generate.SHARDS_PREFIX)
    assert committed == sorted(generate.shard_object_key(plan[i].key) for i in (0, 3))
    kept = [
        ShardOutput.model_validate_json(ctx.store.get_bytes(key))
        for key in ctx.store.list_keys(generate.UNUSABLE_PREFIX)
    ]
    by_reason = {next(p["reason"] for p in reply.malformed): reply for reply in kept}
    refused, broken = by_reason.pop("refusal"), by_reason.pop("malformed_json")
    empty = by_reason.pop("empty")
    assert not by_reason and (refused.key, broken.key, empty.key) == tuple(
        plan[i].key for i in (1, 2, 4)
    )
    assert refused.examples == broken.examples == empty.examples == []

    # a rerun asks for exactly those three shards again
    summary = generate.run(ctx, teacher).summary
    assert sorted(fake.shards_asked()) == [0, 1, 1, 2, 2, 3, 4, 4]
    shards = stored_shards(ctx)
    cut, _, _, bogus, _ = shards
    assert [p["reason"] for p in cut.malformed] == ["truncated"]
    assert cut.malformed[0]["stop_reason"] == "max_tokens"
    assert 0 < len(cut.examples) < 10
    # SQL on tables that do not exist is kept for the validate stage to reject with a reason
    assert len(bogus.examples) == 10 and all(
        e.tables[0].startswith("ghost_") for e in bogus.examples
    )
    assert summary["malformed_by_reason"] == {"truncated": 1}
    assert summary["malformed"] == 1 and summary["unusable_replies"] == 3
    assert summary["generated"] == len(cut.examples) + 40
    # a refusal and a malformed reply are paid for like any other: the cost still counts, in
    # the summary and in the budget the rerun started from
    assert all(s.usage.requests == 1 and s.usage.usd > 0 for s in [*shards, refused, broken])
    usage = Usage.model_validate(summary["usage"])
    assert usage.requests == 8 and from_usd(usage.usd) == list_usd(fake.billed)
    governor = ctx.store.get_json(generate.MANIFEST_KEY)["governor"]
    assert Decimal(governor["spent_usd"]) == list_usd(fake.billed)
    # with the records' shares and the dropped entries' shares adding up to it exactly
    assert all(
        usage_sum([*(e.usage for e in s.examples), s.unattributed]) == s.usage for s in shards
    )
    assert refused.unattributed == refused.usage and broken.unattributed == broken.usage
    assert Usage() != cut.unattributed != cut.usage and bogus.unattributed == Usage()
    # and the validate stage gives the SQL on missing tables its own reason
    rejected = validate.run(ctx).summary["rejected"]
    assert rejected == {"unknown_table": 10}


def test_an_empty_shard_committed_by_an_earlier_version_is_asked_for_again(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    ctx = shop_context(tmp_path, baseUrl=fake.url)
    teacher = fast_teacher(ctx)
    first = generate.plan_shards(ctx, teacher)[0]
    problem = {"reason": "truncated", "stop_reason": None, "detail": "the reply held no examples"}
    empty = ShardOutput(
        key=first.key, examples=[], usage=Usage(requests=1, usd=0.01), malformed=[problem]
    )
    ctx.store.put_bytes(generate.shard_object_key(first.key), empty.model_dump_json().encode())
    summary = generate.run(ctx, teacher).summary
    assert sorted(fake.shards_asked()) == [0, 1, 2, 3]
    assert summary["generated"] == 40 and summary["unusable_replies"] == 1
    assert from_usd(summary["usage"]["usd"]) == list_usd(fake.billed) + Decimal("0.01")
