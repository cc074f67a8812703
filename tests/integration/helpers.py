"""What the integration tests do to the cluster: create runs, play KubeRay's part (pods do not
run here, so a test moves a RayJob's status the way KubeRay's controller does) and the stages'
part (the outputs the operator reads, written to a file:// store), and read the results."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distillrun.api.layout import PUBLISHED_DONE_KEY, SUMMARY_KEYS, failure_key
from distillrun.api.resource import parse_run
from distillrun.api.status import StageName
from distillrun.operator.builders.common import run_selector
from distillrun.operator.builders.config import run_store_uri
from distillrun.operator.controller import rayjob_path, run_path
from distillrun.operator.kube import Kube, core_path
from distillrun.store import Store, open_store
from tests.integration.controlplane import wait_for

ROOT = Path(__file__).parents[2]
SCHEMA = (ROOT / "examples" / "shop" / "schema.sql").read_text()
GENERATE_SUMMARY = {
    "generated": 40,
    "usage": {
        "input_tokens": 1200,
        "output_tokens": 800,
        "cache_read_tokens": 300,
        "cache_write_tokens": 150,
        "usd": 0.42,
    },
    "plan": ["generate/shards/a.jsonl"],
}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_manifest(name: str, artifacts: str | None = None) -> dict[str, Any]:
    """A small offline run (synthetic teacher, SQLite, CPU student) as a cluster would get it:
    the schema inline, the store from the operator's default unless `artifacts` is given."""
    spec: dict[str, Any] = {
        "database": {"dialect": "sqlite", "schema": {"ddl": SCHEMA}},
        "seedQuestions": ["How many customers signed up in each country?"],
        "teacher": {"provider": "synthetic", "targetExamples": 40, "examplesPerShard": 20},
        "student": {
            "model": "builtin:tiny-qwen3",
            "hardwareProfile": "cpu",
            "gpusPerWorker": 0,
            "epochs": 1,
        },
        "evaluation": {"minExecutionAccuracy": 0.0},
    }
    if artifacts is not None:
        spec["artifacts"] = {"uri": artifacts}
    return {
        "apiVersion": "distillrun.dev/v1alpha1",
        "kind": "DistillRun",
        "metadata": {"name": name},
        "spec": spec,
    }


def create_run(kube: Kube, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = kube.create(run_path(namespace), manifest)
    return created


def get_run(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = kube.get(run_path(namespace, name))
    return found


def rayjobs(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    """Every RayJob in the namespace, by name."""
    items = kube.request("GET", rayjob_path(namespace))["items"]
    return {item["metadata"]["name"]: item for item in items}


def children(kube: Kube, namespace: str, uid: str) -> tuple[list[str], list[str]]:
    """Names of the run's RayJobs and ConfigMaps, sorted."""
    selector = run_selector(uid)
    jobs = kube.list(rayjob_path(namespace), selector)
    maps = kube.list(core_path(namespace, "configmaps"), selector)
    return (
        sorted(j["metadata"]["name"] for j in jobs),
        sorted(m["metadata"]["name"] for m in maps),
    )


def events(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Events about run `name`, oldest first."""
    items: list[dict[str, Any]] = kube.request("GET", core_path(namespace, "events"))["items"]
    mine = [e for e in items if e["involvedObject"]["name"] == name]
    # Timestamps have second precision; etcd's revisions give the order of creation.
    return sorted(mine, key=lambda e: int(e["metadata"]["resourceVersion"]))


def wait_events(
    kube: Kube, namespace: str, name: str, until: Callable[[list[str]], bool], what: str
) -> list[dict[str, Any]]:
    """The Events about run `name` once their reasons (oldest first) satisfy `until`: kopf posts
    Events in the background, so they may land just after the status that announced them."""

    def settled() -> list[dict[str, Any]] | None:
        found = events(kube, namespace, name)
        return found if until([e["reason"] for e in found]) else None

    result: list[dict[str, Any]] = wait_for(settled, what, timeout=15.0)
    return result


def wait_rayjob(kube: Kube, namespace: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: rayjobs(kube, namespace).get(name), f"RayJob {name}", timeout
    )
    return found


def wait_run(
    kube: Kube, namespace: str, name: str, check: Any, what: str, timeout: float = 30.0
) -> dict[str, Any]:
    """The run once `check(run)` holds."""

    def current() -> dict[str, Any] | None:
        run = get_run(kube, namespace, name)
        return run if check(run) else None

    found: dict[str, Any] = wait_for(current, f"{namespace}/{name}: {what}", timeout)
    return found


def phase(run: dict[str, Any]) -> str | None:
    return (run.get("status") or {}).get("phase")


def condition(run: dict[str, Any], type_: str) -> dict[str, Any] | None:
    conditions = (run.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def stage(run: dict[str, Any], name: StageName) -> dict[str, Any]:
    found: dict[str, Any] = ((run.get("status") or {}).get("stages") or {}).get(str(name), {})
    return found


# -- KubeRay's part ---------------------------------------------------------------------------


def _rayjob_status(kube: Kube, namespace: str, name: str, status: dict[str, Any]) -> None:
    kube.merge_patch(f"{rayjob_path(namespace, name)}/status", {"status": status})


def kuberay_running(kube: Kube, namespace: str, name: str) -> None:
    _rayjob_status(
        kube,
        namespace,
        name,
        {
            "jobDeploymentStatus": "Running",
            "jobStatus": "RUNNING",
            "jobId": f"{name}-x7k2p",
            "rayClusterName": f"{name}-raycluster-x7k2p",
            "startTime": now(),
        },
    )


def kuberay_job_succeeded(kube: Kube, namespace: str, name: str) -> None:
    """The job's driver exited 0 while KubeRay's submitter (K8sJobMode) still runs: KubeRay
    v1.6.0 reports `jobStatus: SUCCEEDED` with `jobDeploymentStatus: Running`, and `Complete`
    only in a later reconcile, once the submitter Job has finished."""
    _rayjob_status(
        kube,
        namespace,
        name,
        {"jobDeploymentStatus": "Running", "jobStatus": "SUCCEEDED", "endTime": now()},
    )


def kuberay_succeeded(kube: Kube, namespace: str, name: str) -> None:
    _rayjob_status(
        kube,
        namespace,
        name,
        {
            "jobDeploymentStatus": "Complete",
            "jobStatus": "SUCCEEDED",
            "endTime": now(),
            "succeeded": 1,
        },
    )


def kuberay_failed(
    kube: Kube, namespace: str, name: str, reason: str = "AppFailed", message: str = ""
) -> None:
    _rayjob_status(
        kube,
        namespace,
        name,
        {
            "jobDeploymentStatus": "Failed",
            "jobStatus": "FAILED",
            "reason": reason,
            "message": message or "Job entrypoint command failed with exit code 1",
            "endTime": now(),
            "failed": 1,
        },
    )


# -- the stages' part -------------------------------------------------------------------------


def run_store(store_root: str, run_body: dict[str, Any]) -> Store:
    """The run's prefix in the store (the same one the operator reads)."""
    return open_store(run_store_uri(store_root, parse_run(run_body)))


def stage_summary(store: Store, stage_name: StageName) -> dict[str, Any]:
    """What a stage writes as its completion marker, with recognizable numbers."""
    if stage_name == StageName.GENERATE:
        return GENERATE_SUMMARY
    if stage_name == StageName.VALIDATE:
        summary = {
            "generated": 40,
            "accepted": 30,
            "rejected": {"execution": 6, "parse": 4},
            "dataset": store.url("dataset/"),
        }
        return {"fingerprint": "f-validate", "summary": summary}
    if stage_name == StageName.TRAIN:
        return {"fingerprint": "f-train", "summary": {"adapter": store.url("train/adapter/")}}
    return {
        "execution_accuracy": 0.75,
        "examples": 4,
        "scored": 4,
        "unjudgeable": 0,
        "gold_empty": 0,
        "correct": 3,
        "fingerprint": "f-eval",
    }


def write_outputs(store: Store, stage_name: StageName) -> None:
    store.put_json(SUMMARY_KEYS[stage_name], stage_summary(store, stage_name))
    if stage_name == StageName.EVALUATE:  # the gate passed: the adapter is published
        store.put_json(PUBLISHED_DONE_KEY, {"fingerprint": "f-train"})


def write_failure(
    store: Store, stage_name: StageName, attempt: int, reason: str, message: str, retryable: bool
) -> None:
    store.put_json(
        failure_key(stage_name, attempt),
        {"reason": reason, "message": message, "retryable": retryable},
    )


def finish_stage(
    kube: Kube, namespace: str, store: Store, stage_name: StageName, rayjob: str
) -> None:
    """A stage attempt that runs and succeeds: KubeRay reports it running, the job commits its
    outputs, KubeRay reports it complete."""
    kuberay_running(kube, namespace, rayjob)
    write_outputs(store, stage_name)
    kuberay_succeeded(kube, namespace, rayjob)
