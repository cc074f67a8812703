"""Kill the generate stage (SIGKILL, a real process) in the middle of generation, restart it,
and check the invariants: every planned shard committed exactly once, 0 duplicate record ids,
0 objects outside the plan, and 0 teacher calls for shards committed before the kill. In batch
mode: the batch id recorded before the wait is resumed, never resubmitted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from distillrun.jobs import generate
from distillrun.jobs.context import StageContext
from distillrun.teacher.base import ShardOutput
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.fixtures import fast_teacher, shop_context

ROOT = Path(__file__).resolve().parents[3]


def _child(tmp_path: Path, fake: FakeAnthropic, mode: str, target: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANTHROPIC_API_KEY": fake.api_key}
    command = [sys.executable, "-m", "tests.fakes.generate_child", str(tmp_path), fake.url]
    return subprocess.Popen(
        [*command, mode, str(target), "5", "3"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(
    child: subprocess.Popen[bytes], fake: FakeAnthropic, ready: Callable[[], bool]
) -> None:
    """SIGKILLs `child` once `ready()`, then lets the requests it left in flight finish."""
    deadline = time.monotonic() + 60.0
    while not ready():
        assert child.poll() is None, child.communicate()[1].decode()
        assert time.monotonic() < deadline, "the child never got there"
        time.sleep(0.02)
    child.kill()
    child.communicate()
    fake.wait_idle()


def _committed(ctx: StageContext) -> set[str]:
    return {
        k.removeprefix(generate.SHARDS_PREFIX).removesuffix(".json")
        for k in ctx.store.list_keys(generate.SHARDS_PREFIX)
    }


def _assert_invariants(ctx: StageContext, plan: list[str]) -> None:
    keys = ctx.store.list_keys(generate.SHARDS_PREFIX)
    assert sorted(keys) == sorted(generate.shard_object_key(k) for k in plan)  # I1, I2
    ids = Counter(
        example.id
        for key in plan
        for example in ShardOutput.model_validate_json(
            ctx.store.get_bytes(generate.shard_object_key(key))  # I3: checksum verified
        ).examples
    )
    assert ids and max(ids.values()) == 1


def test_kill_and_restart_in_the_middle_of_generation(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    fake.latency_s = 0.05
    ctx = shop_context(tmp_path, baseUrl=fake.url, targetExamples=100, examplesPerShard=5)
    plan = [r.key for r in generate.plan_shards(ctx, fast_teacher(ctx))]
    child = _child(tmp_path, fake, "realtime", 100)
    _kill_when(child, fake, lambda: len(_committed(ctx)) >= 6)

    before = _committed(ctx)
    asked_before = len(fake.message_requests())
    assert 6 <= len(before) < len(plan)
    summary = generate.run(ctx, fast_teacher(ctx)).summary

    asked_after = [plan[s] for s in fake.shards_asked()[asked_before:]]
    assert not set(asked_after) & before  # I4: 0 calls for shards committed before the kill
    assert sorted(asked_after) == sorted(set(plan) - before)
    assert summary["reused_shards"] == len(before)
    _assert_invariants(ctx, plan)


def test_a_batch_is_resumed_after_a_restart_never_resubmitted(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    fake.batch_polls_to_end = 1_000_000  # the batch runs until the test lets it end
    ctx = shop_context(tmp_path, baseUrl=fake.url, targetExamples=40, examplesPerShard=5)
    plan = [r.key for r in generate.plan_shards(ctx, fast_teacher(ctx))]
    child = _child(tmp_path, fake, "batch", 40)
    _kill_when(child, fake, lambda: bool(ctx.store.list_keys(generate.BATCHES_PREFIX)))

    (record_key,) = ctx.store.list_keys(generate.BATCHES_PREFIX)
    record = ctx.store.get_json(record_key)
    assert fake.batches_created == 1 and sorted(record["shards"]) == sorted(plan)
    assert _committed(ctx) == set()

    fake.batch_polls_to_end = 0
    ctx = shop_context(
        tmp_path, baseUrl=fake.url, targetExamples=40, examplesPerShard=5, mode="batch"
    )
    summary = generate.run(ctx, fast_teacher(ctx), poll_interval_s=0.01).summary

    assert fake.batches_created == 1 and fake.message_requests() == []
    assert summary["generated"] == 40 and summary["usage"]["requests"] == 8
    assert summary["usage"]["output_tokens"] == fake.billed_batch.output_tokens
    _assert_invariants(ctx, plan)
