"""Faults on real pods (RELIABILITY.md's fault scenarios), each followed by its invariants: the
Ray head deleted while generate is calling the teacher, the operator's pod killed mid-run, the
sandbox server's pod deleted while validate needs it. What breaks is the real thing: KubeRay,
the Deployment's ReplicaSet and the run's sandbox react as they would on any cluster."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distillrun.api.failures import FailureReason
from distillrun.api.resource import DistillRun, parse_run
from distillrun.api.status import StageName
from distillrun.operator.builders.sandbox import RAY_NODE_LABEL, sandbox_selector
from distillrun.operator.kube import Kube, core_path
from tests.e2e.pods import wait_ready
from tests.e2e.runs import (
    RayJobWatch,
    assert_invariants,
    committed_shards,
    run_on_s3,
    shard_plan,
    wait_ended,
)
from tests.e2e.sandbox import RAY_CLUSTER_LABEL, SandboxWatch
from tests.e2e.stack import (
    BUCKET,
    TEACHER_KEY,
    TEACHER_URL,
    BedProcess,
    Team,
    operator_log,
    s3_client,
    start_teacher,
)
from tests.integration.controlplane import ROOT, wait_for
from tests.integration.helpers import condition, create_run, get_run, phase, rayjobs

pytestmark = pytest.mark.e2e

TEACHER_LATENCY_S = 4.0
"""Each teacher call takes this long, so generate is still calling when its head goes."""
TEACHER_SECRET = "teacher"
OPERATOR_PODS = "app.kubernetes.io/name=distillrun"
SHOP = ROOT / "examples" / "shop"


@pytest.fixture(scope="module", autouse=True)
def _versioned_bucket(team: Team) -> None:
    """The bucket keeps every version of every object: a shard written twice shows (I1)."""
    s3_client().put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})


@pytest.fixture
def teacher_log(team: Team, tmp_path: Path) -> Iterator[Path]:
    """The fake Anthropic API inside the bed's network, its API key in the team's Secret; the
    path is its log of billed calls."""
    log = tmp_path / "teacher.jsonl"
    log.touch()
    team.bed.kube.create(
        core_path(team.namespace, "secrets"),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": TEACHER_SECRET},
            "stringData": {"api-key": TEACHER_KEY},
        },
    )
    server: BedProcess = start_teacher(team.bed, TEACHER_LATENCY_S, log)
    try:
        yield log
    finally:
        server.stop()


def _billed_per_shard(log: Path) -> Counter[int]:
    """The teacher calls billed so far, per shard index."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return Counter(e["shard"] for e in lines if e["status"] == 200 and e["shard"] is not None)


def _current_rayjob(team: Team, run: DistillRun, stage: StageName) -> dict[str, Any] | None:
    """The RayJob of `stage`'s first attempt, once KubeRay reports its job running."""
    job = rayjobs(team.bed.kube, team.namespace).get(f"{run.metadata.name}-{stage}-1")
    running = job is not None and (job.get("status") or {}).get("jobStatus") == "RUNNING"
    return job if running else None


def _delete_pods(kube: Kube, namespace: str, selector: str) -> list[str]:
    """Deletes the pods `selector` picks, at once (no grace period): a crash, not a shutdown."""
    names = [p["metadata"]["name"] for p in kube.list(core_path(namespace, "pods"), selector)]
    for name in names:
        kube.request("DELETE", core_path(namespace, "pods", name), body={"gracePeriodSeconds": 0})
    return names


def _failure_text(team: Team, ended: dict[str, Any]) -> str:
    stages = json.dumps(ended["status"].get("stages"), indent=1)
    return f"{stages}\n{operator_log(team.bed, team.namespace)}"


def test_the_ray_head_deleted_mid_generate_resumes_and_pays_no_shard_twice(
    team: Team, teacher_log: Path
) -> None:
    manifest = run_on_s3("head-lost")
    spec = manifest["spec"]
    spec["teacher"] = {
        "provider": "anthropic",
        "baseUrl": TEACHER_URL,
        "apiKeySecretRef": {"name": TEACHER_SECRET, "key": "api-key"},
        "mode": "realtime",
        "targetExamples": 60,
        "examplesPerShard": 6,
        "maxTopUpRounds": 0,
    }
    spec["evaluation"]["askTeacher"] = False
    run = parse_run(create_run(team.bed.kube, team.namespace, manifest))
    watch = RayJobWatch(team, run)

    def generating_with_a_shard_committed() -> dict[str, Any] | None:
        watch.look()
        job = _current_rayjob(team, run, StageName.GENERATE)
        return job if job is not None and committed_shards(run) else None

    job = wait_for(generating_with_a_shard_committed, "a first shard", timeout=600, interval=0.5)
    cluster = job["status"]["rayClusterName"]
    heads = _delete_pods(
        team.bed.kube, team.namespace, f"{RAY_CLUSTER_LABEL}={cluster},{RAY_NODE_LABEL}=head"
    )
    assert heads, f"no head pod of {cluster}"
    before = committed_shards(run)
    time.sleep(1.0)  # the server logs a billed call within 0.05 s; no new attempt starts in 1 s
    billed_before = _billed_per_shard(teacher_log)

    ended = wait_ended(team, run.metadata.name, watch.look)
    assert phase(ended) == "Succeeded", _failure_text(team, ended)
    assert ended["status"]["stages"][StageName.GENERATE]["attempts"] >= 2, "the head was not lost"
    plan = shard_plan(run)
    assert before < set(plan), "every shard was committed before the head went: nothing resumed"
    billed = _billed_per_shard(teacher_log)
    # I4: no teacher call for a shard committed before the fault.
    for index, key in enumerate(plan):
        if key in before:
            assert billed[index] == billed_before[index], f"shard {index} was paid again"
        assert billed[index] >= 1
    assert_invariants(run, ended, watch.seen, retried={StageName.GENERATE})


def test_the_operator_pod_killed_mid_run_is_replaced_and_adopts_the_run(team: Team) -> None:
    kube, namespace = team.bed.kube, team.namespace
    run = parse_run(create_run(kube, namespace, run_on_s3("operator-lost")))
    watch = RayJobWatch(team, run)

    def training() -> bool:
        watch.look()
        stages = (get_run(kube, namespace, run.metadata.name).get("status") or {}).get("stages")
        return bool((stages or {}).get(StageName.TRAIN, {}).get("state") == "Running")

    wait_for(training, "the train stage to start", timeout=900, interval=0.5)
    (killed,) = _delete_pods(kube, namespace, OPERATOR_PODS)

    def replaced() -> str | None:
        watch.look()
        pods = kube.list(core_path(namespace, "pods"), OPERATOR_PODS)
        fresh = [p["metadata"]["name"] for p in pods if p["metadata"]["name"] != killed]
        return fresh[0] if fresh else None

    wait_ready(kube, namespace, wait_for(replaced, "a new operator pod", timeout=120), 180)
    ended = wait_ended(team, run.metadata.name, watch.look)
    assert phase(ended) == "Succeeded", _failure_text(team, ended)
    # Adopted, not redone: every stage, the one running when the operator died included, took
    # exactly one attempt and one RayJob.
    assert_invariants(run, ended, watch.seen, retried=set())


def test_the_sandbox_pod_deleted_mid_validate_is_survived_or_named(team: Team) -> None:
    kube, namespace = team.bed.kube, team.namespace
    manifest = run_on_s3("sandbox-lost")
    manifest["spec"]["database"] = {
        "dialect": "postgres",
        "schema": {"ddl": (SHOP / "schema.sql").read_text()},
        "seedData": {"ddl": (SHOP / "seed.sql").read_text()},
    }
    run = parse_run(create_run(kube, namespace, manifest))
    jobs, sandbox = RayJobWatch(team, run), SandboxWatch(kube, run)

    def look() -> None:
        jobs.look()
        sandbox.look()

    def validating() -> bool:
        look()
        return _current_rayjob(team, run, StageName.VALIDATE) is not None

    wait_for(validating, "the validate stage to run", timeout=900, interval=0.5)
    selector = ",".join(f"{k}={v}" for k, v in sandbox_selector(run).items())
    killed = _delete_pods(kube, namespace, selector)
    assert killed, "no sandbox pod to delete"

    # Never a stall: the run ends within the e2e timeout either way.
    ended = wait_ended(team, run.metadata.name, look)
    if phase(ended) == "Failed":  # allowed, with the sandbox named as the reason
        failed = condition(ended, "Failed")
        assert failed is not None, _failure_text(team, ended)
        assert failed["reason"] == FailureReason.SANDBOX_UNAVAILABLE, _failure_text(team, ended)
    else:
        assert phase(ended) == "Succeeded", _failure_text(team, ended)
        assert_invariants(run, ended, jobs.seen, retried={StageName.VALIDATE})
    replacement = set(sandbox.server_pods) - set(killed)
    assert replacement, "the sandbox's pod was never replaced"
    wait_for(lambda: not sandbox.leftovers(), "the sandbox to be removed", timeout=120, interval=1)
