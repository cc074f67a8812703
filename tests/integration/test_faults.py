"""Faults on a real apiserver, each with RELIABILITY.md's invariants: exactly one RayJob per
(stage, attempt) (I5), attempts grow only on real failures, the final condition carries the
expected reason and observedGeneration (I6), no finalizer left after delete, and a bound on the
time to recover."""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from distillrun.api.status import STAGE_ORDER, StageName
from distillrun.operator.builders.common import run_selector
from distillrun.operator.controller import rayjob_path, run_path
from distillrun.operator.kube import ApiError, Kube, load_api_client, namespaced_path
from distillrun.store import Store
from tests.integration.conftest import OperatorFactory, fast_settings
from tests.integration.controlplane import ControlPlane, wait_for
from tests.integration.helpers import (
    children,
    condition,
    create_run,
    finish_stage,
    get_run,
    kuberay_failed,
    kuberay_running,
    phase,
    run_manifest,
    run_store,
    stage,
    wait_events,
    wait_rayjob,
    wait_run,
    write_failure,
)

pytestmark = pytest.mark.integration


def _store(tmp_path: Path, run: dict[str, Any]) -> Store:
    return run_store(f"file://{tmp_path / 'artifacts'}", run)


def _drive_to_success(kube: Kube, namespace: str, name: str, store: Store) -> dict[str, Any]:
    """Plays KubeRay and the stages for attempt 1 of every stage still to run."""
    for stage_name in STAGE_ORDER:
        rayjob = f"{name}-{stage_name}-1"
        current = wait_rayjob(kube, namespace, rayjob)
        if (current.get("status") or {}).get("jobStatus") != "SUCCEEDED":
            finish_stage(kube, namespace, store, stage_name, rayjob)
    return wait_run(kube, namespace, name, lambda r: phase(r) == "Succeeded", "Succeeded")


def _assert_one_attempt_each(kube: Kube, namespace: str, run: dict[str, Any]) -> None:
    name, uid = run["metadata"]["name"], run["metadata"]["uid"]
    expected = sorted(f"{name}-{s}-1" for s in StageName)
    assert children(kube, namespace, uid) == (expected, expected)
    for stage_name in StageName:
        assert stage(run, stage_name)["attempts"] == 1
    assert run["status"]["counts"]["generated"] == 40
    assert run["status"]["observedGeneration"] == run["metadata"]["generation"]


class Killed(Exception):
    """The operator process 'dies' here: this call and every later one fail."""


class DyingApiClient(client.ApiClient):
    """An API client that kills its operator at one side-effect boundary: before or after the
    `occurrence`-th request whose method and path match."""

    def __init__(
        self, kubeconfig: Path, method: str, path_part: str, occurrence: int, after: bool
    ) -> None:
        base = load_api_client(str(kubeconfig))
        super().__init__(base.configuration)
        base.close()
        self.boundary = (method, path_part)
        self.occurrence = occurrence
        self.after = after
        self.seen = 0
        self.killed = threading.Event()

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self.killed.is_set():
            raise Killed(f"{method} {url} after the operator died")
        hit = method == self.boundary[0] and self.boundary[1] in url
        if hit:
            self.seen += 1
        if hit and self.seen == self.occurrence and not self.after:
            self.killed.set()
            raise Killed(f"died before {method} {url}")
        response = super().call_api(method, url, *args, **kwargs)
        if hit and self.seen == self.occurrence:
            self.killed.set()
            response.read()
            raise Killed(f"died after {method} {url}")
        return response


BOUNDARIES = [
    pytest.param("POST", "/configmaps", 1, False, id="before-configmap-create"),
    pytest.param("POST", "/configmaps", 1, True, id="after-configmap-create"),
    pytest.param("POST", "/rayjobs", 1, True, id="after-rayjob-create"),
    pytest.param("PATCH", "/status", 1, False, id="before-status-patch"),
    pytest.param("PATCH", "/status", 1, True, id="after-status-patch"),
    pytest.param("POST", "/rayjobs", 2, True, id="after-next-stage-rayjob-create"),
    pytest.param("PATCH", "/status", 2, False, id="before-stage-success-patch"),
]


@pytest.mark.parametrize(("method", "path_part", "occurrence", "after"), BOUNDARIES)
def test_killed_at_a_side_effect_boundary_then_restarted(
    kube: Kube,
    namespace: str,
    control_plane: ControlPlane,
    start_operator: OperatorFactory,
    tmp_path: Path,
    method: str,
    path_part: str,
    occurrence: int,
    after: bool,
) -> None:
    dying = DyingApiClient(control_plane.kubeconfig, method, path_part, occurrence, after)
    first = start_operator(api_factory=lambda: dying)
    created = create_run(kube, namespace, run_manifest("crash"))
    store = _store(tmp_path, created)
    if occurrence == 2:  # die at the transition from generate to validate
        wait_rayjob(kube, namespace, "crash-generate-1")
        finish_stage(kube, namespace, store, StageName.GENERATE, "crash-generate-1")
    assert dying.killed.wait(timeout=30), "the boundary was never reached"
    first.stop()

    restarted = time.monotonic()
    start_operator()
    wait_rayjob(kube, namespace, "crash-generate-1")
    assert time.monotonic() - restarted < 15
    run = _drive_to_success(kube, namespace, "crash", store)
    _assert_one_attempt_each(kube, namespace, run)
    done = wait_events(
        kube, namespace, "crash", lambda r: r[-1:] == ["RunSucceeded"], "the RunSucceeded Event"
    )
    assert [e["reason"] for e in done].count("StageSucceeded") == 4


def test_a_rayjob_that_finished_while_the_operator_was_down_is_caught_up(
    kube: Kube, namespace: str, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    operator = start_operator()
    created = create_run(kube, namespace, run_manifest("asleep"))
    store = _store(tmp_path, created)
    wait_rayjob(kube, namespace, "asleep-generate-1")
    wait_run(kube, namespace, "asleep", lambda r: phase(r) == "Generating", "Generating")
    operator.stop()
    finish_stage(kube, namespace, store, StageName.GENERATE, "asleep-generate-1")

    restarted = time.monotonic()
    start_operator()
    wait_rayjob(kube, namespace, "asleep-validate-1")
    assert time.monotonic() - restarted < 15
    run = wait_run(
        kube,
        namespace,
        "asleep",
        lambda r: stage(r, StageName.GENERATE).get("state") == "Succeeded",
        "caught up",
    )
    assert run["status"]["counts"]["generated"] == 40
    assert "asleep-generate-2" not in {
        n for n in children(kube, namespace, run["metadata"]["uid"])[0]
    }
    _assert_one_attempt_each(kube, namespace, _drive_to_success(kube, namespace, "asleep", store))


def test_a_rayjob_deleted_by_hand_is_a_new_attempt_then_a_named_failure(
    kube: Kube, namespace: str, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    start_operator(fast_settings(tmp_path, jobs_max_attempts=2))
    created = create_run(kube, namespace, run_manifest("handmade"))
    wait_rayjob(kube, namespace, "handmade-generate-1")
    # Deleted once the run's status shows it, as a user would: a RayJob deleted before the pass
    # that created it recorded it is simply created again as attempt 1 (nothing counted yet),
    # which on a loaded machine made this test wait for an attempt 2 that never came.
    wait_run(
        kube,
        namespace,
        "handmade",
        lambda r: stage(r, StageName.GENERATE).get("rayJob") == "handmade-generate-1",
        "attempt 1 recorded",
    )
    kube.delete(rayjob_path(namespace, "handmade-generate-1"))
    wait_rayjob(kube, namespace, "handmade-generate-2")
    run = wait_run(
        kube,
        namespace,
        "handmade",
        lambda r: stage(r, StageName.GENERATE).get("attempts") == 2,
        "attempt 2",
    )
    posted = wait_events(
        kube, namespace, "handmade", lambda r: "StageRetrying" in r, "a StageRetrying Event"
    )
    retry = [e for e in posted if e["reason"] == "StageRetrying"]
    assert len(retry) == 1 and "RayJobDeleted" in retry[0]["message"]
    assert phase(run) == "Generating"

    kube.delete(rayjob_path(namespace, "handmade-generate-2"))
    run = wait_run(kube, namespace, "handmade", lambda r: phase(r) == "Failed", "Failed")
    failed = condition(run, "Failed")
    assert failed is not None and failed["reason"] == "RayJobDeleted"
    assert failed["observedGeneration"] == 1
    time.sleep(2)  # a failed run stays failed: no third attempt
    assert children(kube, namespace, created["metadata"]["uid"])[0] == []
    assert stage(get_run(kube, namespace, "handmade"), StageName.GENERATE)["attempts"] == 2


def test_a_failing_rayjob_is_retried_up_to_the_limit_then_fails_with_its_reason(
    kube: Kube, namespace: str, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    start_operator(fast_settings(tmp_path, jobs_max_attempts=3))
    created = create_run(kube, namespace, run_manifest("flaky"))
    for attempt in (1, 2, 3):
        name = f"flaky-generate-{attempt}"
        wait_rayjob(kube, namespace, name)
        kuberay_running(kube, namespace, name)
        kuberay_failed(kube, namespace, name, "AppFailed", f"exit code 1 on attempt {attempt}")
    run = wait_run(kube, namespace, "flaky", lambda r: phase(r) == "Failed", "Failed")
    failed = condition(run, "Failed")
    assert failed is not None and failed["reason"] == "AppFailed"
    assert "exit code 1 on attempt 3" in failed["message"]
    assert (condition(run, "Ready") or {}).get("reason") == "AppFailed"
    time.sleep(2)
    jobs, maps = children(kube, namespace, created["metadata"]["uid"])
    assert jobs == maps == [f"flaky-generate-{n}" for n in (1, 2, 3)]
    failed_events = wait_events(
        kube, namespace, "flaky", lambda r: r[-1:] == ["RunFailed"], "the RunFailed Event"
    )
    assert [e["reason"] for e in failed_events].count("StageRetrying") == 2


def test_a_named_stage_failure_is_final_at_once(
    kube: Kube, namespace: str, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    start_operator()
    created = create_run(kube, namespace, run_manifest("broke"))
    store = _store(tmp_path, created)
    wait_rayjob(kube, namespace, "broke-generate-1")
    kuberay_running(kube, namespace, "broke-generate-1")
    write_failure(
        store,
        StageName.GENERATE,
        1,
        "BudgetExhausted",
        "the next shard would exceed spec.teacher.budget.maxUSD ($25.00)",
        False,
    )
    kuberay_failed(kube, namespace, "broke-generate-1")
    run = wait_run(kube, namespace, "broke", lambda r: phase(r) == "Failed", "Failed")
    assert (condition(run, "BudgetExhausted") or {}).get("status") == "True"
    assert (condition(run, "Failed") or {}).get("reason") == "BudgetExhausted"
    time.sleep(2)
    assert children(kube, namespace, created["metadata"]["uid"])[0] == ["broke-generate-1"]


def test_deleting_a_run_mid_stage_stops_its_children_and_keeps_artifacts(
    kube: Kube, namespace: str, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    start_operator()
    data = run_manifest("doomed")
    data["spec"]["database"] = {  # a server dialect: the sandbox server must go too
        "dialect": "postgres",
        "schema": {"ddl": "CREATE TABLE customers (id INTEGER PRIMARY KEY, country TEXT);"},
    }
    created = create_run(kube, namespace, data)
    store = _store(tmp_path, created)
    uid = created["metadata"]["uid"]
    finish_stage(
        kube,
        namespace,
        store,
        StageName.GENERATE,
        wait_rayjob(kube, namespace, "doomed-generate-1")["metadata"]["name"],
    )
    wait_rayjob(kube, namespace, "doomed-validate-1")
    kuberay_running(kube, namespace, "doomed-validate-1")
    assert (
        "distillrun.dev/finalizer" in get_run(kube, namespace, "doomed")["metadata"]["finalizers"]
    )

    deleted = time.monotonic()
    kube.delete(run_path(namespace, "doomed"))

    def gone() -> bool:
        try:
            get_run(kube, namespace, "doomed")
        except ApiError as exc:
            return exc.status == 404
        return False

    wait_for(gone, "the run to go away")
    assert time.monotonic() - deleted < 120
    assert children(kube, namespace, uid) == ([], [])
    for api_version, plural in (("apps/v1", "deployments"), ("v1", "secrets")):
        assert kube.list(namespaced_path(api_version, namespace, plural), run_selector(uid)) == []
    assert store.exists("generate/_manifest.json")  # artifacts are kept


def test_concurrent_operators_and_edits_make_no_duplicate_and_lose_no_transition(
    kube: Kube, namespace: str, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    """Two operators at once (a split brain) and a client editing labels and an allowed spec
    field in a loop: creates meet 409s, status writes meet 409s, and still every stage runs
    exactly once and every transition is recorded."""
    start_operator()
    start_operator()
    created = create_run(kube, namespace, run_manifest("busy"))
    store = _store(tmp_path, created)
    stop = threading.Event()
    edits = 0
    failures: list[Exception] = []

    def edit() -> None:
        nonlocal edits
        while not stop.is_set():
            try:
                run = get_run(kube, namespace, "busy")
                changed = copy.deepcopy(run)
                changed["metadata"].setdefault("labels", {})["tick"] = str(edits)
                changed["spec"]["student"]["epochs"] = 1 + edits % 3
                kube.request("PUT", run_path(namespace, "busy"), body=changed)
                edits += 1
            except ApiError as exc:
                if exc.status != 409:
                    failures.append(exc)
                    return
            time.sleep(0.05)

    editor = threading.Thread(target=edit)
    editor.start()
    try:
        for stage_name in STAGE_ORDER:  # every transition happens under edits
            rayjob = f"busy-{stage_name}-1"
            wait_rayjob(kube, namespace, rayjob)
            seen = edits
            wait_for(lambda seen=seen: edits >= seen + 3, "three edits during the stage")
            finish_stage(kube, namespace, store, stage_name, rayjob)
        wait_run(kube, namespace, "busy", lambda r: phase(r) == "Succeeded", "Succeeded")
    finally:
        stop.set()
        editor.join()
    assert failures == []
    run = wait_run(
        kube,
        namespace,
        "busy",
        lambda r: r["status"]["observedGeneration"] == r["metadata"]["generation"],
        "observedGeneration caught up",
    )
    _assert_one_attempt_each(kube, namespace, run)
    for stage_name in StageName:
        assert stage(run, stage_name)["state"] == "Succeeded"


def test_a_spec_edit_mid_run_reaches_later_stages_only(
    kube: Kube, namespace: str, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    start_operator()
    created = create_run(kube, namespace, run_manifest("edited"))
    store = _store(tmp_path, created)
    wait_rayjob(kube, namespace, "edited-generate-1")
    kuberay_running(kube, namespace, "edited-generate-1")

    # Merge patches, as `kubectl patch` sends: no resourceVersion, so the operator's status
    # writes in between do not turn the edit into a conflict.
    with pytest.raises(ApiError) as refused:
        kube.merge_patch(
            run_path(namespace, "edited"), {"spec": {"database": {"dialect": "duckdb"}}}
        )
    assert refused.value.status == 422 and "spec.database: Forbidden" in refused.value.message
    kube.merge_patch(
        run_path(namespace, "edited"),
        {"spec": {"scheduling": {"queueName": "team-a-queue"}, "student": {"epochs": 4}}},
    )
    run = wait_run(
        kube,
        namespace,
        "edited",
        lambda r: r["status"].get("observedGeneration") == 2,
        "generation 2 observed",
    )
    assert all(c["observedGeneration"] == 2 for c in run["status"]["conditions"])
    wait_events(kube, namespace, "edited", lambda r: "SpecUpdated" in r, "a SpecUpdated Event")

    finish_stage(kube, namespace, store, StageName.GENERATE, "edited-generate-1")
    validate = wait_rayjob(kube, namespace, "edited-validate-1")
    generate = kube.get(rayjob_path(namespace, "edited-generate-1"))
    assert "kueue.x-k8s.io/queue-name" not in generate["metadata"]["labels"]
    assert validate["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-queue"
