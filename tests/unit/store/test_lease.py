"""The run lease, on both backends (a local directory and a real S3 API): one holder at a time,
a clear refusal naming it, and a dead holder's lease taken over."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from dataclasses import asdict

import pytest

from distillrun.store import Store, StoreError
from distillrun.store.lease import (
    EXPIRY_S,
    LEASE_PREFIX,
    Holder,
    Lease,
    LeaseHeld,
    LeaseLost,
    acquire,
    held,
)


def _dead_pid() -> int:
    """The id of a process of this machine that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _plant(store: Store, holder: Holder) -> None:
    """A lease record left by another process (generation 0)."""
    store.put_json(f"{LEASE_PREFIX}0000000000.json", asdict(holder))


def test_a_second_process_is_refused_naming_the_holder_until_the_first_releases(
    store: Store,
) -> None:
    first = acquire(store)
    with pytest.raises(LeaseHeld) as refused:
        acquire(store)
    message = str(refused.value)
    assert f"process {os.getpid()} on " in message and "another distillrun process" in message
    assert store.url() in message
    first.release()
    second = acquire(store)
    assert second.generation == first.generation + 1 and second.taken_from is None


def test_a_holder_that_died_on_this_machine_is_taken_over_at_once(store: Store) -> None:
    now = time.time()
    dead = Holder(socket.gethostname(), _dead_pid(), "t0", now - 5, now - 1)
    _plant(store, dead)
    lease = acquire(store)
    assert lease.generation == 1 and lease.taken_from == dead


def test_a_holder_elsewhere_is_presumed_dead_only_after_its_heartbeats_stop(
    store: Store,
) -> None:
    clock = [1_000_000.0]
    elsewhere = Holder("other-machine", os.getpid(), "t0", clock[0] - 60, clock[0] - 10)
    _plant(store, elsewhere)
    with pytest.raises(LeaseHeld) as refused:
        acquire(store, clock=lambda: clock[0])
    assert "other-machine" in str(refused.value) and "last heartbeat 10 s ago" in str(refused.value)
    clock[0] += EXPIRY_S
    assert acquire(store, clock=lambda: clock[0]).taken_from == elsewhere


def test_a_holder_that_was_taken_over_finds_out_and_leaves_the_new_one_alone(
    store: Store,
) -> None:
    clock = [1_000_000.0]
    old = acquire(store, clock=lambda: clock[0])
    clock[0] += EXPIRY_S + 1  # the old holder was suspended: no heartbeat
    new = acquire(store, clock=lambda: clock[0], host="another-machine")
    with pytest.raises(LeaseLost, match="taken over"):
        old.check()
    with pytest.raises(LeaseLost):
        old.renew()
    old.release()
    with pytest.raises(LeaseHeld):  # still held by the new holder
        acquire(store, clock=lambda: clock[0])
    new.release()


def test_of_processes_racing_for_a_free_lease_exactly_one_wins(store: Store) -> None:
    racers = 6
    start = threading.Barrier(racers)
    won: list[Lease] = []
    refused: list[LeaseHeld] = []

    def race() -> None:
        start.wait()
        try:
            won.append(acquire(store))
        except LeaseHeld as exc:
            refused.append(exc)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(refused) == racers - 1


def test_held_heartbeats_and_releases_however_the_block_ends(store: Store) -> None:
    with pytest.raises(RuntimeError), held(store, heartbeat_s=0.05) as lease:
        first = lease.holder.heartbeat_at
        for _ in range(100):  # up to 5 s for a heartbeat due every 0.05 s
            if lease.holder.heartbeat_at > first:
                break
            time.sleep(0.05)
        assert lease.holder.heartbeat_at > first
        raise RuntimeError("the run failed")
    assert acquire(store).taken_from is None  # released: free at once, not taken over


def test_a_record_that_is_not_a_lease_is_named(store: Store) -> None:
    store.put_json(f"{LEASE_PREFIX}0000000000.json", {"who": "me"})
    with pytest.raises(StoreError, match="not a lease record"):
        acquire(store)
