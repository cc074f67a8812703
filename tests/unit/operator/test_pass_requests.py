"""The requests a pass saves without changing what it does.

The copy of each run the controller keeps (`Controller.known`): a pass a RayJob event triggers
plans from it instead of reading the run; the watch's later events replace it; a copy gone stale
before its event costs a conflict and a read, never a wrong write. The pass of a run's
creation event does not list RayJobs: none can exist yet."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from distillrun.operator.controller import Controller, rayjob_path, run_path
from distillrun.operator.kube import ApiError, Kube
from distillrun.operator.metrics import Metrics
from distillrun.operator.settings import OperatorSettings
from tests.unit.operator.conftest import cpu_manifest

LOGGER = logging.getLogger("test-pass-requests")
JOBS = rayjob_path("team-a")
RUN = run_path("team-a", "shop")


class FakeKube(Kube):
    """An apiserver of one namespace in a dict: objects by path, resourceVersions that grow,
    status writes refused (409) at a resourceVersion that is not the run's. `requests` records
    every call as `METHOD path`."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(api)
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self._version = 0

    def stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        self._version += 1
        body["metadata"]["resourceVersion"] = str(self._version)
        return copy.deepcopy(body)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "",
    ) -> Any:
        self.requests.append(f"{method} {path}")
        if method == "GET" and path in self.objects:
            return copy.deepcopy(self.objects[path])
        if method == "GET":  # a collection
            items = [o for p, o in self.objects.items() if p.rsplit("/", 1)[0] == path]
            return {"items": copy.deepcopy(items)}
        if method == "POST":
            created = f"{path}/{body['metadata']['name']}"
            if created in self.objects:
                raise ApiError(409, "AlreadyExists", created, None)
            self.objects[created] = self.stamp(copy.deepcopy(body))
            return copy.deepcopy(self.objects[created])
        assert method == "PATCH" and path.endswith("/status")
        current = self.objects[path.removesuffix("/status")]
        if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", path, None)
        current["status"] = body["status"]
        return self.stamp(current)

    def reads_of_the_run(self) -> int:
        return self.requests.count(f"GET {RUN}")


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    api = client.ApiClient()
    yield FakeKube(api)
    api.close()  # type: ignore[no-untyped-call]


def _started(kube: FakeKube) -> Controller:
    """A controller that has started the run's first stage, as the run's ADDED event does."""
    kube.objects[RUN] = kube.stamp(cpu_manifest())
    controller = Controller(kube, OperatorSettings(metrics_port=0), Metrics())
    controller.reconcile("team-a", "shop", LOGGER, seen=kube.objects[RUN], created=True)
    return controller


def _kuberay_running(kube: FakeKube) -> None:
    job = kube.objects[rayjob_path("team-a", "shop-generate-1")]
    job["status"] = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    kube.stamp(job)


def test_a_rayjob_event_plans_from_the_run_as_the_last_pass_wrote_it(kube: FakeKube) -> None:
    controller = _started(kube)
    known = controller.known("team-a", "shop")
    assert known is not None and known == kube.objects[RUN]  # the answer to the status write

    _kuberay_running(kube)
    controller.reconcile("team-a", "shop", LOGGER, seen=controller.known("team-a", "shop"))
    assert kube.reads_of_the_run() == 0
    assert kube.objects[RUN]["status"]["stages"]["generate"]["message"].startswith(
        "RayJob shop-generate-1: deployment Running"
    )
    assert controller.known("team-a", "shop") == kube.objects[RUN]


def test_the_copy_is_the_run_as_the_watch_showed_it_last(kube: FakeKube) -> None:
    controller = _started(kube)
    controller.seen_on_watch("team-a", "shop", copy.deepcopy(kube.objects[RUN]))  # its echo
    assert controller.known("team-a", "shop") == kube.objects[RUN]

    kube.objects[RUN]["metadata"]["finalizers"] = ["distillrun.dev/finalizer"]  # kopf's write
    controller.seen_on_watch("team-a", "shop", kube.stamp(kube.objects[RUN]))
    assert controller.known("team-a", "shop") == kube.objects[RUN]

    _kuberay_running(kube)
    controller.reconcile("team-a", "shop", LOGGER, seen=controller.known("team-a", "shop"))
    assert kube.reads_of_the_run() == 0
    assert kube.objects[RUN]["metadata"]["finalizers"] == ["distillrun.dev/finalizer"]
    assert kube.objects[RUN]["status"]["stages"]["generate"]["message"].startswith(
        "RayJob shop-generate-1: deployment Running"
    )


def test_a_copy_stale_before_its_event_costs_a_conflict_and_a_read(kube: FakeKube) -> None:
    controller = _started(kube)
    kube.objects[RUN]["metadata"]["labels"] = {"team": "a"}  # its event not handled yet
    kube.stamp(kube.objects[RUN])

    _kuberay_running(kube)
    controller.reconcile("team-a", "shop", LOGGER, seen=controller.known("team-a", "shop"))
    assert kube.reads_of_the_run() == 1  # after the conflict
    assert kube.objects[RUN]["metadata"]["labels"] == {"team": "a"}
    assert kube.objects[RUN]["status"]["stages"]["generate"]["message"].startswith(
        "RayJob shop-generate-1: deployment Running"
    )


def test_a_deleted_run_is_forgotten(kube: FakeKube) -> None:
    controller = _started(kube)
    controller.unwatch("team-a", "shop", "another-uid")  # a run of the same name, deleted
    assert controller.known("team-a", "shop") is not None
    controller.unwatch("team-a", "shop", kube.objects[RUN]["metadata"]["uid"])
    assert controller.known("team-a", "shop") is None


def test_the_pass_of_a_creation_event_lists_no_rayjobs(kube: FakeKube) -> None:
    controller = _started(kube)
    assert f"GET {JOBS}" not in kube.requests
    assert f"POST {JOBS}" in kube.requests

    # The same event again (kopf retrying it): this process has made children by now.
    controller.reconcile("team-a", "shop", LOGGER, seen=kube.objects[RUN], created=True)
    assert kube.requests.count(f"GET {JOBS}") == 1
    assert kube.requests.count(f"POST {JOBS}") == 1


def test_a_listed_run_has_its_rayjobs_listed_and_adopted(kube: FakeKube) -> None:
    """After a restart the run comes from kopf's listing (`created` False): the RayJob the
    crashed process made is adopted, not created again."""
    crashed = _started(kube)
    del kube.objects[RUN]["status"]  # its status write was lost
    kube.stamp(kube.objects[RUN])
    kube.requests.clear()

    restarted = Controller(kube, crashed.settings, Metrics())
    restarted.reconcile("team-a", "shop", LOGGER, seen=kube.objects[RUN])
    assert kube.requests.count(f"GET {JOBS}") == 1
    assert f"POST {JOBS}" not in kube.requests
    assert kube.objects[RUN]["status"]["stages"]["generate"]["message"].startswith(
        "RayJob shop-generate-1:"
    )
