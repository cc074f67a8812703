"""One rate governor and budget keeper per run, shared by every shard in flight.

Why one: the account's limits (requests, input tokens and output tokens per minute) and the
run's budget are shared by all workers, so each worker pacing itself would overshoot by the
number of workers. `RateGovernor` holds the state; in a Ray run it is a Ray actor (its methods
then run one at a time), otherwise a plain object behind a lock: the same class either way.
Every method returns at once; waiting happens on the caller's side (`GovernorClient.acquire`),
so one slow request never blocks the actor.

Rates: three token buckets that refill continuously, as the API's do. A request takes one
request, its estimated input tokens and its whole `max_tokens` of output at the start (the API
reserves output the same way) and is settled to the real counts when it ends. The governor
adapts to what the server says: each provider turns its rate-limit headers into
`ObservedLimits` (anthropic's `anthropic-ratelimit-*`, an OpenAI-style server's
`x-ratelimit-*`), which lower the buckets when the account has less room than configured
(another client, a lower tier); and a 429 or 529 pauses every worker (honouring `retry-after`),
not just the one that got it.

Money: before each request the caller reserves its worst-case cost, and spent + reserved never
passes `budget.maxUSD`, so the cap holds however many workers are in flight. When the request
ends the reservation becomes the exact cost. A request that does not fit only because of
reservations in flight waits for them to settle (they usually cost far less than their worst
case: a budget of $2 with $0.85 worst and $0.19 real per request pays for nine requests, not
two); one that would not fit even if everything in flight cost nothing is refused
(`BudgetExhausted`). A refusal fails that one request only: the others in flight go on.

Stopping: a worker that hits a failure retrying cannot fix (spend limit, bad key) stops the
governor, and every other worker stops at its next `acquire` or `reserve`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from distillrun.api.spec import RateLimits
from distillrun.teacher.errors import STOPS, BudgetExhausted, TeacherStop

MAX_SLEEP_S = 1.0
"""Longest single sleep while waiting for capacity: a stop or a refill is noticed this fast."""
OVERLOAD_PAUSE_S = (1.0, 30.0)
"""Pause after a 529 without `retry-after`: first value, doubled per consecutive 529, capped."""
DEFAULT_RATE_LIMIT_PAUSE_S = 5.0
"""Pause after a 429 that says nothing about when to retry."""
SETTLE_POLL_S = 0.2
"""How often a request waiting for reservations in flight to settle asks again."""


@dataclass(frozen=True)
class Stop:
    """Why the governor stopped: a `TeacherStop` reason and its message."""

    reason: str
    message: str

    def error(self) -> TeacherStop:
        return STOPS.get(self.reason, TeacherStop)(self.message)


@dataclass(frozen=True)
class Room:
    """What a server said about one rate-limit axis; None where it said nothing usable.

    `reset_s` is how long until the axis is back to its full allowance. It is only acted on
    when `remaining` is 0: then the server has said when room returns, and asking earlier can
    only earn a 429. Otherwise the bucket's own continuous refill is the better guess, since
    servers differ on what their reset means (a per-minute window, a day, a fixed window)."""

    limit: float | None = None
    remaining: float | None = None
    reset_s: float | None = None


@dataclass(frozen=True)
class ObservedLimits:
    """The provider-neutral facts of one response's rate-limit headers, per governor axis.

    Each teacher parses its own provider's headers into this (a pure function next to the
    teacher); the governor never sees a header name. Small and frozen, so it pickles to the
    Ray actor cheaply."""

    requests: Room = Room()
    input_tokens: Room = Room()
    output_tokens: Room = Room()

    @property
    def empty(self) -> bool:
        """Whether there is nothing to adopt (a server that sends no such headers, as vLLM)."""
        return self == ObservedLimits()


@dataclass(frozen=True)
class Grant:
    """The answer to `try_acquire`: wait this long and ask again, or go (0), or stop."""

    wait_s: float
    stop: Stop | None = None


class _Bucket:
    """A continuously refilled allowance of `capacity` per minute."""

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.stamp = now
        self.closed_until = now

    @property
    def rate(self) -> float:
        return self.capacity / 60.0

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` fits; call right after `refill` (the bucket's `stamp` is now)."""
        missing = min(amount, self.capacity) - self.level
        return max(0.0, missing / self.rate, self.closed_until - self.stamp)

    def adopt(self, room: Room) -> None:
        """Take the server's word when it reports less room than this bucket believes (never
        more: a higher limit than configured may belong to someone else's share)."""
        if room.limit is not None and 0 < room.limit < self.capacity:
            self.capacity = room.limit
            self.level = min(self.level, room.limit)
        if room.remaining is not None:
            self.level = min(self.level, room.remaining)
            if room.remaining <= 0 and room.reset_s is not None:
                self.closed_until = max(self.closed_until, self.stamp + room.reset_s)


def plain_number(value: str | None) -> float | None:
    """`value` as a finite, non-negative number; None when absent or not one (a malformed
    header is ignored rather than trusted: `inf` would stall the run forever)."""
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and number >= 0 else None


def header_number(headers: Mapping[str, str], name: str) -> float | None:
    """A header's value as a `plain_number`."""
    return plain_number(headers.get(name))


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked to wait (`retry-after-ms`, else `retry-after` in seconds)."""
    millis = header_number(headers, "retry-after-ms")
    if millis is not None:
        return millis / 1000
    seconds = header_number(headers, "retry-after")
    if seconds is not None:
        return seconds
    return None


class RateGovernor:
    """The shared state; see the module docstring. Not thread-safe by itself: wrap it with
    `LocalGovernor` in one process, or run it as a Ray actor."""

    def __init__(
        self,
        limits: RateLimits,
        budget_usd: Decimal | None,
        spent_usd: Decimal = Decimal(0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        now = clock()
        self._requests = _Bucket(limits.requests_per_minute, now)
        self._input = _Bucket(limits.input_tokens_per_minute, now)
        self._output = _Bucket(limits.output_tokens_per_minute, now)
        self._paused_until = now
        self._overloads = 0
        self._budget = budget_usd
        self._spent = spent_usd
        self._reserved = Decimal(0)
        self._stop: Stop | None = None
        self._stats = {"granted": 0, "rate_limited": 0, "overloaded": 0, "refused_usd": 0}

    # -- rates -------------------------------------------------------------------------------

    def try_acquire(self, input_tokens: int, output_tokens: int) -> Grant:
        """Take one request's allowance if all three buckets (and no pause) allow it now."""
        if self._stop is not None:
            return Grant(0.0, self._stop)
        now = self._clock()
        if now < self._paused_until:
            return Grant(self._paused_until - now)
        wanted = ((self._requests, 1), (self._input, input_tokens), (self._output, output_tokens))
        for bucket, _ in wanted:
            bucket.refill(now)
        wait = max(bucket.wait_for(amount) for bucket, amount in wanted)
        if wait > 0:
            return Grant(wait)
        for bucket, amount in wanted:
            bucket.level -= min(amount, bucket.capacity)
        self._stats["granted"] += 1
        return Grant(0.0)

    def settle(self, reserved: tuple[int, int], used: tuple[int, int]) -> None:
        """Correct a request's (input, output) reservation to what it really used."""
        self._input.level += reserved[0] - used[0]
        self._output.level += reserved[1] - used[1]
        self._input.level = min(self._input.level, self._input.capacity)
        self._output.level = min(self._output.level, self._output.capacity)
        self._overloads = 0

    def observe(self, limits: ObservedLimits) -> None:
        """Adapt to what a response's rate-limit headers said (see `ObservedLimits`)."""
        now = self._clock()
        for bucket, room in (
            (self._requests, limits.requests),
            (self._input, limits.input_tokens),
            (self._output, limits.output_tokens),
        ):
            bucket.refill(now)
            bucket.adopt(room)

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429: everybody waits `retry-after`, not only the worker that got it."""
        self._stats["rate_limited"] += 1
        self._pause(retry_after if retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE_S)

    def overloaded(self, retry_after: float | None) -> None:
        """A 529: the service is busy for everyone; pause, longer for each one in a row."""
        self._stats["overloaded"] += 1
        first, cap = OVERLOAD_PAUSE_S
        backoff = min(cap, first * 2**self._overloads)
        self._overloads += 1
        self._pause(retry_after if retry_after is not None else backoff)

    def _pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    # -- money -------------------------------------------------------------------------------

    def reserve(self, usd: Decimal, force: bool = False, wait: bool = True) -> Grant:
        """Set `usd` aside for a request (see the module docstring). `force` sets aside money
        already committed (a batch submitted before a restart); `wait=False` refuses at once
        what does not fit now, for a caller whose own reservations are what is in flight (a
        batch being assembled), since waiting for them would never end."""
        if force:
            self._reserved += usd
            return Grant(0.0)
        if self._stop is not None:
            return Grant(0.0, self._stop)
        if self._budget is not None and self._spent + self._reserved + usd > self._budget:
            if wait and self._reserved > 0 and self._spent + usd <= self._budget:
                return Grant(SETTLE_POLL_S)
            self._stats["refused_usd"] += 1
            left = self._budget - self._spent - self._reserved
            return Grant(
                0.0,
                Stop(
                    BudgetExhausted.reason,
                    f"the next request may cost up to ${usd:.4f} but only ${left:.4f} of "
                    f"budget.maxUSD ${self._budget} is left (spent ${self._spent:.4f}, "
                    f"${self._reserved:.4f} reserved by requests in flight)",
                ),
            )
        self._reserved += usd
        return Grant(0.0)

    def spend(self, reserved: Decimal, actual: Decimal) -> None:
        """A request ended: its reservation becomes its real cost (0 if it failed)."""
        self._reserved -= reserved
        self._spent += actual

    # -- stopping and reporting --------------------------------------------------------------

    def stop(self, reason: str, message: str) -> None:
        """Stop every worker at its next acquire/reserve; the first stop's reason wins."""
        if self._stop is None:
            self._stop = Stop(reason, message)

    def stopped(self) -> Stop | None:
        return self._stop

    def snapshot(self) -> dict[str, Any]:
        """Numbers for the stage summary and the benchmark."""
        return {
            **self._stats,
            "spent_usd": str(self._spent),
            "reserved_usd": str(self._reserved),
            "limits": {
                "requests_per_minute": self._requests.capacity,
                "input_tokens_per_minute": self._input.capacity,
                "output_tokens_per_minute": self._output.capacity,
            },
        }


class _Backend(Protocol):
    def call(self, method: str, *args: Any) -> Any: ...


class LocalGovernor:
    """A RateGovernor in this process, safe to share between threads."""

    def __init__(self, governor: RateGovernor) -> None:
        self._governor = governor
        self._lock = threading.Lock()

    def call(self, method: str, *args: Any) -> Any:
        with self._lock:
            return getattr(self._governor, method)(*args)


class RayGovernor:
    """A RateGovernor running as a Ray actor; picklable, so Ray tasks can share it."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    def call(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self._actor, method).remote(*args))


@dataclass(frozen=True)
class Reservation:
    usd: Decimal


class GovernorClient:
    """What a teacher holds: typed, blocking calls on a local or Ray governor."""

    def __init__(self, backend: _Backend, sleep: Callable[[float], None] = time.sleep) -> None:
        self._backend = backend
        self._sleep = sleep

    def __getstate__(self) -> dict[str, Any]:
        return {"_backend": self._backend}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._backend = state["_backend"]
        self._sleep = time.sleep

    def acquire(self, input_tokens: int, output_tokens: int) -> None:
        """Waits until one request of this size fits the limits; raises if the run stopped."""
        while True:
            grant: Grant = self._backend.call("try_acquire", input_tokens, output_tokens)
            if grant.stop is not None:
                raise grant.stop.error()
            if grant.wait_s <= 0:
                return
            self._sleep(min(grant.wait_s, MAX_SLEEP_S))

    def settle(self, reserved: tuple[int, int], used: tuple[int, int]) -> None:
        self._backend.call("settle", reserved, used)

    def observe(self, limits: ObservedLimits) -> None:
        """Passes what a response said on; nothing to say costs no (Ray) call."""
        if not limits.empty:
            self._backend.call("observe", limits)

    def rate_limited(self, retry_after: float | None) -> None:
        self._backend.call("rate_limited", retry_after)

    def overloaded(self, retry_after: float | None) -> None:
        self._backend.call("overloaded", retry_after)

    def reserve(self, usd: Decimal, *, wait: bool = True) -> Reservation:
        """Sets `usd` aside, waiting while reservations in flight may free enough of the budget;
        raises BudgetExhausted when it cannot fit (see `RateGovernor.reserve`), or the run's
        stop reason once it stopped."""
        while True:
            grant: Grant = self._backend.call("reserve", usd, False, wait)
            if grant.stop is not None:
                raise grant.stop.error()
            if grant.wait_s <= 0:
                return Reservation(usd)
            self._sleep(min(grant.wait_s, MAX_SLEEP_S))

    def reserve_committed(self, usd: Decimal) -> Reservation:
        """Sets aside money that is already committed, whatever the budget says now."""
        self._backend.call("reserve", usd, True, False)
        return Reservation(usd)

    def spend(self, reservation: Reservation, actual: Decimal) -> None:
        self._backend.call("spend", reservation.usd, actual)

    def stop(self, error: TeacherStop) -> None:
        self._backend.call("stop", error.reason, str(error))

    def stopped(self) -> Stop | None:
        stop: Stop | None = self._backend.call("stopped")
        return stop

    def snapshot(self) -> dict[str, Any]:
        snapshot: dict[str, Any] = self._backend.call("snapshot")
        return snapshot


@contextmanager
def open_governor(
    limits: RateLimits,
    budget_usd: Decimal | None,
    spent_usd: Decimal = Decimal(0),
    *,
    use_ray: bool = False,
) -> Iterator[GovernorClient]:
    """A governor for one stage run: a Ray actor (killed afterwards) when the shards run as Ray
    tasks, an in-process object otherwise."""
    if not use_ray:
        yield GovernorClient(LocalGovernor(RateGovernor(limits, budget_usd, spent_usd)))
        return
    import ray

    actor: Any = ray.remote(RateGovernor).options(num_cpus=0).remote(limits, budget_usd, spent_usd)
    try:
        yield GovernorClient(RayGovernor(actor))
    finally:
        ray.kill(actor)
