"""The fake server's own rate limiter, written independently of the client's governor so a test
of one against the other means something.

Like the real API: three continuously refilled buckets per minute (requests, input tokens,
output tokens); output is charged `max_tokens` when a request starts and corrected to the real
count when it ends; cache reads do not count toward input.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int
    input_tokens_per_minute: int
    output_tokens_per_minute: int


class _Bucket:
    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.rate = per_minute / 60.0
        self.stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        missing = min(amount, self.capacity) - self.level
        return max(0.0, missing / self.rate)

    def reset_at(self) -> str:
        seconds = (self.capacity - self.level) / self.rate
        when = datetime.now(UTC) + timedelta(seconds=seconds)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class ServerLimiter:
    """Admits or refuses requests; refusals say how long to wait (the `retry-after`)."""

    def __init__(self, limits: Limits) -> None:
        self._lock = threading.Lock()
        self._requests = _Bucket(limits.requests_per_minute)
        self._input = _Bucket(limits.input_tokens_per_minute)
        self._output = _Bucket(limits.output_tokens_per_minute)

    def admit(self, input_tokens: int, max_tokens: int) -> float:
        """0 when admitted (and charged), else the seconds until it would be."""
        with self._lock:
            now = time.monotonic()
            buckets = ((self._requests, 1), (self._input, input_tokens), (self._output, max_tokens))
            for bucket, _ in buckets:
                bucket.refill(now)
            wait = max(bucket.wait_for(amount) for bucket, amount in buckets)
            if wait > 0:
                return wait
            for bucket, amount in buckets:
                bucket.level -= amount
            return 0.0

    def settle_output(self, reserved: int, used: int) -> None:
        with self._lock:
            self._output.level = min(self._output.capacity, self._output.level + reserved - used)

    def headers(self) -> dict[str, str]:
        with self._lock:
            now = time.monotonic()
            out: dict[str, str] = {}
            for name, bucket in (
                ("requests", self._requests),
                ("input-tokens", self._input),
                ("output-tokens", self._output),
            ):
                bucket.refill(now)
                out[f"anthropic-ratelimit-{name}-limit"] = str(int(bucket.capacity))
                out[f"anthropic-ratelimit-{name}-remaining"] = str(max(0, int(bucket.level)))
                out[f"anthropic-ratelimit-{name}-reset"] = bucket.reset_at()
            return out
