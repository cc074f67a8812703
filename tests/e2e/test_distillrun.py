"""A DistillRun on real pods: the operator, installed as a team installs it (its image built
from the Dockerfile, `helm install` of the chart), creates each stage's RayJob, the real KubeRay
operator starts a Ray cluster in real pods, `python -m distillrun.jobs.entrypoint` runs the
stage there (this checkout's venv mounted read-only on the bed's Debian image, through the
chart's jobs extras), artifacts go to an S3 server inside the bed's network, and the run ends
Succeeded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from distillrun.api.layout import REPORT_KEY
from distillrun.api.resource import parse_run
from distillrun.operator.builders.config import run_store_uri
from distillrun.operator.kube import core_path
from tests.e2e.bed import Bed
from tests.e2e.stack import (
    BedProcess,
    build_operator_image,
    credentials_file,
    helm_install_operator,
    install_crds,
    s3_client,
    start_kuberay,
    start_s3,
)
from tests.integration.controlplane import wait_for
from tests.integration.helpers import create_run, phase, run_manifest, wait_run

pytestmark = pytest.mark.e2e

BUCKET = "e2e-artifacts"
RUN_TIMEOUT_S = 1500.0
"""Five stages on a 2-core machine: each starts a Ray head and worker (about 30 s) and runs."""


@pytest.fixture
def kuberay_and_s3(bed: Bed) -> Iterator[None]:
    install_crds(bed)
    started: list[BedProcess] = [start_kuberay(bed), start_s3(bed, BUCKET)]
    yield
    for process in started:
        process.stop()


def _operator_log(bed: Bed, namespace: str) -> str:
    pods = bed.kube.list(core_path(namespace, "pods"), "app.kubernetes.io/name=distillrun")
    if not pods:
        return "(no operator pod)"
    name = pods[0]["metadata"]["name"]
    return str(client.CoreV1Api(bed.kube.api).read_namespaced_pod_log(name, namespace))[-3000:]


def test_a_synthetic_sqlite_run_succeeds_on_real_pods(
    bed: Bed, namespace: str, kuberay_and_s3: None
) -> None:
    bed.kube.create(
        core_path(namespace, "secrets"),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3"},
            "stringData": {"credentials": credentials_file()},
        },
    )
    manifest: dict[str, Any] = run_manifest("tiny", artifacts=f"s3://{BUCKET}/runs")
    manifest["spec"]["artifacts"]["credentialsSecretRef"] = {"name": "s3", "key": "credentials"}
    build_operator_image(bed)
    helm_install_operator(bed, namespace)
    created = create_run(bed.kube, namespace, manifest)
    run = wait_run(
        bed.kube,
        namespace,
        "tiny",
        lambda r: phase(r) in ("Succeeded", "Failed"),
        "the run to end",
        timeout=RUN_TIMEOUT_S,
    )
    status = run["status"]
    assert phase(run) == "Succeeded", (status, _operator_log(bed, namespace))
    assert status["counts"]["generated"] >= 40
    assert 0 < status["counts"]["accepted"] <= status["counts"]["generated"]
    assert status["evaluation"]["examples"] > 0
    assert 0.0 <= status["evaluation"]["executionAccuracy"] <= 1.0
    prefix = run_store_uri(f"s3://{BUCKET}/runs", parse_run(created)).removeprefix(
        f"s3://{BUCKET}/"
    )
    report = s3_client().get_object(Bucket=BUCKET, Key=f"{prefix}/{REPORT_KEY}")
    assert b"<html" in report["Body"].read().lower()
    assert status["artifacts"]["report"] == f"s3://{BUCKET}/{prefix}/{REPORT_KEY}"
    _operator_pod_is_the_charts_and_restricted(bed, namespace)
    shown = _as_kubectl_get_shows(bed, namespace)
    assert shown["NAME"] == "tiny" and shown["PHASE"] == "Succeeded"
    assert shown["ACCEPTED"] == str(status["counts"]["accepted"])


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


def _as_kubectl_get_shows(bed: Bed, namespace: str) -> dict[str, str]:
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
    (row,) = table["rows"]
    return {name: str(cell) for name, cell in zip(columns, row["cells"], strict=True)}
