"""What a top-up round of the generate stage asks for: how many shards, and about what.

When the shards planned from `targetExamples` yield fewer accepted examples than that (the
teacher repeated itself, or wrote SQL that does not run), the generate stage asks for more, a
round at a time. A round is sized from what is missing and the yield observed so far (accepted
examples per example asked for), never larger than the first round. Each of its shards is
steered toward what the accepted examples under-cover: tables read by fewer than half an even
share of them, and constructs (`sql.constructs`) shown by fewer than `MIN_CONSTRUCT_SHARE` of
them; a round's shards take turns through that list so together they cover all of it. All of
this is pure: the stage stores the round it plans before asking the teacher anything.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

TABLE_SHARE_FLOOR = 0.5
"""A table is under-covered below this fraction of an even share of table uses."""
MIN_CONSTRUCT_SHARE = 0.05
"""A construct is under-covered when fewer than this share of accepted examples show it."""
FOCUS_TABLES = 2
FOCUS_CONSTRUCTS = 3
"""Tables and constructs one top-up shard is steered toward."""


class Covered(Protocol):
    """An accepted example, as far as coverage goes."""

    @property
    def tables(self) -> Sequence[str]: ...

    @property
    def constructs(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class Focus:
    """Tables and construct tags, least covered first."""

    tables: tuple[str, ...] = ()
    constructs: tuple[str, ...] = ()

    def describe(self) -> str:
        return ", ".join([*self.tables, *self.constructs]) or "none"


def _least_first(counts: Counter[str], names: Sequence[str], below: float) -> tuple[str, ...]:
    order = {name: i for i, name in enumerate(names)}
    under = [name for name in names if counts[name] < below]
    return tuple(sorted(under, key=lambda name: (counts[name], order[name])))


def under_covered(
    accepted: Sequence[Covered], tables: Sequence[str], constructs: Sequence[str]
) -> Focus:
    """The tables of `tables` and constructs of `constructs` the accepted examples under-use
    (thresholds in the module docstring), least covered first; ties keep the given order."""
    table_uses = Counter(t for example in accepted for t in set(example.tables))
    construct_uses = Counter(c for example in accepted for c in set(example.constructs))
    even_share = sum(table_uses[t] for t in tables) / len(tables) if tables else 0.0
    return Focus(
        tables=_least_first(table_uses, tables, TABLE_SHARE_FLOOR * even_share),
        constructs=_least_first(construct_uses, constructs, MIN_CONSTRUCT_SHARE * len(accepted)),
    )


def _turn(items: tuple[str, ...], shard: int, size: int) -> tuple[str, ...]:
    if len(items) <= size:
        return items
    return tuple(items[(shard * size + k) % len(items)] for k in range(size))


def shard_focus(under: Focus, shard: int) -> Focus:
    """Shard `shard` of a round's share of `under`: the shards of a round take turns."""
    return Focus(
        tables=_turn(under.tables, shard, FOCUS_TABLES),
        constructs=_turn(under.constructs, shard, FOCUS_CONSTRUCTS),
    )


def top_up_shards(
    missing: int, accepted: int, asked: int, examples_per_shard: int, most: int
) -> int:
    """Shards to ask for `missing` more accepted examples, at the yield so far (`accepted` of
    `asked` examples asked for); at least one, at most `most`. Only called after a round that
    added accepted examples, so the yield is positive."""
    if missing <= 0:
        return 0
    per_shard = examples_per_shard * accepted / asked
    return max(1, min(most, math.ceil(missing / per_shard)))
