"""What a set of shard requests should cost, before any call is made, and at most.

Two numbers with two jobs. The *expected* cost is the pre-flight estimate printed before a run
spends anything (and compared with `budget.maxUSD`): typical token counts (3.5 characters per
token, outputs at 70% of `max_tokens`), the cached system prompt written once and read by every
later request when it is long enough to be cached. The *worst-case* cost of one request is what
the governor reserves before sending it: every input character a token of its own at half the
usual size, at the dearer of the input and cache-write prices, and the whole `max_tokens` of
output. Reserving the worst case is what keeps the budget a hard cap with many requests in
flight.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from distillrun.api.spec import RateLimits
from distillrun.teacher.base import Usage
from distillrun.teacher.pricing import ModelPrice
from distillrun.teacher.prompt import Prompt

EXPECTED_CHARS_PER_TOKEN = 3.5
WORST_CHARS_PER_TOKEN = 2.0
EXPECTED_OUTPUT_SHARE = 0.7
MIN_CACHEABLE_TOKENS = 1024
"""Shortest prefix the API caches (1,024 tokens; some models need 4,096: then the estimate is
optimistic about cache reads for mid-sized schemas)."""
FRAMING_CHARS = 1500
"""Request structure around the prompt texts: roles, the tool definition, JSON punctuation, and
the few hundred tokens of tool-use instructions the API adds when tools are given."""


def _prefix_chars(prompt: Prompt) -> int:
    return len(prompt.system) + len(json.dumps(prompt.tool_schema)) + FRAMING_CHARS


def worst_case_usd(prompt: Prompt, price: ModelPrice, *, batch: bool) -> Decimal:
    """An upper bound on what one request for `prompt` can cost (see the module docstring)."""
    chars = _prefix_chars(prompt) + len(prompt.user)
    worst = Usage(
        cache_write_tokens=math.ceil(chars / WORST_CHARS_PER_TOKEN),
        output_tokens=prompt.max_tokens,
    )
    dearest = ModelPrice(
        input=price.input,
        output=price.output,
        cache_write=max(price.input, price.cache_write),
        cache_read=price.cache_read,
        batch_discount=price.batch_discount,
    )
    return dearest.cost(worst, batch=batch)


@dataclass(frozen=True)
class CostEstimate:
    """The expected tokens and dollars of a set of requests, and their worst case."""

    requests: int
    input_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    output_tokens: int
    usd: Decimal
    worst_usd: Decimal
    batch: bool
    realtime_minutes: float
    """How long the requests take at the configured rate limits, sent one after the other as
    fast as the limits allow (the floor for realtime mode)."""

    def describe(self, budget_usd: float) -> str:
        mode = "batch" if self.batch else "realtime"
        return (
            f"pre-flight estimate: {self.requests} {mode} request(s), ~{self.input_tokens} input "
            f"+ {self.cache_write_tokens} cache-write + {self.cache_read_tokens} cache-read + "
            f"{self.output_tokens} output tokens = ~${self.usd:.2f} "
            f"(at most ${self.worst_usd:.2f}; budget ${budget_usd:.2f})"
        )


def estimate(
    prompts: Sequence[Prompt],
    price: ModelPrice,
    limits: RateLimits,
    *,
    batch: bool,
    caching: bool,
) -> CostEstimate:
    """The expected cost of sending `prompts` (see the module docstring)."""
    uncached = written = read = output = 0
    worst = Decimal(0)
    cached_prefixes: set[str] = set()
    for prompt in prompts:
        prefix = math.ceil(_prefix_chars(prompt) / EXPECTED_CHARS_PER_TOKEN)
        uncached += math.ceil(len(prompt.user) / EXPECTED_CHARS_PER_TOKEN)
        if not caching or prefix < MIN_CACHEABLE_TOKENS:
            uncached += prefix
        elif prompt.system in cached_prefixes:
            read += prefix
        else:
            cached_prefixes.add(prompt.system)
            written += prefix
        output += math.ceil(prompt.max_tokens * EXPECTED_OUTPUT_SHARE)
        worst += worst_case_usd(prompt, price, batch=batch)
    usage = Usage(
        input_tokens=uncached,
        output_tokens=output,
        cache_write_tokens=written,
        cache_read_tokens=read,
    )
    minutes = max(
        len(prompts) / limits.requests_per_minute,
        (uncached + written) / limits.input_tokens_per_minute,
        output / limits.output_tokens_per_minute,
    )
    return CostEstimate(
        requests=len(prompts),
        input_tokens=uncached,
        cache_write_tokens=written,
        cache_read_tokens=read,
        output_tokens=output,
        usd=price.cost(usage, batch=batch),
        worst_usd=worst,
        batch=batch,
        realtime_minutes=minutes,
    )
