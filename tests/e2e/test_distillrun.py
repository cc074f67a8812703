"""DistillRuns on real pods: the operator, installed as a team installs it (its image built
from the Dockerfile, `helm install` of the chart), creates each stage's RayJob, the real KubeRay
operator starts a Ray cluster in real pods, `python -m distillrun.jobs.entrypoint` runs the
stage there (this checkout's venv mounted read-only on the bed's Debian image, through the
chart's jobs extras), artifacts go to an S3 server inside the bed's network, and the run ends
Succeeded. A postgres run's queries go to its sandbox server, a real pod of the bed's
PostgreSQL image behind its Service, removed when the run ends."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from distillrun.api.layout import REPORT_KEY
from distillrun.api.resource import parse_run
from distillrun.api.status import StageName
from distillrun.operator.kube import core_path
from tests.e2e.bed import Bed
from tests.e2e.runs import run_on_s3, store_prefix, wait_ended
from tests.e2e.sandbox import SandboxWatch, selects
from tests.e2e.stack import BUCKET, POSTGRES_IMAGE, Team, operator_log, s3_client
from tests.integration.controlplane import ROOT, wait_for
from tests.integration.helpers import create_run, phase

pytestmark = pytest.mark.e2e

SHOP = ROOT / "examples" / "shop"


def _succeeded(team: Team, name: str, look: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """The run's status once it ended: it must have Succeeded with examples accepted and
    evaluated."""
    run = wait_ended(team, name, look)
    status: dict[str, Any] = run["status"]
    stages = json.dumps(status.get("stages"), indent=1)  # a string: pytest cuts a long repr
    assert phase(run) == "Succeeded", f"{stages}\n{operator_log(team.bed, team.namespace)}"
    assert status["counts"]["generated"] >= 40
    assert 0 < status["counts"]["accepted"] <= status["counts"]["generated"]
    assert status["evaluation"]["examples"] > 0
    assert 0.0 <= status["evaluation"]["executionAccuracy"] <= 1.0
    return status


def test_a_synthetic_sqlite_run_succeeds_on_real_pods(team: Team) -> None:
    bed, namespace = team.bed, team.namespace
    created = parse_run(create_run(bed.kube, namespace, run_on_s3("tiny")))
    status = _succeeded(team, "tiny")
    prefix = store_prefix(created)
    report = s3_client().get_object(Bucket=BUCKET, Key=f"{prefix}/{REPORT_KEY}")
    assert b"<html" in report["Body"].read().lower()
    assert status["artifacts"]["report"] == f"s3://{BUCKET}/{prefix}/{REPORT_KEY}"
    _operator_pod_is_the_charts_and_restricted(bed, namespace)
    shown = _as_kubectl_get_shows(bed, namespace, "tiny")
    assert shown["NAME"] == "tiny" and shown["PHASE"] == "Succeeded"
    assert shown["ACCEPTED"] == str(status["counts"]["accepted"])


def test_a_postgres_run_queries_its_sandbox_server_pod_which_goes_with_the_run(
    team: Team,
) -> None:
    """Validate and evaluate can only run a postgres query on a server (no in-process
    fallback); the only one the Ray pods can reach is the sandbox pod behind its Service."""
    manifest = run_on_s3("shop-pg")
    manifest["spec"]["database"] = {
        "dialect": "postgres",
        "schema": {"ddl": (SHOP / "schema.sql").read_text()},
        "seedData": {"ddl": (SHOP / "seed.sql").read_text()},
    }
    created = parse_run(create_run(team.bed.kube, team.namespace, manifest))
    watch = SandboxWatch(team.bed.kube, created)
    _succeeded(team, "shop-pg", watch.look)

    (server,) = watch.server_pods.values()
    assert server["image"] == POSTGRES_IMAGE and server["ready"], server
    assert watch.endpoint_ips == {server["ip"]}, "the Service sent traffic elsewhere"
    for stage in (StageName.VALIDATE, StageName.EVALUATE):
        pods = watch.stage_pods(stage)
        assert pods, f"no Ray pod of {stage} was seen"
        assert {p["sandbox_host"] for p in pods} == {watch.name}, pods
    # The NetworkPolicy guards the server and admits exactly these Ray pods; the bed's bridge
    # CNI does not enforce it (README), so only its selectors are checked here.
    assert watch.policy is not None, "no NetworkPolicy guarded the sandbox"
    spec = watch.policy["spec"]
    assert selects(spec["podSelector"], server["labels"])
    (allowed,) = spec["ingress"]
    assert all(
        selects(allowed["from"][0]["podSelector"], p["labels"]) for p in watch.ray_pods.values()
    )
    assert not selects(allowed["from"][0]["podSelector"], server["labels"])
    # No egress rule (the apiserver stores the builder's empty list as no key) under an Egress
    # policy type: all egress denied.
    assert not spec.get("egress") and set(spec["policyTypes"]) == {"Ingress", "Egress"}

    wait_for(lambda: not watch.leftovers(), "the sandbox to be removed", timeout=120, interval=1)


def _operator_pod_is_the_charts_and_restricted(bed: Bed, namespace: str) -> None:
    """The operator ran as a pod under the chart's ServiceAccount, and that pod as it ran would
    be admitted where Pod Security `restricted` is enforced (server-side dry run): the jobs
    pods here mount the venv from the node, which `restricted` refuses, so the team namespace
    itself enforces nothing."""
    (pod,) = bed.kube.list(core_path(namespace, "pods"), "app.kubernetes.io/name=distillrun")
    assert pod["spec"]["serviceAccountName"] == "distillrun"
    assert pod["status"]["phase"] == "Running"
    strict = f"{namespace}-restricted"
    bed.kube.create(
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": strict,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        },
    )
    try:
        # As it ran, bound to no node, under the new namespace's default ServiceAccount.
        placed = ("nodeName", "serviceAccount", "serviceAccountName")
        spec = {k: v for k, v in pod["spec"].items() if k not in placed}
        copy = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "copy"}, "spec": spec}
        wait_for(
            lambda: bed.kube.list(core_path(strict, "serviceaccounts"), ""),
            f"the default ServiceAccount of {strict}",
        )
        bed.kube.request("POST", core_path(strict, "pods"), query={"dryRun": "All"}, body=copy)
    finally:
        bed.kube.delete(f"/api/v1/namespaces/{strict}")


def _as_kubectl_get_shows(bed: Bed, namespace: str, name: str) -> dict[str, str]:
    """The run's row of `kubectl get drun` (the apiserver's Table rendering of the CRD's
    printer columns, which kubectl prints)."""
    request = bed.kube.api.param_serialize(
        method="GET",
        resource_path=f"/apis/distillrun.dev/v1alpha1/namespaces/{namespace}/distillruns",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
    )
    table = json.loads(bed.kube.api.call_api(*request).read())  # type: ignore[no-untyped-call]
    columns = [c["name"].upper() for c in table["columnDefinitions"]]
    rows = [dict(zip(columns, map(str, r["cells"]), strict=True)) for r in table["rows"]]
    (row,) = [r for r in rows if r["NAME"] == name]
    return row
