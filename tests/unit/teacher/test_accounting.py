"""Each record's share of its call: integer tokens and decimal dollars split so that the records
and the shard's unattributed rest add up to the shard's usage exactly, for any split."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from distillrun.teacher.accounting import apportion, split_evenly, split_usage, usage_sum
from distillrun.teacher.base import GeneratedExample, ShardOutput, Usage
from distillrun.teacher.pricing import from_usd, load_prices, to_usd

PROBLEM: dict[str, Any] = {"reason": "refusal", "stop_reason": "refusal", "detail": "", "item": ""}


def _example(i: int) -> GeneratedExample:
    return GeneratedExample(
        id=f"k-{i:03d}", shard="k", question=f"q{i}", sql="SELECT 1", teacher="t"
    )


def _shard(usage: Usage, examples: int, malformed: int = 0) -> ShardOutput:
    return ShardOutput(
        key="k",
        examples=[_example(i) for i in range(examples)],
        usage=usage,
        malformed=[PROBLEM] * malformed,
    )


def _accounted(shard: ShardOutput) -> Usage:
    return usage_sum([*(e.usage for e in shard.examples), shard.unattributed])


@pytest.mark.parametrize(
    ("total", "parts", "shares"),
    [
        (0, 1, [0]),
        (7, 1, [7]),
        (0, 3, [0, 0, 0]),
        (9, 3, [3, 3, 3]),
        (10, 3, [4, 3, 3]),
        (11, 3, [4, 4, 3]),
        (2, 5, [1, 1, 0, 0, 0]),
        (1_000_003, 4, [250_001, 250_001, 250_001, 250_000]),
    ],
)
def test_tokens_split_by_largest_remainder(total: int, parts: int, shares: list[int]) -> None:
    assert split_evenly(total, parts) == shares


USAGE = Usage(
    input_tokens=1_001,
    output_tokens=2_999,
    cache_read_tokens=4_097,
    cache_write_tokens=5,
    usd=0.0244101,
    requests=1,
)


@pytest.mark.parametrize(
    ("usage", "parts", "usd"),
    [
        # one record carries the whole call
        (USAGE, 1, [Decimal("0.0244101")]),
        # the remainder of the last decimal place goes to the earliest shares
        (USAGE, 4, [Decimal("0.0061026"), Decimal("0.0061025"), *[Decimal("0.0061025")] * 2]),
        # tiny amounts: a batch-priced cache read of one token, split finer than a micro-dollar
        (Usage(cache_read_tokens=1, usd=1.5e-7), 2, [Decimal("8e-8"), Decimal("7e-8")]),
        (Usage(usd=1e-9), 3, [Decimal("1e-9"), Decimal(0), Decimal(0)]),
        (Usage(), 3, [Decimal(0)] * 3),
        (Usage(usd=2.5), 2, [Decimal("1.3"), Decimal("1.2")]),
    ],
)
def test_dollars_split_in_the_amounts_own_last_place(
    usage: Usage, parts: int, usd: list[Decimal]
) -> None:
    shares = split_usage(usage, parts)
    assert shares is not None
    assert [from_usd(s.usd) for s in shares] == usd
    assert usage_sum(shares) == usage


def test_cache_tokens_and_requests_split_like_the_rest() -> None:
    shares = split_usage(USAGE, 3)
    assert shares is not None
    assert [s.cache_read_tokens for s in shares] == [1_366, 1_366, 1_365]
    assert [s.cache_write_tokens for s in shares] == [2, 2, 1]
    assert [s.requests for s in shares] == [1, 0, 0]
    assert [s.input_tokens for s in shares] == [334, 334, 333]


def test_any_priced_call_splits_exactly_over_any_number_of_records() -> None:
    rng = random.Random(7)
    prices = list(load_prices().models.values())
    for _ in range(300):
        price = rng.choice(prices)
        tokens = Usage(
            input_tokens=rng.randrange(20_000),
            output_tokens=rng.randrange(20_000),
            cache_read_tokens=rng.randrange(50_000),
            cache_write_tokens=rng.randrange(50_000),
            requests=1,
        )
        usage = tokens.model_copy(
            update={"usd": to_usd(price.cost(tokens, batch=rng.random() < 0.5))}
        )
        parts = rng.randrange(1, 40)
        shares = split_usage(usage, parts)
        assert shares is not None
        assert usage_sum(shares) == usage
        assert sum(from_usd(s.usd) for s in shares) == from_usd(usage.usd)
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            values = [getattr(s, name) for s in shares]
            assert max(values) - min(values) <= 1


def test_nothing_to_split_over_or_no_exact_float_shares_is_not_split() -> None:
    assert split_usage(USAGE, 0) is None
    # 17 significant digits: thirds of it have no exact float, so it is not split at all
    assert split_usage(Usage(usd=0.1 + 0.2), 3) is None


@pytest.mark.parametrize(
    ("examples", "malformed", "mine", "rest"),
    [
        (0, 0, [], USAGE),  # an empty reply: the call is paid for, but by no record
        (0, 1, [], USAGE),  # a refusal: only malformed output
        (1, 0, [USAGE], Usage()),
        (2, 2, None, None),  # malformed entries' shares stay with the shard
        (7, 1, None, None),
        (13, 0, None, None),
    ],
)
def test_records_and_the_unattributed_rest_add_up_to_the_shard(
    examples: int, malformed: int, mine: list[Usage] | None, rest: Usage | None
) -> None:
    shard = apportion(_shard(USAGE, examples, malformed))
    assert _accounted(shard) == shard.usage == USAGE
    if mine is not None:
        assert [e.usage for e in shard.examples] == mine
    if rest is not None:
        assert shard.unattributed == rest
    if malformed and examples:
        shares = split_usage(USAGE, examples + malformed)
        assert shares is not None
        assert shard.unattributed == usage_sum(shares[examples:]) != Usage()
    assert apportion(shard) == shard


def test_a_call_whose_dollars_cannot_be_split_stays_unattributed_whole() -> None:
    usage = USAGE.model_copy(update={"usd": 0.1 + 0.2})
    shard = apportion(_shard(usage, 3))
    assert [e.usage for e in shard.examples] == [Usage()] * 3
    assert shard.unattributed == usage == _accounted(shard)


def test_shares_survive_storage_exactly() -> None:
    shard = apportion(_shard(USAGE, 6, 1))
    stored = ShardOutput.model_validate_json(shard.model_dump_json())
    assert stored == shard and _accounted(stored) == USAGE


def test_a_shard_stored_before_records_carried_usage_loads_and_can_be_apportioned() -> None:
    old = _shard(USAGE, 3).model_dump(mode="json")
    for example in old["examples"]:
        del example["usage"]
    del old["unattributed"]
    loaded = ShardOutput.model_validate(old)
    assert all(e.usage == Usage() for e in loaded.examples) and loaded.unattributed == Usage()
    assert loaded.usage == USAGE  # the totals still come from the shard's own usage
    assert _accounted(apportion(loaded)) == USAGE
