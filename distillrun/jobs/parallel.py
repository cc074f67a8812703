"""Running independent pieces of a stage (shards, validation chunks) in parallel.

Stages call `executor.map_unordered(fn, items)` and get results as they finish, so each one can
be committed to the store the moment it exists. `RayExecutor` runs each item as a Ray task on
whatever cluster `ray.init()` connected to; `InlineExecutor` runs them one by one in this
process (library use and tests that count calls on an in-process object).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        """Yields (index of item, fn(item)) in completion order."""
        ...


class InlineExecutor:
    """One item after the other, in this process."""

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        for index, item in enumerate(items):
            yield index, fn(item)


class RayExecutor:
    """Each item a Ray task; at most `max_in_flight` outstanding so a huge plan stays bounded.

    A task whose worker dies is not retried behind the stage's back (Ray would by default): a
    teacher call in it may have been paid for already, and the budget it reserved with the
    governor died with it, so a retry would pay twice and could leave the other shards waiting
    for money that never settles. The stage fails instead, and a rerun resumes from what was
    committed."""

    def __init__(self, max_in_flight: int = 64) -> None:
        self.max_in_flight = max_in_flight

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        import ray

        remote_fn = ray.remote(max_retries=0)(fn)
        pending: dict[Any, int] = {}
        next_item = 0
        while next_item < len(items) or pending:
            while next_item < len(items) and len(pending) < self.max_in_flight:
                pending[remote_fn.remote(items[next_item])] = next_item
                next_item += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                yield pending.pop(ref), ray.get(ref)
