"""The pure parts of top-up generation: under-covered focus and round sizing."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from distillrun.jobs.topup import Focus, shard_focus, top_up_shards, under_covered


@dataclass(frozen=True)
class Example:
    tables: tuple[str, ...]
    constructs: tuple[str, ...]


def test_under_covered_tables_and_constructs_come_least_covered_first() -> None:
    accepted = [
        *[Example(("orders",), ("filter", "aggregate"))] * 30,
        *[Example(("customers", "orders"), ("join", "filter"))] * 10,
        Example(("products",), ("window",)),
    ]
    tables = ["customers", "orders", "products", "order_items"]
    focus = under_covered(accepted, tables, ["filter", "join", "window", "cte", "aggregate"])
    # even share = (40 + 10 + 1 + 0) / 4 = 12.75; half of it is 6.4
    assert focus.tables == ("order_items", "products")
    # 5% of 41 examples is 2.05
    assert focus.constructs == ("cte", "window")
    assert under_covered([], tables, ["filter"]) == Focus()


def test_the_shards_of_a_round_take_turns_through_the_focus() -> None:
    under = Focus(("a", "b", "c"), ("w", "x", "y", "z"))
    turns = [shard_focus(under, j) for j in range(3)]
    assert [t.tables for t in turns] == [("a", "b"), ("c", "a"), ("b", "c")]
    assert [t.constructs for t in turns] == [("w", "x", "y"), ("z", "w", "x"), ("y", "z", "w")]
    assert set(itertools.chain.from_iterable(t.tables for t in turns)) == {"a", "b", "c"}
    assert shard_focus(Focus(("a",), ()), 5) == Focus(("a",), ())


@pytest.mark.parametrize(
    ("missing", "accepted", "asked", "expected"),
    [
        (60, 180, 240, 2),  # 30 accepted per shard of 40
        (1, 180, 240, 1),  # at least one
        (1000, 10, 240, 6),  # never more than the first round
        (0, 240, 240, 0),
    ],
)
def test_a_round_is_sized_from_the_deficit_and_the_yield(
    missing: int, accepted: int, asked: int, expected: int
) -> None:
    assert top_up_shards(missing, accepted, asked, examples_per_shard=40, most=6) == expected
