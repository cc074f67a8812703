"""The secret canary: a run whose API key and S3 credentials are canary strings goes through
every stage (with a failed attempt on the way); the canary never appears in any resource,
event, ConfigMap or log line the operator writes, in clear or base64. Secrets reach the jobs
only as references."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from distillrun.api.status import STAGE_ORDER, StageName
from distillrun.operator.controller import rayjob_path, run_path
from distillrun.operator.kube import Kube, core_path
from tests.integration.conftest import OperatorFactory
from tests.integration.helpers import (
    create_run,
    finish_stage,
    kuberay_failed,
    phase,
    run_manifest,
    run_store,
    wait_rayjob,
    wait_run,
)

pytestmark = pytest.mark.integration

CANARY_KEY = "sk-ant-canary-5f0c1d2e3a4b"
CANARY_S3 = "canary-s3-secret-9e8d7c6b"


def _forms(secret: str) -> list[str]:
    return [secret, base64.b64encode(secret.encode()).decode()]


def test_the_canary_never_leaks(
    kube: Kube,
    namespace: str,
    start_operator: OperatorFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("kopf").setLevel(logging.DEBUG)
    for name, key, value in (
        ("anthropic", "api-key", CANARY_KEY),
        ("s3", "credentials", f"[default]\naws_secret_access_key = {CANARY_S3}\n"),
    ):
        kube.create(
            core_path(namespace, "secrets"),
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name},
                "stringData": {key: value},
            },
        )
    start_operator()
    data = run_manifest("canary")
    data["spec"]["teacher"] = {
        "provider": "anthropic",
        "apiKeySecretRef": {"name": "anthropic", "key": "api-key"},
        "targetExamples": 40,
    }
    data["spec"]["artifacts"] = {
        "uri": f"file://{tmp_path / 'artifacts'}",
        "credentialsSecretRef": {"name": "s3", "key": "credentials"},
    }
    created = create_run(kube, namespace, data)
    store = run_store(f"file://{tmp_path / 'artifacts'}", created)

    first = wait_rayjob(kube, namespace, "canary-generate-1")
    kuberay_failed(kube, namespace, "canary-generate-1", "AppFailed", "connection reset")
    wait_rayjob(kube, namespace, "canary-generate-2")
    finish_stage(kube, namespace, store, StageName.GENERATE, "canary-generate-2")
    for stage_name in STAGE_ORDER[1:]:
        wait_rayjob(kube, namespace, f"canary-{stage_name}-1")
        finish_stage(kube, namespace, store, stage_name, f"canary-{stage_name}-1")
    wait_run(kube, namespace, "canary", lambda r: phase(r) == "Succeeded", "Succeeded")

    head = first["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    env = {e["name"]: e for e in head["containers"][0]["env"]}
    assert env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "anthropic",
        "key": "api-key",
    }
    assert "value" not in env["ANTHROPIC_API_KEY"]

    written = {
        "distillruns": kube.get(run_path(namespace)),
        "rayjobs": kube.get(rayjob_path(namespace)),
        "configmaps": kube.get(core_path(namespace, "configmaps")),
        "events": kube.get(core_path(namespace, "events")),
    }
    assert written["rayjobs"]["items"] and written["configmaps"]["items"]
    assert written["events"]["items"]
    texts = {kind: json.dumps(items) for kind, items in written.items()}
    texts["operator logs"] = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    assert len(caplog.records) > 50  # the logs were captured, at DEBUG
    texts["artifacts"] = "\n".join(
        p.read_text(errors="replace") for p in (tmp_path / "artifacts").rglob("*") if p.is_file()
    )
    hits = [
        (where, form)
        for where, text in texts.items()
        for secret in (CANARY_KEY, CANARY_S3)
        for form in _forms(secret)
        if form in text
    ]
    assert hits == []
