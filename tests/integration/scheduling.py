"""Pods that get placed: KubeRay's operator (RayJob -> RayCluster -> Pods), kube-scheduler and
kwok (fake Nodes whose Pods it marks Running), all from `scripts/testbed/build` and run against
the session's control plane, and GPU pools made of kwok Nodes labelled and tainted as GPU
feature discovery and a platform team would.

Only the GPU pool tests start these (kube-scheduler and kwok per module, KubeRay per test): the
rest of the suite needs no scheduler, and no Pod of theirs should be placed."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from distillrun.api.profiles import GPU_PRODUCT_LABEL
from distillrun.operator.kube import ApiError, Kube, core_path
from tests.integration.controlplane import ControlPlane, established, terminate, wait_for

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
"""Nodes kwok manages carry `kwok.x-k8s.io/node: fake`; kwok leaves every other Node alone."""
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
"""The taint GPU nodes carry (as GKE and most platform teams set it) so that only Pods that
tolerate it, the ones asking for GPUs, land there."""
HOW_TO_BUILD = (
    "the GPU pool tests need kube-scheduler, kwok and the KubeRay operator: build them with "
    "`scripts/testbed/build` (a few minutes once kube-apiserver is built; `scripts/test` does "
    "it for you)"
)
POOL_LABEL = "distillrun.test/pool"
"""Marks the Nodes of this module's pools, so they are found and removed together."""


@dataclass(frozen=True)
class Pool:
    """`nodes` kwok Nodes of one kind of machine: `gpus` GPUs of `product` each (none for the
    untainted CPU pool that takes the Ray heads), and enough CPU and memory for the largest
    worker a profile asks for."""

    name: str
    product: str | None
    gpus: int
    nodes: int
    cpu: str = "128"
    memory: str = "2Ti"

    @property
    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.nodes)]

    def node(self, name: str) -> dict[str, Any]:
        labels = {POOL_LABEL: self.name, "kubernetes.io/hostname": name}
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": "110"}
        if self.product is not None:
            labels[GPU_PRODUCT_LABEL] = self.product
            resources[GPU_RESOURCE] = str(self.gpus)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels, "annotations": {KWOK_ANNOTATION: "fake"}},
            "status": {"capacity": resources, "allocatable": resources},
        }

    def taints(self) -> list[dict[str, str]]:
        return [GPU_TAINT] if self.product is not None else []


class Daemon:
    """A testbed binary run in the background, its output in `<workdir>/<name>.log`."""

    def __init__(
        self, workdir: Path, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env} if env else None,
        )

    def check_alive(self) -> None:
        if self._process.poll() is not None:
            log = self.log_path.read_text(errors="replace")
            raise RuntimeError(f"{self.name} exited:\n{log[-4000:]}")

    def stop(self) -> None:
        terminate(self._process)
        self._log.close()


def binary(plane: ControlPlane, name: str, how_to_build: str = HOW_TO_BUILD) -> Path:
    """The testbed's `name`; AssertionError with the build command when it is not built."""
    path = plane.cache / "bin" / name
    assert path.exists(), f"missing {path}: {how_to_build}"
    return path


def start_scheduler(plane: ControlPlane, workdir: Path) -> Daemon:
    """kube-scheduler with the admin kubeconfig (so no RBAC to set up), no leader election and
    no serving port (nothing reads its health or metrics here)."""
    argv = [
        str(binary(plane, "kube-scheduler")),
        f"--kubeconfig={plane.kubeconfig}",
        "--leader-elect=false",
        "--secure-port=0",
        "--v=2",
    ]
    return Daemon(workdir, "kube-scheduler", argv)


def start_kwok(plane: ControlPlane, workdir: Path) -> Daemon:
    """kwok managing only the Nodes annotated as fake, with kwokctl's default Stages (fetched
    by the build next to the binary)."""
    stages = plane.cache / "kwok" / "stages.yaml"
    assert stages.exists(), f"missing {stages}: {HOW_TO_BUILD}"
    argv = [
        str(binary(plane, "kwok")),
        f"--kubeconfig={plane.kubeconfig}",
        f"--config={stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
        "--node-port=0",
        "--server-address=",
    ]
    return Daemon(workdir, "kwok", argv)


CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
RAYSERVICE_CRD = "rayservices.ray.io"


def _install_rayservice_crd(plane: ControlPlane, kube: Kube) -> None:
    """KubeRay's operator watches RayServices and exits when their CRD is missing; the rest of
    the suite never needs it, so it is installed here, once per session."""
    try:
        kube.get(f"{CRDS}/{RAYSERVICE_CRD}")
        return
    except ApiError as exc:
        if exc.status != 404:
            raise
    path = plane.cache / "crds" / "ray.io_rayservices.yaml"
    assert path.exists(), f"missing {path}: {HOW_TO_BUILD}"
    kube.create(CRDS, yaml.safe_load(path.read_text()))
    wait_for(lambda: established(kube.get(f"{CRDS}/{RAYSERVICE_CRD}")), f"CRD {RAYSERVICE_CRD}")


def start_kuberay(plane: ControlPlane, kube: Kube, workdir: Path, namespace: str) -> Daemon:
    """KubeRay's operator (v1.6.0, the version of the suite's CRDs) watching `namespace` only,
    with the admin kubeconfig, no leader election, no metrics or probe ports and no webhooks
    (its default)."""
    _install_rayservice_crd(plane, kube)
    argv = [
        str(binary(plane, "kuberay-operator")),
        f"--kubeconfig={plane.kubeconfig}",
        f"--watch-namespace={namespace}",
        "--enable-leader-election=false",
        "--metrics-addr=0",
        "--health-probe-bind-address=0",
        "--log-stdout-encoder=console",
    ]
    return Daemon(workdir, "kuberay-operator", argv)


def _ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def create_pool(kube: Kube, pool: Pool) -> None:
    """The pool's Nodes, Ready (kwok) and tainted as the pool says. The apiserver taints every
    new Node `node.kubernetes.io/not-ready` until kube-controller-manager's node lifecycle
    controller sees it Ready; there is none here, so the taints are set as it would leave them."""
    for name in pool.node_names:
        kube.create("/api/v1/nodes", pool.node(name))
    for name in pool.node_names:
        wait_for(lambda name=name: _ready(kube.get(f"/api/v1/nodes/{name}")), f"{name} Ready")
        kube.merge_patch(f"/api/v1/nodes/{name}", {"spec": {"taints": pool.taints() or None}})


def delete_pools(kube: Kube) -> None:
    for node in kube.list("/api/v1/nodes", POOL_LABEL):
        kube.delete(f"/api/v1/nodes/{node['metadata']['name']}")


def create_default_service_account(kube: Kube, namespace: str) -> None:
    """The `default` ServiceAccount kube-controller-manager would create: Pod admission refuses
    a Pod whose ServiceAccount does not exist, even one that mounts no token."""
    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
    kube.create(core_path(namespace, "serviceaccounts"), body)


def delete_pods(kube: Kube, namespace: str) -> None:
    """Frees the pools' GPUs for the next test: kwok finishes the deletion of each Pod (there is
    no kubelet to), and the call returns once they are gone."""
    for pod in kube.list(core_path(namespace, "pods"), ""):
        try:
            kube.delete(core_path(namespace, "pods", pod["metadata"]["name"]))
        except ApiError as exc:
            if exc.status != 404:
                raise
    wait_for(lambda: not kube.list(core_path(namespace, "pods"), ""), "the Pods deleted")


def placed(kube: Kube, namespace: str, selector: str, count: int) -> list[dict[str, Any]]:
    """The `count` Pods matching `selector` once every one is bound to a Node and Running."""

    def running() -> list[dict[str, Any]] | None:
        pods = kube.list(core_path(namespace, "pods"), selector)
        done = [p for p in pods if p["spec"].get("nodeName") and p["status"]["phase"] == "Running"]
        return pods if len(pods) == count and len(done) == count else None

    found: list[dict[str, Any]] = wait_for(running, f"{count} Pods {selector} Running", 60.0)
    return found
