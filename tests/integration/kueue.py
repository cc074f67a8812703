"""Kueue (built by `scripts/testbed/build`) run against the session's control plane, for the
queue tests of tests/integration/test_gpu_pools.py: its CRDs, its manager and the quota
objects a platform team would create (ResourceFlavors, ClusterQueues, LocalQueues).

Outside a cluster Kueue needs three things its install manifests otherwise provide:
- its conversion webhook, reachable by the apiserver: its CRDs store v1beta1 while its
  manager reads and writes v1beta2, so every one of its requests goes through `/convert`. The
  manager serves its webhooks on 127.0.0.1 with a self-signed certificate made here (its own
  certificate management issues one for `<service>.<namespace>.svc`, which nothing resolves
  here), and the CRDs' conversion points at that URL with that certificate as CA bundle;
- a metrics serving certificate: Kueue reads one even with metrics off, from
  `$KUEUE_METRICS_CERT_DIR` in the testbed build (upstream: the fixed /etc/kueue/metrics/certs);
- its namespace (`kueue-system`), as its install manifests create it.
No admission webhook is registered: the operator creates RayJobs suspended and labelled with
their queue already, which is all Kueue's RayJob reconciler needs to create, admit and
unsuspend their Workloads."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import Any

import yaml

from distillrun.operator.kube import ApiError, Kube, namespaced_path
from tests.integration.controlplane import ControlPlane, established, wait_for
from tests.integration.scheduling import GPU_RESOURCE, Daemon, binary

KUEUE_API = "kueue.x-k8s.io/v1beta2"
KUEUE_NAMESPACE = "kueue-system"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
CONVERTED = ("localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters")
"""The CRDs whose versions Kueue converts with its webhook (its kustomization's
`webhook_in_*` patches); the others keep `strategy: None`."""
HOW_TO_BUILD = (
    "the queue tests need Kueue: build it with `scripts/testbed/build` (about 8 minutes on 2 "
    "cores; `scripts/test` does it for you)"
)
READY_TIMEOUT_S = 60.0


def free_port() -> int:
    """A loopback port nothing listens on now (the daemon binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def self_signed_certificate(directory: Path) -> bytes:
    """`tls.crt` and `tls.key` in `directory`, for 127.0.0.1: the certificate is its own CA,
    so the apiserver trusts it with it as the CA bundle. Returns the certificate (PEM)."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-nodes", "-days", "2",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt"),
            "-subj", "/CN=kueue-webhook", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return (directory / "tls.crt").read_bytes()


def install_crds(plane: ControlPlane, kube: Kube, webhook_port: int, ca_bundle: bytes) -> None:
    """Kueue's CRDs from the testbed cache, their conversion sent to the manager's webhook on
    `webhook_port`. CRDs left by an earlier Kueue of the session get the new port."""
    paths = sorted((plane.cache / "crds").glob("kueue.x-k8s.io_*.yaml"))
    assert paths, f"missing {plane.cache / 'crds'}/kueue.x-k8s.io_*.yaml: {HOW_TO_BUILD}"
    conversion = {
        "strategy": "Webhook",
        "webhook": {
            "clientConfig": {
                "url": f"https://127.0.0.1:{webhook_port}/convert",
                "caBundle": b64encode(ca_bundle).decode(),
            },
            "conversionReviewVersions": ["v1"],
        },
    }
    names = []
    for path in paths:
        crd = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        names.append(name)
        if name.split(".")[0] in CONVERTED:
            crd["spec"]["conversion"] = conversion
        try:
            kube.create(CRDS, crd)
        except ApiError as exc:
            if exc.status != 409:
                raise
            if name.split(".")[0] in CONVERTED:
                kube.merge_patch(f"{CRDS}/{name}", {"spec": {"conversion": conversion}})
    for name in names:
        wait_for(lambda name=name: established(kube.get(f"{CRDS}/{name}")), f"CRD {name}")


def _configuration(workdir: Path, webhook_port: int, health_port: int) -> dict[str, Any]:
    """The manager's Configuration: RayJobs only, and only those labelled with a queue; no
    leader election, no metrics server, no certificate management of its own."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": KUEUE_NAMESPACE,
        "manageJobsWithoutQueueName": False,
        "internalCertManagement": {"enable": False},
        "leaderElection": {"leaderElect": False},
        "metrics": {"bindAddress": "0"},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "webhook": {
            "host": "127.0.0.1",
            "port": webhook_port,
            "certDir": str(workdir / "webhook-certs"),
        },
        "integrations": {"frameworks": ["ray.io/rayjob"]},
    }


def _ready(daemon: Daemon, health_port: int) -> bool:
    daemon.check_alive()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_kueue(plane: ControlPlane, kube: Kube, workdir: Path) -> Daemon:
    """Kueue's manager with the admin kubeconfig, its CRDs installed; returns once it reports
    ready (its webhook server, which its CRDs' conversion needs, is serving). Its on-demand
    visibility API is off: an aggregated API server with certificates of its own, which nothing
    here registers or asks."""
    kueue = binary(plane, "kueue", HOW_TO_BUILD)
    workdir.mkdir(parents=True, exist_ok=True)
    webhook_port, health_port = free_port(), free_port()
    ca_bundle = self_signed_certificate(workdir / "webhook-certs")
    self_signed_certificate(workdir / "metrics-certs")
    install_crds(plane, kube, webhook_port, ca_bundle)
    try:
        kube.create(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KUEUE_NAMESPACE}},
        )
    except ApiError as exc:
        if exc.status != 409:
            raise
    config = workdir / "kueue-config.yaml"
    config.write_text(yaml.safe_dump(_configuration(workdir, webhook_port, health_port)))
    argv = [
        str(kueue),
        f"--kubeconfig={plane.kubeconfig}",
        f"--config={config}",
        "--feature-gates=VisibilityOnDemand=false",
        "--zap-log-level=2",
    ]
    env = {"KUEUE_METRICS_CERT_DIR": str(workdir / "metrics-certs")}
    daemon = Daemon(workdir, "kueue", argv, env=env)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not _ready(daemon, health_port):
        if time.monotonic() > deadline:
            daemon.stop()
            log = daemon.log_path.read_text(errors="replace")
            raise RuntimeError(f"Kueue did not become ready:\n{log[-4000:]}")
        time.sleep(0.2)
    return daemon


def kueue_path(plural: str, namespace: str | None = None, name: str = "") -> str:
    base = f"/apis/{KUEUE_API}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return f"{path}/{name}" if name else path


DEFAULT_FLAVOR = "default-flavor"
"""The flavor of CPU and memory: no node labels, so Kueue leaves the placement of the pods
that ask for no GPU (Ray heads, job submitters) to their own selectors."""
CPU_QUOTA = {"cpu": "1000", "memory": "100Ti"}
"""Enough for any number of runs: the queue tests are about GPUs."""


def _create_once(kube: Kube, path: str, body: dict[str, Any]) -> None:
    try:
        kube.create(path, body)
    except ApiError as exc:
        if exc.status != 409:
            raise


def create_team_queue(
    kube: Kube, namespace: str, queue: str, gpu_flavor: str, node_labels: dict[str, str], gpus: int
) -> str:
    """What a platform team sets up for a team: a ResourceFlavor per GPU pool (`node_labels`
    select its Nodes; Kueue adds them to the pods it admits on that flavor), a ClusterQueue for
    the team's namespace only with `gpus` GPUs of the pool (and CPU and memory on the default
    flavor), and the LocalQueue `queue` in the namespace that runs name. Returns the
    ClusterQueue's name."""
    _create_once(
        kube,
        kueue_path("resourceflavors"),
        {"apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": {"name": DEFAULT_FLAVOR}},
    )
    _create_once(
        kube,
        kueue_path("resourceflavors"),
        {
            "apiVersion": KUEUE_API,
            "kind": "ResourceFlavor",
            "metadata": {"name": gpu_flavor},
            "spec": {"nodeLabels": node_labels},
        },
    )
    cluster_queue = f"{namespace}-{queue}"
    cpu_group = {
        "coveredResources": sorted(CPU_QUOTA),
        "flavors": [
            {
                "name": DEFAULT_FLAVOR,
                "resources": [{"name": k, "nominalQuota": v} for k, v in CPU_QUOTA.items()],
            }
        ],
    }
    gpu_group = {
        "coveredResources": [GPU_RESOURCE],
        "flavors": [
            {"name": gpu_flavor, "resources": [{"name": GPU_RESOURCE, "nominalQuota": str(gpus)}]}
        ],
    }
    kube.create(
        kueue_path("clusterqueues"),
        {
            "apiVersion": KUEUE_API,
            "kind": "ClusterQueue",
            "metadata": {"name": cluster_queue},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "resourceGroups": [cpu_group, gpu_group],
            },
        },
    )
    kube.create(
        kueue_path("localqueues", namespace),
        {
            "apiVersion": KUEUE_API,
            "kind": "LocalQueue",
            "metadata": {"name": queue},
            "spec": {"clusterQueue": cluster_queue},
        },
    )
    wait_for(
        lambda: _condition(kube.get(kueue_path("localqueues", namespace, queue)), "Active"),
        f"LocalQueue {queue} active",
    )
    return cluster_queue


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The condition `kind` of a Kueue object when it is True."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind and cond["status"] == "True":
            found: dict[str, Any] = cond
            return found
    return None


def workload_of(kube: Kube, namespace: str, rayjob: str) -> dict[str, Any] | None:
    """The Workload Kueue made for the RayJob `rayjob` (the one it owns), if any yet."""
    for workload in kube.list(kueue_path("workloads", namespace), ""):
        owners = workload["metadata"].get("ownerReferences") or []
        if any(o["kind"] == "RayJob" and o["name"] == rayjob for o in owners):
            return workload
    return None


def wait_admitted(kube: Kube, namespace: str, rayjob: str) -> dict[str, Any]:
    """The RayJob's Workload once Kueue has admitted it and, next, unsuspended the RayJob
    (dropping `spec.suspend`)."""

    def admitted() -> dict[str, Any] | None:
        workload = workload_of(kube, namespace, rayjob)
        if not workload or not _condition(workload, "Admitted"):
            return None
        job = kube.get(namespaced_path("ray.io/v1", namespace, "rayjobs", rayjob))
        return None if job["spec"].get("suspend", False) else workload

    found: dict[str, Any] = wait_for(admitted, f"{rayjob} admitted and unsuspended", 60.0)
    return found


def wait_pending(kube: Kube, namespace: str, rayjob: str) -> str:
    """Why Kueue has not admitted the RayJob's Workload (the message of its QuotaReserved
    condition), once it has tried."""

    def pending() -> str | None:
        workload = workload_of(kube, namespace, rayjob)
        for cond in ((workload or {}).get("status") or {}).get("conditions") or []:
            if cond["type"] == "QuotaReserved" and cond["status"] == "False":
                message: str = cond["message"]
                return message
        return None

    found: str = wait_for(pending, f"the Workload of {rayjob} pending", 60.0)
    return found
