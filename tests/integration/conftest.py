"""Fixtures of the integration suite: one real control plane for the whole session (etcd +
kube-apiserver from `scripts/testbed/build`, CRDs installed), a fresh namespace per test, and
operators run in-process (kopf in a thread) against it.

A missing binary FAILS the session with the command that builds it: in CI a skipped suite would
look green while testing nothing."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import kopf
import pytest
from kubernetes import client

from distillrun.operator.handlers import register
from distillrun.operator.kube import Kube, load_api_client
from distillrun.operator.settings import OperatorSettings
from tests.integration.controlplane import ControlPlane, ControlPlaneMissing, create_namespace


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    missing = ""
    try:
        plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    except ControlPlaneMissing as exc:
        missing = str(exc)
    if missing:
        pytest.fail(missing, pytrace=False)
    try:
        with plane.client() as kube:
            plane.install_crds(kube)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[Kube]:
    with control_plane.client() as api:
        yield api


@pytest.fixture
def namespace(kube: Kube) -> str:
    """A fresh namespace per test (left behind: without kube-controller-manager nothing would
    finish deleting it, and the session's etcd is thrown away anyway)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    create_namespace(kube, name)
    return name


class InProcessOperator:
    """The real operator (the same `register` as `kopf run`) in a thread with its own event
    loop, watching one namespace; `stop()` shuts it down as SIGTERM would."""

    def __init__(
        self,
        namespace: str,
        settings: OperatorSettings,
        api_factory: Callable[[], client.ApiClient],
        liveness_endpoint: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.liveness_endpoint = liveness_endpoint
        self.registry = kopf.OperatorRegistry()
        register(self.registry, settings, api_factory=api_factory)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"operator-{namespace}")
        self._thread.start()
        if not self._ready.wait(timeout=60):
            self.stop()
            raise RuntimeError(f"the operator did not start: {self.error!r}")

    def _main(self) -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=self.registry,
                    settings=kopf.OperatorSettings(),
                    namespaces=[self.namespace],
                    standalone=True,
                    liveness_endpoint=self.liveness_endpoint,
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                )
            )
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            raise RuntimeError("the operator did not stop within 60 s")
        _collect_what_the_stopped_loop_left()
        if self.error is not None:
            raise RuntimeError("the operator crashed") from self.error


def _collect_what_the_stopped_loop_left() -> None:
    """A stopped in-process operator leaves its closed event loop's socket transports (kopf's
    HTTP sessions to the apiserver) to the garbage collector. A real operator is a process that
    exits; here they would be collected in whichever later test the collector happens to run,
    and warnings-as-errors would fail that test at random (a CI flake seen on a loaded machine:
    `unclosed transport` in a test that had just restarted its operator). So they are collected
    now, with their ResourceWarnings, which concern the harness and not the operator, ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


OperatorFactory = Callable[..., InProcessOperator]


@pytest.fixture
def start_operator(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[OperatorFactory]:
    """Starts an operator on the test's namespace (several, or again after a stop, as a test
    needs); every one still running is stopped at the end."""
    started: list[InProcessOperator] = []

    def start(
        settings: OperatorSettings | None = None,
        api_factory: Callable[[], client.ApiClient] | None = None,
        liveness_endpoint: str | None = None,
    ) -> InProcessOperator:
        chosen = settings or fast_settings(tmp_path)
        factory = api_factory or (lambda: load_api_client(str(control_plane.kubeconfig)))
        operator = InProcessOperator(namespace, chosen, factory, liveness_endpoint)
        started.append(operator)
        return operator

    yield start
    for operator in started:
        if operator._thread.is_alive():
            operator.stop()


def fast_settings(tmp_path: Path, **changes: object) -> OperatorSettings:
    """Fast settings for tests: a 1 s resync, no metrics port, the test's own store (a
    `file://` one, allowed because the tests write the stages' outputs themselves)."""
    base = {
        "operator_resync_seconds": 1.0,
        "metrics_port": 0,
        "artifacts_uri": f"file://{tmp_path / 'artifacts'}",
        "artifacts_allow_file_store": True,
        "jobs_image": "registry.example/distillrun-jobs:test",
    }
    return OperatorSettings(**{**base, **changes})  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _quiet_kopf() -> Iterator[None]:
    """kopf logs every watch at DEBUG; keep test output to what matters."""
    logger = logging.getLogger("kopf")
    level = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(level)
