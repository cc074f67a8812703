"""The rate governor and budget keeper: its buckets and pauses on a controlled clock, the budget
cap under concurrency against the fake API, and one governor shared by Ray tasks."""

from __future__ import annotations

import pickle
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from distillrun.api.spec import RateLimits
from distillrun.jobs import generate
from distillrun.jobs.context import StageFailed
from distillrun.teacher.anthropic.middleware import observed_limits
from distillrun.teacher.base import ShardOutput
from distillrun.teacher.errors import BudgetExhausted
from distillrun.teacher.governor import (
    GovernorClient,
    LocalGovernor,
    ObservedLimits,
    RateGovernor,
    Room,
)
from distillrun.teacher.pricing import from_usd
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.fixtures import ThreadExecutor, fast_teacher, list_usd, shop_context
from tests.fakes.ratelimits import Limits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def governor(
    clock: Clock, rpm: int = 60, itpm: int = 6000, otpm: int = 600, budget: str | None = None
) -> RateGovernor:
    limits = RateLimits(
        requests_per_minute=rpm, input_tokens_per_minute=itpm, output_tokens_per_minute=otpm
    )
    return RateGovernor(limits, Decimal(budget) if budget else None, clock=clock)


def test_requests_wait_for_the_tightest_bucket_and_output_is_reserved_up_front() -> None:
    clock = Clock()
    g = governor(clock)
    assert g.try_acquire(100, 400).wait_s == 0
    # 200 output tokens left of 600/min: a second 400-token request waits 200 / 10 per s
    assert g.try_acquire(100, 400).wait_s == pytest.approx(20.0)
    g.settle((100, 400), (80, 100))  # the first used 100: 300 come back
    assert g.try_acquire(100, 400).wait_s == 0
    clock.now += 1.0
    assert g.try_acquire(6000, 1).wait_s == pytest.approx(0.8)  # 5920 of 6000 input left


def test_server_headers_lower_the_buckets_and_429_529_pause_everyone() -> None:
    clock = Clock()
    g = governor(clock)
    g.observe(
        observed_limits(
            {
                "anthropic-ratelimit-requests-limit": "30",
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:00Z",
                "anthropic-ratelimit-output-tokens-remaining": "600",
            }
        )
    )
    assert g.snapshot()["limits"]["requests_per_minute"] == 30
    assert g.try_acquire(1, 1).wait_s == pytest.approx(2.0)  # one request per 2 s at 30/min
    clock.now += 2.0
    g.rate_limited(7.0)
    assert g.try_acquire(1, 1).wait_s == pytest.approx(7.0)
    clock.now += 7.0
    g.overloaded(None)
    g.overloaded(None)
    assert g.try_acquire(1, 1).wait_s == pytest.approx(2.0)  # 1 s, then 2 s for the second 529
    g.settle((0, 0), (0, 0))  # a success resets the overload backoff
    clock.now += 2.0
    g.overloaded(None)
    assert g.try_acquire(1, 1).wait_s == pytest.approx(1.0)


def test_anthropic_headers_parse_per_axis_and_malformed_values_are_ignored() -> None:
    observed = observed_limits(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "nan",
            "anthropic-ratelimit-input-tokens-limit": "-5",
            "anthropic-ratelimit-input-tokens-remaining": "29000",
            "anthropic-ratelimit-output-tokens-limit": "many",
            "anthropic-ratelimit-output-tokens-remaining": "7000",
            "x-ratelimit-limit-requests": "1",  # another provider's header: not anthropic's
        }
    )
    assert observed == ObservedLimits(
        requests=Room(limit=50),
        input_tokens=Room(remaining=29000),
        output_tokens=Room(remaining=7000),
    )
    assert observed_limits({"content-type": "application/json"}).empty


def test_an_empty_axis_stays_closed_until_the_reset_the_server_gave() -> None:
    clock = Clock()
    g = governor(clock, rpm=600)
    # a reset is only believed for an axis the server says is empty
    g.observe(ObservedLimits(requests=Room(remaining=1, reset_s=30.0)))
    assert g.try_acquire(1, 1).wait_s == 0
    g.observe(ObservedLimits(requests=Room(remaining=0, reset_s=30.0)))
    # the refill alone would allow one request in 0.1 s; the server said 30 s
    assert g.try_acquire(1, 1).wait_s == pytest.approx(30.0)
    clock.now += 30.0
    assert g.try_acquire(1, 1).wait_s == 0
    assert g.snapshot()["limits"]["requests_per_minute"] == 600  # the limit was never lowered


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def call(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))


def test_the_client_passes_observed_limits_on_picklable_and_skips_empty_ones() -> None:
    backend = Recorder()
    client = GovernorClient(backend)
    client.observe(ObservedLimits())
    assert backend.calls == []
    observed = ObservedLimits(output_tokens=Room(limit=8000, remaining=10, reset_s=1.5))
    client.observe(observed)
    assert backend.calls == [("observe", (observed,))]
    assert pickle.loads(pickle.dumps(observed)) == observed  # what a Ray actor call does to it


def test_the_budget_counts_reservations_in_flight_and_refuses_only_what_does_not_fit() -> None:
    g = governor(Clock(), budget="1.00")
    assert g.reserve(Decimal("0.60")).stop is None
    # 0.50 fits once the request in flight settles below its worst case: it waits, not fails
    waiting = g.reserve(Decimal("0.50"))
    assert waiting.stop is None and waiting.wait_s > 0
    never = g.reserve(Decimal("1.10")).stop  # would not fit even if everything cost nothing
    assert never is not None and never.reason == "BudgetExhausted"
    refused = g.reserve(Decimal("0.50"), False, False).stop  # a batch being put together
    assert refused is not None and refused.reason == "BudgetExhausted"
    assert "$0.4000" in refused.message
    g.spend(Decimal("0.60"), Decimal("0.20"))
    assert g.reserve(Decimal("0.50")).stop is None  # 0.20 spent + 0.50 reserved
    assert g.reserve(Decimal("0.90"), True).stop is None  # an already-submitted batch
    client = GovernorClient(LocalGovernor(g))
    with pytest.raises(BudgetExhausted):
        client.reserve(Decimal("0.01"), wait=False)
    client.acquire(1, 1)  # a refusal fails that request only: the ones in flight go out
    g.spend(Decimal("0.50"), Decimal("0.10"))
    assert g.reserve(Decimal("0.80")).stop is not None  # 0.30 spent: 0.80 can never fit
    g.spend(Decimal("0.90"), Decimal("0.40"))
    assert client.reserve(Decimal("0.01")).usd == Decimal("0.01")  # money freed up again


def test_a_request_waits_for_the_requests_in_flight_to_settle_then_fits() -> None:
    """maxUSD 2, worst case $0.85 and real cost $0.19 a request: two fit in flight at their
    worst, and the third goes out as soon as one of them settles, instead of failing with
    BudgetExhausted while nothing has been spent."""
    g = governor(Clock(), budget="2.00")
    first = Decimal("0.85")
    settled: list[float] = []

    def settle_one(seconds: float) -> None:  # the client's sleep: meanwhile a reply comes in
        settled.append(seconds)
        g.spend(first, Decimal("0.19"))

    client = GovernorClient(LocalGovernor(g), sleep=settle_one)
    client.reserve(first)
    client.reserve(first)
    assert client.reserve(first).usd == first
    assert len(settled) == 1 and 0 < settled[0] <= 1
    assert g.snapshot()["spent_usd"] == "0.19" and g.snapshot()["refused_usd"] == 0


def test_the_budget_cap_holds_with_many_workers_in_flight(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    fake = anthropic_env
    fake.latency_s = 0.1
    budget = 0.15
    ctx = shop_context(
        tmp_path,
        baseUrl=fake.url,
        targetExamples=200,
        examplesPerShard=10,
        budget={"maxUSD": budget},
    )
    teacher = fast_teacher(ctx)
    with pytest.raises(StageFailed) as failed:
        generate.run(ctx, teacher, ThreadExecutor(8))
    assert failed.value.reason == "BudgetExhausted"

    b = fake.billed
    billed = list_usd(b)
    assert Decimal(0) < billed <= Decimal(str(budget))
    # every request that was paid for was committed (the stage drained the shards in flight)
    committed = [
        ShardOutput.model_validate_json(ctx.store.get_bytes(key))
        for key in ctx.store.list_keys(generate.SHARDS_PREFIX)
    ]
    assert len(committed) == b.messages < 20
    assert sum(from_usd(s.usage.usd) for s in committed) == billed

    # a rerun with the same budget starts from what was spent: it stops before any request
    with pytest.raises(StageFailed) as again:
        generate.run(ctx, teacher, ThreadExecutor(8))
    assert again.value.reason == "BudgetExhausted" and fake.billed.messages == b.messages


def test_one_governor_paces_every_ray_task(
    tmp_path: Path, anthropic_env: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distillrun.local.runner import local_ray

    fake = anthropic_env
    server_limits = Limits(
        requests_per_minute=60, input_tokens_per_minute=10**7, output_tokens_per_minute=10**7
    )
    with FakeAnthropic(limits=server_limits, api_key=fake.api_key) as limited:
        ctx = shop_context(
            tmp_path,
            baseUrl=limited.url,
            targetExamples=62,
            examplesPerShard=1,
            rateLimits={
                "requestsPerMinute": 60,
                "inputTokensPerMinute": 10**7,
                "outputTokensPerMinute": 10**7,
            },
        )
        with local_ray(2) as executor:
            summary = generate.run(ctx, fast_teacher(ctx), executor).summary
        assert summary["shards"] == 62 and summary["usage"]["requests"] == 62
        # 60 in the first burst, then one a second: the server never had to refuse one
        assert limited.client_caused_429 == 0
        governor_numbers = ctx.store.get_json(generate.MANIFEST_KEY)["governor"]
        assert governor_numbers["granted"] == 62 and governor_numbers["rate_limited"] == 0


@pytest.mark.parametrize("path", ["ray", "no-ray"])
def test_a_budget_for_two_worst_cases_pays_for_every_shard_on_both_paths(
    tmp_path: Path, anthropic_env: FakeAnthropic, path: str
) -> None:
    """The README's promise on the Ray path (shards in flight together) and the `--no-ray` path
    (one after the other): a budget of 2.5 worst cases pays for five shards that really cost
    about a quarter of that each; the requests beyond the first two wait for replies to settle
    instead of ending the run with BudgetExhausted and nothing spent."""
    from distillrun.jobs.parallel import Executor, InlineExecutor
    from distillrun.local.runner import local_ray
    from distillrun.teacher.estimate import worst_case_usd
    from distillrun.teacher.prompt import build_prompt

    fake = anthropic_env
    fake.latency_s = 0.2
    probe = shop_context(tmp_path / "probe", baseUrl=fake.url, targetExamples=50)
    teacher = fast_teacher(probe)
    worst = max(
        worst_case_usd(build_prompt(r), teacher.price, batch=False)
        for r in generate.plan_shards(probe, teacher)
    )
    budget = worst * Decimal("2.5")
    ctx = shop_context(tmp_path, baseUrl=fake.url, targetExamples=50, budget={"maxUSD": budget})

    def written(executor: Executor) -> dict[str, Any]:
        return generate.run(ctx, fast_teacher(ctx), executor).summary

    if path == "ray":
        with local_ray(2) as executor:
            summary = written(executor)
    else:
        summary = written(InlineExecutor())

    assert summary["shards"] == 5 and summary["generated"] == 50
    assert fake.billed.messages == 5 and list_usd(fake.billed) <= budget
    assert ctx.store.get_json(generate.MANIFEST_KEY)["governor"]["refused_usd"] == 0
