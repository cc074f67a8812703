"""One paid call to a teacher, the same way for every provider: budget first, retries after.

Order of events per attempt: the call's worst-case cost is reserved with the governor (refused
past `budget.maxUSD`, which stops the run), the provider call runs (an SDK may retry inside it),
and then either the reservation becomes the exact cost, or the failure is classified by the
provider's one error map: a `TeacherStop` stops the governor and is raised (no retry loop), a
`Transient` failure is retried after a backoff that honours the server's hint, up to
`RetryPolicy.attempts`, after which the stage stops with TeacherFailed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from distillrun.teacher.errors import TeacherFailed, TeacherStop, Transient
from distillrun.teacher.governor import GovernorClient

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Our retries, on top of an SDK's own `sdk_max_retries` per call (where there is one)."""

    sdk_max_retries: int = 2
    attempts: int = 5
    """Calls per shard before the stage stops with TeacherFailed."""
    backoff_s: float = 2.0
    """First wait between our attempts; doubled per attempt, with jitter."""
    max_backoff_s: float = 60.0
    timeout_s: float = 600.0
    """Per HTTP attempt; explicit, as the SDK wants for non-streaming calls with big outputs."""

    def wait_s(self, attempt: int, hint: float | None) -> float:
        """Seconds before attempt `attempt + 1`: the server's hint if longer than the backoff."""
        backoff = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        backoff *= 0.75 + random.random() / 2
        return max(backoff, hint or 0.0)


def paid_call(
    call: Callable[[], T],
    *,
    governor: GovernorClient,
    worst_usd: Decimal,
    cost_of: Callable[[T], Decimal],
    classify: Callable[[Exception], TeacherStop | Transient],
    retry: RetryPolicy,
) -> tuple[T, Decimal]:
    """The result of `call` and its exact cost (see the module docstring)."""
    attempt = 0
    while True:
        attempt += 1
        reservation = governor.reserve(worst_usd)
        try:
            result = call()
        except Exception as exc:
            governor.spend(reservation, Decimal(0))
            failure = classify(exc)
            if isinstance(failure, TeacherStop):
                governor.stop(failure)
                raise failure from exc
            if attempt >= retry.attempts:
                stop = TeacherFailed(f"{failure.message} (still failing after {attempt} attempts)")
                governor.stop(stop)
                raise stop from exc
            time.sleep(retry.wait_s(attempt, failure.retry_after_s))
            continue
        cost = cost_of(result)
        governor.spend(reservation, cost)
        return result, cost
