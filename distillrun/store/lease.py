"""One run per run prefix at a time: a lease kept in the store itself.

Why: two processes running the same manifest on one store would each ask the teacher for the
shards still missing (paying twice for them) and each keep its own budget (together up to twice
`budget.maxUSD`). The store is the one thing both see, so the lease lives there, next to the
run's artifacts, and works the same on a local directory and on S3.

How: the lease is a row of generations, `lease/<generation>.json`, each created put-if-absent
(`Store.put_bytes(if_absent=True)`: a conditional put, `If-None-Match: *`, on S3; an exclusive
create under the directory lock on files), so of two processes racing for the same generation
exactly one wins and the other is refused. The newest generation says who holds the lease, or
that it was released. Generations are never reused, so a holder that was taken over can tell:
a newer generation than its own exists.

A holder refreshes its record's heartbeat every `HEARTBEAT_S` (`held` runs a thread for it) and
marks it released when done, Ctrl-C and failures included. A process that was killed leaves a
record behind, and the next process takes the lease over by creating the next generation when:
- the holder ran on this machine and its process is gone (a crash, `kill -9`): at once;
- or its heartbeat is older than `EXPIRY_S` (it ran elsewhere, or its process id was reused):
  the holder is presumed dead.
Otherwise the new process is refused with `LeaseHeld`, naming the holder and when it was last
seen. A holder that comes back after being taken over (a suspended laptop) finds the newer
generation on its next heartbeat or `check()` and stops with `LeaseLost`.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from distillrun.store.base import Store
from distillrun.store.errors import StoreError

LEASE_PREFIX = "lease/"
HEARTBEAT_S = 15.0
"""How often a holder refreshes its record."""
EXPIRY_S = 120.0
"""How long a record may go without a heartbeat before its holder is presumed dead (many
heartbeats, so a slow store or a busy machine never loses a live holder its lease)."""


class LeaseHeld(StoreError):
    """Another live process holds the run's lease."""


class LeaseLost(StoreError):
    """This process's lease was taken over (it went too long without a heartbeat)."""


def _key(generation: int) -> str:
    return f"{LEASE_PREFIX}{generation:010d}.json"


def _generation(key: str) -> int:
    return int(key.removeprefix(LEASE_PREFIX).removesuffix(".json"))


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a generation of the lease."""

    host: str
    pid: int
    token: str
    acquired_at: float
    heartbeat_at: float
    released: bool = False

    def describe(self, now: float) -> str:
        return (
            f"process {self.pid} on {self.host}, since {_when(self.acquired_at)}, "
            f"last heartbeat {max(0.0, now - self.heartbeat_at):.0f} s ago"
        )

    def dead(self, now: float, host: str, expiry_s: float) -> bool:
        """Whether the lease may be taken from this holder (see the module docstring)."""
        if self.released or now - self.heartbeat_at > expiry_s:
            return True
        return self.host == host and not process_alive(self.pid)


def _read(store: Store, generation: int) -> Holder:
    record: dict[str, Any] = store.get_json(_key(generation))
    try:
        return Holder(**record)
    except TypeError:
        raise StoreError(
            f"{store.url(_key(generation))}: not a lease record (changed outside distillrun?); "
            "delete it if no other process is running this run"
        ) from None


class Lease:
    """A generation of the lease this process holds."""

    def __init__(
        self,
        store: Store,
        generation: int,
        holder: Holder,
        clock: Callable[[], float],
        taken_from: Holder | None = None,
    ) -> None:
        self.store = store
        self.generation = generation
        self.holder = holder
        self.taken_from = taken_from
        """The dead holder this lease was taken over from, if it was not free."""
        self._clock = clock

    def check(self) -> None:
        """Raises LeaseLost if another process has taken the lease over."""
        newest = _newest(self.store)
        if newest != self.generation:
            taker = _read(self.store, newest) if newest is not None else None
            who = f" by {taker.describe(self._clock())}" if taker is not None else ""
            raise LeaseLost(
                f"{self.store.url()}: this run's lease was taken over{who} after this process "
                f"went more than {EXPIRY_S:.0f} s without a heartbeat; stopping so the two do "
                "not both pay the teacher"
            )

    def renew(self) -> None:
        """Refreshes the heartbeat; raises LeaseLost if the lease was taken over."""
        self.check()
        self._write(replace(self.holder, heartbeat_at=self._clock()))

    def release(self) -> None:
        """Marks the lease released, so the next process takes it at once; a lease already
        taken over is left to its new holder."""
        if _newest(self.store) == self.generation:
            self._write(replace(self.holder, released=True))

    def _write(self, holder: Holder) -> None:
        self.holder = holder
        self.store.put_json(_key(self.generation), asdict(holder))


def _newest(store: Store) -> int | None:
    keys = store.list_keys(LEASE_PREFIX)
    return max((_generation(key) for key in keys), default=None)


def acquire(
    store: Store,
    *,
    expiry_s: float = EXPIRY_S,
    clock: Callable[[], float] = time.time,
    host: str | None = None,
) -> Lease:
    """Takes the run's lease in `store` (a run's prefix), or raises LeaseHeld naming the
    process that holds it (see the module docstring)."""
    host = host or socket.gethostname()
    newest = _newest(store)
    now = clock()
    current = _read(store, newest) if newest is not None else None
    if current is not None and not current.dead(now, host, expiry_s):
        raise LeaseHeld(
            f"{store.url()}: another distillrun process is running this run: "
            f"{current.describe(now)}. Wait for it to finish, or stop it; if it died, its "
            f"lease is taken over by the next run: at once on {current.host}, from any "
            f"machine after {expiry_s:.0f} s without a heartbeat"
        )
    generation = 0 if newest is None else newest + 1
    holder = Holder(host, os.getpid(), secrets.token_hex(8), now, now)
    if not store.put_json(_key(generation), asdict(holder), if_absent=True):
        winner = _read(store, generation)
        raise LeaseHeld(
            f"{store.url()}: another distillrun process took this run's lease at the same "
            f"moment: {winner.describe(clock())}"
        )
    taken_from = current if current is not None and not current.released else None
    return Lease(store, generation, holder, clock, taken_from)


@contextmanager
def held(store: Store, *, heartbeat_s: float = HEARTBEAT_S) -> Iterator[Lease]:
    """The run's lease for the duration of the block, renewed by a background thread and
    released at the end, however the block ends."""
    lease = acquire(store)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(heartbeat_s):
            try:
                lease.renew()
            except LeaseLost:
                return  # `check()` at the next stage says so
            except StoreError:
                continue  # a store hiccup: the next heartbeat tries again

    thread = threading.Thread(target=heartbeat, name="distillrun-lease", daemon=True)
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        thread.join()
        with suppress(StoreError):  # unreleased, it is taken over once its holder is gone
            lease.release()
