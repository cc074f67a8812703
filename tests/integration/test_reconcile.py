"""The operator drives a DistillRun through its stages on a real apiserver: one RayJob per stage
(with its ConfigMap, owner, labels and shape), status with counts, cost, conditions and
observedGeneration, an Event per transition, and the printer columns `kubectl get` shows."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from distillrun.api.status import STAGE_ORDER, StageName
from distillrun.operator.kube import ApiError, Kube, core_path, namespaced_path
from tests.integration.conftest import OperatorFactory, fast_settings
from tests.integration.controlplane import wait_for
from tests.integration.helpers import (
    children,
    condition,
    create_run,
    finish_stage,
    get_run,
    phase,
    run_manifest,
    run_store,
    stage,
    wait_events,
    wait_rayjob,
    wait_run,
)

pytestmark = pytest.mark.integration


def test_a_run_goes_through_every_stage(
    kube: Kube, namespace: str, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    start_operator()
    created = create_run(kube, namespace, run_manifest("shop"))
    uid = created["metadata"]["uid"]
    store = run_store(f"file://{tmp_path / 'artifacts'}", created)

    for position, stage_name in enumerate(STAGE_ORDER):
        name = f"shop-{stage_name}-1"
        rayjob = wait_rayjob(kube, namespace, name)
        assert rayjob["metadata"]["ownerReferences"][0]["uid"] == uid
        assert rayjob["metadata"]["labels"]["distillrun.dev/stage"] == str(stage_name)
        config_map = kube.get(core_path(namespace, "configmaps", name))
        document = json.loads(config_map["data"]["run.json"])
        assert document["stage"] == str(stage_name) and document["attempt"] == 1
        assert document["store"] == store.url()
        run = wait_run(
            kube,
            namespace,
            "shop",
            lambda r, s=stage_name: stage(r, s).get("rayJob") == f"shop-{s}-1",
            f"{stage_name} recorded",
        )
        assert phase(run) == ("Generating", "Validating", "Training", "Evaluating")[position]
        finish_stage(kube, namespace, store, stage_name, name)

    run = wait_run(kube, namespace, "shop", lambda r: phase(r) == "Succeeded", "Succeeded")
    status = run["status"]
    assert status["counts"] == {
        "generated": 40,
        "accepted": 30,
        "rejected": {"execution": 6, "parse": 4},
    }
    assert status["cost"] == {
        "inputTokens": 1200,
        "outputTokens": 800,
        "cacheReadTokens": 300,
        "cacheWriteTokens": 150,
        "usd": 0.42,
    }
    assert status["evaluation"] == {
        "executionAccuracy": 0.75,
        "examples": 4,
        "scored": 4,
        "unjudgeable": 0,
        "goldEmpty": 0,
    }
    assert status["artifacts"]["adapter"] == store.url("adapter/")
    assert status["observedGeneration"] == run["metadata"]["generation"] == 1
    for type_, expected in (("Succeeded", "True"), ("Failed", "False"), ("Ready", "True")):
        found = condition(run, type_)
        assert found is not None and found["status"] == expected
        assert found["observedGeneration"] == 1
    for stage_name in StageName:
        assert stage(run, stage_name)["state"] == "Succeeded"
        assert stage(run, stage_name)["attempts"] == 1
    assert children(kube, namespace, uid)[0] == [f"shop-{s}-1" for s in sorted(StageName)]

    settled = run["metadata"]["resourceVersion"]
    time.sleep(2.5)  # two resync periods: a settled run is not written again
    assert get_run(kube, namespace, "shop")["metadata"]["resourceVersion"] == settled

    posted = wait_events(
        kube, namespace, "shop", lambda r: r[-1:] == ["RunSucceeded"], "the RunSucceeded Event"
    )
    reasons = [e["reason"] for e in posted]
    assert reasons.count("StageStarted") == 4
    assert reasons.count("StageSucceeded") == 4
    assert reasons[-1] == "RunSucceeded"
    assert all(e["source"]["component"] == "distillrun-operator" for e in posted)


def test_printer_columns_show_phase_accepted_and_accuracy(
    kube: Kube, namespace: str, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    start_operator()
    created = create_run(kube, namespace, run_manifest("columns"))
    store = run_store(f"file://{tmp_path / 'artifacts'}", created)
    for stage_name in STAGE_ORDER:
        wait_rayjob(kube, namespace, f"columns-{stage_name}-1")
        finish_stage(kube, namespace, store, stage_name, f"columns-{stage_name}-1")
    wait_run(kube, namespace, "columns", lambda r: phase(r) == "Succeeded", "Succeeded")
    api = kube.api
    serialized = api.param_serialize(
        method="GET",
        resource_path=f"/apis/distillrun.dev/v1alpha1/namespaces/{namespace}/distillruns",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
    )
    table = json.loads(api.call_api(*serialized).read())
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns[:4] == ["Name", "Phase", "Accepted", "Accuracy"]
    assert table["rows"][0]["cells"][:4] == ["columns", "Succeeded", 30, 0.75]
    assert get_run(kube, namespace, "columns")["status"]["counts"]["accepted"] == 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.status, reply.read().decode()


def test_metrics_and_liveness_are_served(
    kube: Kube, namespace: str, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    metrics_port, liveness_port = _free_port(), _free_port()
    start_operator(
        fast_settings(tmp_path, metrics_port=metrics_port),
        liveness_endpoint=f"http://127.0.0.1:{liveness_port}/healthz",
    )
    created = create_run(kube, namespace, run_manifest("measured"))
    store = run_store(f"file://{tmp_path / 'artifacts'}", created)
    finish_stage(
        kube,
        namespace,
        store,
        StageName.GENERATE,
        wait_rayjob(kube, namespace, "measured-generate-1")["metadata"]["name"],
    )
    wait_rayjob(kube, namespace, "measured-validate-1")
    wait_run(kube, namespace, "measured", lambda r: phase(r) == "Validating", "Validating")

    def scrape() -> dict[str, float]:
        status, text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200
        return {
            line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }

    # The gauges are set after the status patch that the wait above saw: on a loaded machine a
    # scrape can fall between the two, so wait for them to follow.
    samples = wait_for(
        lambda: (s := scrape())['distillrun_runs{phase="Validating"}'] == 1 and s,
        "the runs gauge to show the run Validating",
    )
    assert samples['distillrun_runs{phase="Generating"}'] == 0
    assert samples["distillrun_teacher_spend_usd_total"] == 0.42
    assert (
        samples['distillrun_stage_duration_seconds_count{outcome="succeeded",stage="generate"}']
        == 1
    )
    assert samples["distillrun_reconcile_seconds_count"] >= 2
    assert samples['distillrun_api_requests_total{method="POST"}'] >= 4
    assert _get(f"http://127.0.0.1:{liveness_port}/healthz")[0] == 200


SANDBOX_OBJECTS = (
    ("apps/v1", "deployments"),
    ("v1", "services"),
    ("networking.k8s.io/v1", "networkpolicies"),
    ("v1", "secrets"),
    ("v1", "configmaps"),
)


def _sandbox(kube: Kube, namespace: str, name: str) -> dict[str, dict[str, Any] | None]:
    found: dict[str, dict[str, Any] | None] = {}
    for api_version, plural in SANDBOX_OBJECTS:
        try:
            found[plural] = kube.get(namespaced_path(api_version, namespace, plural, name))
        except ApiError as exc:
            assert exc.status == 404, exc
            found[plural] = None
    return found


def test_a_postgres_run_gets_a_sandbox_server_until_it_ends(
    kube: Kube, namespace: str, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    start_operator()
    data = run_manifest("pg")
    data["spec"]["database"] = {
        "dialect": "postgres",
        "schema": {"ddl": "CREATE TABLE customers (id INTEGER PRIMARY KEY, country TEXT);"},
        "seedData": {"ddl": "INSERT INTO customers VALUES (1, 'NL');"},
    }
    created = create_run(kube, namespace, data)
    wait_rayjob(kube, namespace, "pg-generate-1")
    sandbox = _sandbox(kube, namespace, "pg-sandbox")
    assert all(sandbox.values()), sandbox
    for obj in sandbox.values():
        assert obj is not None
        assert obj["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    scripts = (sandbox["configmaps"] or {})["data"]
    assert scripts["20-seed.sql"] == "INSERT INTO customers VALUES (1, 'NL');\n"

    store = run_store(f"file://{tmp_path / 'artifacts'}", created)
    finish_stage(kube, namespace, store, StageName.GENERATE, "pg-generate-1")
    validate = wait_rayjob(kube, namespace, "pg-validate-1")
    head = validate["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    env = {e["name"]: e for e in head["containers"][0]["env"]}
    assert env["DISTILLRUN_SANDBOX_HOST"]["value"] == "pg-sandbox"
    assert env["DISTILLRUN_SANDBOX_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "pg-sandbox"

    for stage_name in STAGE_ORDER[1:]:
        wait_rayjob(kube, namespace, f"pg-{stage_name}-1")
        finish_stage(kube, namespace, store, stage_name, f"pg-{stage_name}-1")
    wait_run(kube, namespace, "pg", lambda r: phase(r) == "Succeeded", "Succeeded")
    wait_for(
        lambda: not any(_sandbox(kube, namespace, "pg-sandbox").values()),
        "the sandbox server to be removed after the run",
    )
