"""Teacher benchmark against the fake Anthropic API (tests/fakes): how close generation runs to
the account's output-token limit, how many 429s the client causes, how much is wasted by a
forced restart, and what 1,000 accepted examples cost in realtime without caching versus batch
with caching. Not a test: it prints figures, and the goals next to them.

    .venv/bin/python bench/teacher_throughput.py [--seconds 90] [--scale 10]

Load is compressed by `--scale`: Tier-1 limits (50 requests, 30k input and 8k output tokens a
minute) are multiplied by it and the fake's latency (2.5 s per call) divided by it, so a run
sees as many refills as `scale` times as long a run at Tier 1 (the buckets still hold one
minute's worth: the first burst is a full minute of the scaled limit). The schema is a
generated 40-table warehouse with column comments (a prompt of ~6k tokens), the size where
prompt caching matters.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distillrun.api import parse_run  # noqa: E402
from distillrun.api.spec import Dialect  # noqa: E402
from distillrun.jobs import generate, validate  # noqa: E402
from distillrun.jobs.context import StageContext  # noqa: E402
from distillrun.sql.schema import parse_schema  # noqa: E402
from distillrun.store import open_store  # noqa: E402
from distillrun.teacher.anthropic import AnthropicTeacher  # noqa: E402
from distillrun.teacher.base import ShardOutput  # noqa: E402
from distillrun.teacher.factory import make_teacher  # noqa: E402
from tests.fakes.anthropic_server import FakeAnthropic  # noqa: E402
from tests.fakes.fixtures import FAST_RETRIES, ThreadExecutor  # noqa: E402
from tests.fakes.ratelimits import Limits  # noqa: E402

TIER1 = {"requestsPerMinute": 50, "inputTokensPerMinute": 30_000, "outputTokensPerMinute": 8_000}
LATENCY_S = 2.5
PER_SHARD = 20
KEY = "bench-key"


def warehouse_ddl(tables: int = 40, columns: int = 10) -> str:
    """A schema big enough that its prompt is mostly schema, as real warehouses are."""
    parts = []
    for t in range(tables):
        cols = [("id INTEGER PRIMARY KEY", f"surrogate key of fact_{t:02d}")]
        for c in range(columns):
            kind = ("INTEGER", "TEXT", "REAL", "DATE")[c % 4]
            cols.append((f"attr_{c:02d} {kind}", f"business attribute {c} of fact_{t:02d}"))
        body = "\n".join(
            f"    {d}{',' if i < len(cols) - 1 else ''} -- {note}"
            for i, (d, note) in enumerate(cols)
        )
        parts.append(f"-- Fact table {t}: one row per event of kind {t}\n")
        parts.append(f"CREATE TABLE fact_{t:02d} (\n{body}\n);\n")
    return "".join(parts)


def context(store: Path, url: str, **teacher: Any) -> StageContext:
    ddl = warehouse_ddl()
    data = {
        "apiVersion": "distillrun.dev/v1alpha1",
        "kind": "DistillRun",
        "metadata": {"name": "bench"},
        "spec": {
            "database": {"dialect": "sqlite", "schema": {"ddl": ddl}},
            "seedQuestions": ["How many events of kind 3 happened?", "Top attributes by count?"],
            "teacher": {
                "provider": "anthropic",
                "model": "claude-sonnet-5-5",
                "mode": "realtime",
                "examplesPerShard": PER_SHARD,
                "maxTopUpRounds": 0,  # throughput of a fixed plan
                "baseUrl": url,
                "budget": {"maxUSD": 1000},
                **teacher,
            },
        },
    }
    run = parse_run(data)
    schema = parse_schema(ddl, Dialect.SQLITE)
    root = open_store(str(store)).sub("default/bench/local")
    return StageContext(run=run, store=root, schema=schema, seed_sql=None)


def teacher_for(ctx: StageContext, **changes: Any) -> AnthropicTeacher:
    teacher = make_teacher(ctx.run.spec.teacher)
    assert isinstance(teacher, AnthropicTeacher)
    return dataclasses.replace(teacher, retry=FAST_RETRIES, **changes)


def scaled(scale: float) -> tuple[dict[str, int], Limits]:
    limits = {k: int(v * scale) for k, v in TIER1.items()}
    server = Limits(
        limits["requestsPerMinute"], limits["inputTokensPerMinute"], limits["outputTokensPerMinute"]
    )
    return limits, server


def throughput(seconds: float, scale: float, workers: int) -> dict[str, float]:
    """Realtime generation at Tier-1-like limits: a full bucket's burst, then about `seconds`
    (real) of load held up by the output-token limit."""
    limits, server = scaled(scale)
    per_minute = limits["outputTokensPerMinute"]
    # ~1,300 output tokens per 20-example shard from the fake: the burst, then `seconds` more
    shards = math.ceil(per_minute * (1 + seconds / 60) / 1300)
    with (
        TemporaryDirectory() as tmp,
        FakeAnthropic(api_key=KEY, limits=server, latency_s=LATENCY_S / scale) as fake,
    ):
        ctx = context(Path(tmp), fake.url, rateLimits=limits, targetExamples=shards * PER_SHARD)
        started = time.monotonic()
        generate.run(ctx, teacher_for(ctx), ThreadExecutor(workers))
        ended = max(t for t, _ in fake.billed_at)
        half = started + (ended - started) / 2
        late = sum(n for t, n in fake.billed_at if t > half)
        requests = len(fake.message_requests())
        return {
            "shards": shards,
            "seconds": ended - started,
            # the most the limits allow over the run: a full bucket plus its refill
            "fraction_of_allowance": fake.billed.output_tokens
            / (per_minute * (1 + (ended - started) / 60)),
            "sustained_fraction": late / (per_minute * (ended - half) / 60),
            "requests": requests,
            "client_429": fake.client_caused_429,
            "client_429_share": fake.client_caused_429 / requests,
        }


def restart_waste(scale: float, shards: int, workers: int) -> dict[str, float]:
    """Kill generation (SIGKILL) three quarters in, well past the first burst, at a moment with
    requests in flight; restart it, and count the output tokens paid for but not kept."""
    limits, server = scaled(scale)
    with (
        TemporaryDirectory() as tmp,
        FakeAnthropic(api_key=KEY, limits=server, latency_s=LATENCY_S / scale) as fake,
    ):
        args = [str(tmp), fake.url, str(shards), str(scale), str(workers)]
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", *args],
            env={**os.environ, "ANTHROPIC_API_KEY": KEY},
        )
        ctx = context(Path(tmp), fake.url, rateLimits=limits, targetExamples=shards * PER_SHARD)
        while len(ctx.store.list_keys(generate.SHARDS_PREFIX)) < shards * 3 // 4:
            assert child.poll() is None, "the child ended early"
            time.sleep(0.02)
        while not fake.busy:  # the worst moment: with replies in flight, about to be paid for
            time.sleep(0.001)
        child.kill()
        child.wait()
        fake.wait_idle()
        lost = fake.billed.messages - len(ctx.store.list_keys(generate.SHARDS_PREFIX))
        generate.run(ctx, teacher_for(ctx), ThreadExecutor(workers))
        kept = sum(
            ShardOutput.model_validate_json(ctx.store.get_bytes(k)).usage.output_tokens
            for k in ctx.store.list_keys(generate.SHARDS_PREFIX)
        )
        billed = fake.billed.output_tokens
        return {
            "billed": billed,
            "kept": kept,
            "lost_replies": lost,
            "wasted_share": (billed - kept) / billed,
        }


def child(tmp: str, url: str, shards: str, scale: str, workers: str) -> None:
    limits, _ = scaled(float(scale))
    ctx = context(Path(tmp), url, rateLimits=limits, targetExamples=int(shards) * PER_SHARD)
    generate.run(ctx, teacher_for(ctx), ThreadExecutor(int(workers)))


def cost_per_1000(shards: int) -> dict[str, float]:
    """The same plan written twice: realtime without caching, then batch with caching."""
    roomy = {k: v * 1000 for k, v in TIER1.items()}
    figures: dict[str, float] = {}
    for label, mode, caching in (
        ("realtime_no_cache", "realtime", False),
        ("batch_cache", "batch", True),
    ):
        with TemporaryDirectory() as tmp, FakeAnthropic(api_key=KEY, batch_polls_to_end=0) as fake:
            ctx = context(
                Path(tmp), fake.url, mode=mode, rateLimits=roomy, targetExamples=shards * PER_SHARD
            )
            teacher = teacher_for(ctx, prompt_caching=caching)
            usage = generate.run(ctx, teacher, ThreadExecutor(8), poll_interval_s=0.01).summary
            accepted = validate.run(ctx).summary["accepted"]
            usd = Decimal(repr(usage["usage"]["usd"]))
            figures[label] = float(usd / accepted * 1000)
            figures[f"{label}_accepted"] = accepted
    figures["ratio"] = figures["realtime_no_cache"] / figures["batch_cache"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=90.0, help="real seconds of load after the first burst"
    )
    parser.add_argument("--scale", type=float, default=10.0, help="time compression factor")
    parser.add_argument("--workers", type=int, default=16, help="threads writing shards")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    os.environ["ANTHROPIC_API_KEY"] = KEY

    t = throughput(args.seconds, args.scale, args.workers)
    print(
        f"throughput ({t['shards']} shards of {PER_SHARD}, {t['seconds']:.0f} s at Tier-1 limits "
        f"x{args.scale:g}, latency {LATENCY_S / args.scale:g} s):"
    )
    print(f"  output tokens, of what the limits allowed   {t['fraction_of_allowance']:.3f}")
    print(
        f"  output tokens/min, second half, of limit    {t['sustained_fraction']:.3f}"
        "   (goal >= 0.9)"
    )
    print(
        f"  client-caused 429s    {t['client_429']} of {t['requests']} requests = "
        f"{t['client_429_share']:.2%}   (goal < 1%)"
    )
    w = restart_waste(args.scale, shards=160, workers=args.workers)
    print("forced restart (SIGKILL after 120 of 160 shards with requests in flight, then a rerun):")
    print(
        f"  output tokens wasted  {w['billed'] - w['kept']} of {w['billed']} = "
        f"{w['wasted_share']:.2%}   (goal < 2%; {w['lost_replies']} paid replies lost at the kill)"
    )
    c = cost_per_1000(shards=25)
    print("cost per 1,000 accepted examples (500 examples, 40-table schema):")
    print(f"  realtime, no cache    ${c['realtime_no_cache']:.2f}")
    print(f"  batch + cache         ${c['batch_cache']:.2f}")
    print(f"  ratio                 {c['ratio']:.2f}x   (goal >= 3x)")


if __name__ == "__main__":
    main()
