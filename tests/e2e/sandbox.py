"""What a run's SQL sandbox server did on the bed, seen while the run goes: its pods (image,
readiness), the addresses its Service sent traffic to, its NetworkPolicy, and the Ray pods of
each stage (their labels and the sandbox host they were given). The objects are deleted when the
run ends, so the test looks while it runs and asserts afterwards."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from distillrun.api.resource import DistillRun
from distillrun.operator.builders.common import LABEL_RUN_UID, LABEL_STAGE, run_selector
from distillrun.operator.builders.sandbox import RAY_NODE_LABEL, sandbox_name, sandbox_selector
from distillrun.operator.controller import PLURALS, SANDBOX_KINDS, rayjob_path
from distillrun.operator.kube import ApiError, Kube, core_path, namespaced_path
from distillrun.sql.target import ENV_HOST

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
RAY_CLUSTER_LABEL = "ray.io/cluster"
"""KubeRay's label on a Ray pod: its RayCluster's name, which the RayJob's status names."""


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) picks `labels`."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        held = {
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
            "In": key in labels and labels[key] in (values or []),
            "NotIn": key not in labels or labels[key] not in (values or []),
        }
        if not held[operator]:
            return False
    return True


def _selector_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def _get(kube: Kube, path: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = kube.get(path)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return found


@dataclass
class SandboxWatch:
    """Looks at the run's sandbox at most once per `every` seconds (`look`, called from the
    wait for the run's end)."""

    kube: Kube
    run: DistillRun
    every: float = 1.0
    server_pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per sandbox pod: `image`, `ready`, `ip`, `labels` (last seen)."""
    endpoint_ips: set[str] = field(default_factory=set)
    """The addresses the Service's EndpointSlices listed."""
    policy: dict[str, Any] | None = None
    ray_pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per Ray pod of the run: `cluster`, `labels`, `sandbox_host` (its
    DISTILLRUN_SANDBOX_HOST)."""
    cluster_stages: dict[str, str] = field(default_factory=dict)
    """The stage of each Ray cluster, from the run's RayJobs."""
    _last: float = 0.0

    @property
    def namespace(self) -> str:
        return self.run.metadata.namespace or ""

    @property
    def name(self) -> str:
        return sandbox_name(self.run)

    def look(self) -> None:
        if time.monotonic() - self._last < self.every:
            return
        self._last = time.monotonic()
        pods = core_path(self.namespace, "pods")
        for pod in self.kube.list(pods, _selector_text(sandbox_selector(self.run))):
            status = pod.get("status", {})
            self.server_pods[pod["metadata"]["name"]] = {
                "image": pod["spec"]["containers"][0]["image"],
                "ready": any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in status.get("conditions", [])
                ),
                "ip": status.get("podIP"),
                "labels": pod["metadata"]["labels"],
            }
        slices = namespaced_path("discovery.k8s.io/v1", self.namespace, "endpointslices")
        for endpoint_slice in self.kube.list(slices, f"{SERVICE_NAME_LABEL}={self.name}"):
            for endpoint in endpoint_slice.get("endpoints") or []:
                self.endpoint_ips |= set(endpoint["addresses"])
        policy_path = namespaced_path(
            "networking.k8s.io/v1", self.namespace, "networkpolicies", self.name
        )
        self.policy = _get(self.kube, policy_path) or self.policy
        uid = self.run.metadata.uid or ""
        run_pods = f"{LABEL_RUN_UID}={uid},{RAY_NODE_LABEL}"
        for pod in self.kube.list(pods, run_pods):
            labels = pod["metadata"]["labels"]
            env = {
                e["name"]: e.get("value")
                for c in pod["spec"]["containers"]
                for e in c.get("env") or []
            }
            self.ray_pods[pod["metadata"]["name"]] = {
                "cluster": labels.get(RAY_CLUSTER_LABEL),
                "labels": labels,
                "sandbox_host": env.get(ENV_HOST),
            }

        for job in self.kube.list(rayjob_path(self.namespace), run_selector(uid)):
            cluster = job.get("status", {}).get("rayClusterName")
            if cluster:
                self.cluster_stages[cluster] = job["metadata"]["labels"][LABEL_STAGE]

    def stage_pods(self, stage: str) -> list[dict[str, Any]]:
        """The Ray pods seen of `stage`."""
        return [
            pod
            for pod in self.ray_pods.values()
            if self.cluster_stages.get(pod["cluster"]) == stage
        ]

    def leftovers(self) -> list[str]:
        """The sandbox's objects and pods that still exist."""
        left = [
            kind
            for api_version, kind in SANDBOX_KINDS
            if _get(
                self.kube, namespaced_path(api_version, self.namespace, PLURALS[kind], self.name)
            )
            is not None
        ]
        pods = self.kube.list(
            core_path(self.namespace, "pods"), _selector_text(sandbox_selector(self.run))
        )
        return left + [f"Pod {p['metadata']['name']}" for p in pods]
