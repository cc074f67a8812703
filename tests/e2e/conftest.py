"""Fixtures of the e2e suite: one real one-node cluster (real containers, `scripts/testbed/
node-up`) for the session, started when a test first needs it, and a fresh namespace per test.

A missing piece FAILS the test with the command that builds it: a skipped e2e suite would look
green while proving nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.bed import Bed, BedUnavailable, bed_down, bed_up, machine_state
from tests.e2e.stack import Team, fresh_namespace, installed_team


class BedSession:
    """The session's bed: `machine_before` is the machine as the session found it (before any
    bed), `running()` starts the bed if it is not up, `down()` stops it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.machine_before = machine_state(workdir)
        self.bed: Bed | None = None

    def running(self) -> Bed:
        if self.bed is None:
            try:
                self.bed = bed_up(self.workdir)
            except BedUnavailable as exc:
                pytest.fail(str(exc), pytrace=False)
        return self.bed

    def down(self) -> None:
        if self.bed is not None:
            bed, self.bed = self.bed, None
            bed_down(bed)


@pytest.fixture(scope="session")
def bed_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BedSession]:
    session = BedSession(tmp_path_factory.mktemp("bed"))
    try:
        yield session
    finally:
        session.down()


@pytest.fixture
def bed(bed_session: BedSession) -> Bed:
    return bed_session.running()


@pytest.fixture
def namespace(bed: Bed) -> Iterator[str]:
    """A fresh namespace per test."""
    with fresh_namespace(bed) as name:
        yield name


@pytest.fixture(scope="session")
def team(bed_session: BedSession) -> Iterator[Team]:
    """One installation for the session, shared by every module's runs: the image build and
    `helm install` take about a minute, and the CRDs and the chart's cluster-wide objects exist
    once per bed (a second installation of the same release would conflict with them)."""
    with installed_team(bed_session.running()) as team:
        yield team
