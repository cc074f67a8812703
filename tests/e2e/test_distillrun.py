"""A DistillRun on real pods: the operator (a `kopf run` process, configured by DISTILLRUN_*
variables as the chart sets them) creates each stage's RayJob, the real KubeRay operator starts
a Ray cluster in real pods, `python -m distillrun.jobs.entrypoint` runs the stage there (this
checkout's venv mounted read-only on the bed's Debian image, through the operator's jobs-pod
extras), artifacts go to an S3 server inside the bed's network, and the run ends Succeeded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from distillrun.api.layout import REPORT_KEY
from distillrun.api.resource import parse_run
from distillrun.operator.builders.config import run_store_uri
from distillrun.operator.kube import core_path
from tests.e2e.bed import Bed
from tests.e2e.stack import (
    BedProcess,
    credentials_file,
    install_crds,
    s3_client,
    start_kuberay,
    start_operator,
    start_s3,
    venv_pod_extras,
)
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


def _operator_settings() -> dict[str, str]:
    return {
        "DISTILLRUN_JOBS_IMAGE": "localhost/debian-python:bookworm",
        "DISTILLRUN_RESYNC_SECONDS": "2",
        "DISTILLRUN_METRICS_PORT": "0",
        "DISTILLRUN_CPU_WORKERS": "1",
        "DISTILLRUN_RAY_START_DEADLINE_SECONDS": "300",
        **venv_pod_extras(),
    }


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
    operator = start_operator(bed, namespace, _operator_settings())
    try:
        created = create_run(bed.kube, namespace, manifest)
        run = wait_run(
            bed.kube,
            namespace,
            "tiny",
            lambda r: phase(r) in ("Succeeded", "Failed"),
            "the run to end",
            timeout=RUN_TIMEOUT_S,
        )
    finally:
        operator.stop()
    status = run["status"]
    assert phase(run) == "Succeeded", (status, operator.log_tail())
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
    shown = _as_kubectl_get_shows(bed, namespace)
    assert shown["NAME"] == "tiny" and shown["PHASE"] == "Succeeded"
    assert shown["ACCEPTED"] == str(status["counts"]["accepted"])


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
