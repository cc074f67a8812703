"""Every record's share of the call that wrote it, adding up exactly to what the server reported.

One teacher call (one shard) is paid for as a whole: its usage splits evenly over every entry
the reply held, the examples kept and the entries dropped (`ShardOutput.malformed`), since each
took the same prompt and a comparable part of the output. An example carries its share in
`GeneratedExample.usage`; the dropped entries' shares stay with the shard as
`ShardOutput.unattributed`, so for every shard, field by field,

    sum(example.usage) + unattributed == usage

with dollars added exactly (`pricing.from_usd`). A reply with no entry at all (an empty tool
call) keeps all of its usage unattributed.

Tokens are integers, split by the largest-remainder method. Dollars are split in the last
decimal place of the shard's own amount (a price is whole cents per million tokens, so an
amount has a handful of decimal places, nine with the batch discount), never in a coarser unit
that would round a share away: a share then has no more significant digits than the amount,
and a float (`Usage.usd`) holds any decimal of up to 15 significant digits exactly, so the
shares, read back with `from_usd`, add up to the amount. An amount with 16 or 17 significant
digits (a million dollars to the billionth, never one call's cost, or a float left by inexact
arithmetic) may have shares no float holds; it is left unattributed whole rather than split
inexactly.

`apportion` is pure and idempotent; every teacher applies it to the shard it builds, and it
derives the shares of shards stored before records carried them.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from distillrun.teacher.base import ShardOutput, Usage
from distillrun.teacher.pricing import from_usd, to_usd

_COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "requests")
"""The integer fields of `Usage`, split and added alike."""


def split_evenly(total: int, parts: int) -> list[int]:
    """`total` in `parts` (at least one) shares that sum to it exactly and differ by at most one:
    the largest-remainder method with equal weights, where every remainder ties and the ties go
    to the earliest shares, so the split is deterministic."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _split_usd(usd: float, parts: int) -> list[float] | None:
    """`usd` in `parts` shares whose exact values (`from_usd`) add up to `from_usd(usd)`; None
    when floats cannot hold such shares (see the module docstring)."""
    amount = from_usd(usd)
    exponent = amount.as_tuple().exponent
    if not isinstance(exponent, int):  # inf or nan: nothing to split
        return None
    unit = Decimal(1).scaleb(exponent)
    shares = [n * unit for n in split_evenly(int(amount.scaleb(-exponent)), parts)]
    if any(from_usd(to_usd(share)) != share for share in shares):
        return None
    return [to_usd(share) for share in shares]


def split_usage(usage: Usage, parts: int) -> list[Usage] | None:
    """`usage` in `parts` shares that add up to it exactly (`usage_sum`); None when it cannot be
    split so: no parts, or dollars a float cannot hold in exact shares."""
    if parts < 1:
        return None
    usd = _split_usd(usage.usd, parts)
    if usd is None:
        return None
    counts = {name: split_evenly(getattr(usage, name), parts) for name in _COUNTS}
    return [
        Usage(usd=usd[i], **{name: shares[i] for name, shares in counts.items()})
        for i in range(parts)
    ]


def usage_sum(usages: Iterable[Usage]) -> Usage:
    """`usages` added field by field, dollars exactly: the float of the exact sum."""
    items = list(usages)
    usd = sum((from_usd(u.usd) for u in items), Decimal(0))
    return Usage(
        usd=to_usd(usd), **{name: sum(getattr(u, name) for u in items) for name in _COUNTS}
    )


def apportion(output: ShardOutput) -> ShardOutput:
    """`output` with each example carrying its share of the shard's usage and the rest in
    `unattributed` (see the module docstring)."""
    kept = len(output.examples)
    shares = split_usage(output.usage, kept + len(output.malformed))
    if shares is None:
        mine, unattributed = [Usage() for _ in range(kept)], output.usage
    else:
        mine, unattributed = shares[:kept], usage_sum(shares[kept:])
    examples = [
        e.model_copy(update={"usage": u}) for e, u in zip(output.examples, mine, strict=True)
    ]
    return output.model_copy(update={"examples": examples, "unattributed": unattributed})
