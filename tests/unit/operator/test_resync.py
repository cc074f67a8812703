"""The resync without kopf timers (nolar/kopf#1305): the controller keeps the runs the watch
showed until they are deleted, and a thread of ours reconciles each of them periodically, goes
on past a run that fails, and stops when the operator does."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import kopf
import pytest
from kubernetes import client

from distillrun.operator.controller import Controller, Logger
from distillrun.operator.handlers import _Resync
from distillrun.operator.kube import Kube
from distillrun.operator.metrics import Metrics
from distillrun.operator.settings import OperatorSettings

LOGGER = logging.getLogger("test-resync")


class Recording(Controller):
    """A controller whose reconcile only records its calls; run `broken` fails."""

    def __init__(self, api: client.ApiClient, broken: str = "") -> None:
        super().__init__(Kube(api), OperatorSettings(metrics_port=0), Metrics())
        self.broken = broken
        self.calls: list[str] = []
        self.twice = threading.Event()

    def reconcile(
        self,
        namespace: str,
        name: str,
        logger: Logger,
        seen: Mapping[str, Any] | None = None,
    ) -> None:
        self.calls.append(f"{namespace}/{name}")
        if self.calls.count("team-a/second") == 2:
            self.twice.set()
        if name == self.broken:
            raise kopf.TemporaryError("the apiserver is away", delay=1)


@pytest.fixture
def api() -> Iterator[client.ApiClient]:
    api = client.ApiClient()
    yield api
    api.close()  # type: ignore[no-untyped-call]


def test_a_run_is_watched_until_that_run_is_deleted(api: client.ApiClient) -> None:
    controller = Recording(api)
    controller.watch("team-a", "shop", "uid-1", LOGGER)
    controller.watch("team-b", "shop", "uid-2", LOGGER)
    assert [r[:2] for r in controller.watched()] == [("team-a", "shop"), ("team-b", "shop")]

    controller.watch("team-a", "shop", "uid-3", LOGGER)  # deleted and created again
    controller.unwatch("team-a", "shop", "uid-1")  # the old one's DELETED event, late
    assert [r[:2] for r in controller.watched()] == [("team-a", "shop"), ("team-b", "shop")]
    controller.unwatch("team-a", "shop", "uid-3")
    controller.unwatch("team-b", "shop")  # found gone by a read
    assert controller.watched() == []


def test_the_resync_reconciles_every_watched_run_past_a_failing_one(
    api: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    controller = Recording(api, broken="first")
    controller.watch("team-a", "first", "uid-1", LOGGER)
    controller.watch("team-a", "second", "uid-2", LOGGER)
    resync = _Resync(controller, interval=0.01)
    try:
        assert controller.twice.wait(timeout=10)
    finally:
        resync.stop()
    assert controller.calls[:4] == ["team-a/first", "team-a/second"] * 2
    assert "resync failed (the next one tries again): the apiserver is away" in caplog.text


def test_stopping_the_resync_ends_its_thread(api: client.ApiClient) -> None:
    controller = Recording(api)
    before = set(threading.enumerate())
    resync = _Resync(controller, interval=3600)
    assert set(threading.enumerate()) != before
    resync.stop()
    assert set(threading.enumerate()) == before
