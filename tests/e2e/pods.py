"""Pods on the bed: manifests on the bed's base image, and waiting for what a pod does."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from distillrun.operator.kube import Kube, core_path
from tests.integration.controlplane import wait_for

BASE_IMAGE = "localhost/debian-python:bookworm"
"""The bed's Debian image (python3 included), imported by node-up: no registry is reachable."""


def python_pod(
    name: str,
    code: str,
    *,
    labels: dict[str, str] | None = None,
    restart: str = "Never",
    port: int | None = None,
) -> dict[str, Any]:
    """A pod running `python3 -c code` on the base image."""
    container: dict[str, Any] = {
        "name": "main",
        "image": BASE_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["python3", "-c", code],
    }
    if port is not None:
        container["ports"] = [{"containerPort": port}]
        container["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 1}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"restartPolicy": restart, "containers": [container]},
    }


def phase(kube: Kube, namespace: str, name: str) -> str:
    return str(kube.get(core_path(namespace, "pods", name)).get("status", {}).get("phase", ""))


def wait_finished(kube: Kube, namespace: str, name: str, timeout: float = 120.0) -> str:
    """The pod's final phase (Succeeded or Failed)."""
    return str(
        wait_for(
            lambda: (p := phase(kube, namespace, name)) in ("Succeeded", "Failed") and p,
            f"pod {namespace}/{name} to finish",
            timeout=timeout,
            interval=0.5,
        )
    )


def wait_ready(kube: Kube, namespace: str, name: str, timeout: float = 120.0) -> None:
    def ready() -> bool:
        conditions = kube.get(core_path(namespace, "pods", name)).get("status", {})
        return any(
            c["type"] == "Ready" and c["status"] == "True" for c in conditions.get("conditions", [])
        )

    wait_for(ready, f"pod {namespace}/{name} Ready", timeout=timeout, interval=0.5)


def logs(kube: Kube, namespace: str, name: str) -> str:
    return str(client.CoreV1Api(kube.api).read_namespaced_pod_log(name, namespace))
