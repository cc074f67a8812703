"""How the controller reads a RayJob for the planner: KubeRay's two statuses, and for a RayJob
Kueue holds, that it is suspended and in which queue (so the stage says it waits)."""

from __future__ import annotations

from typing import Any

from distillrun.api.status import StageName
from distillrun.operator.controller import observed_job


def rayjob(spec: dict[str, Any], labels: dict[str, str], status: dict[str, Any]) -> dict[str, Any]:
    base = {"distillrun.dev/stage": "train", "distillrun.dev/attempt": "2"}
    return {
        "metadata": {"name": "shop-train-2", "labels": {**base, **labels}},
        "spec": spec,
        "status": status,
    }


def test_a_queued_rayjob_is_read_as_suspended_in_its_queue() -> None:
    body = rayjob(
        {"suspend": True},
        {"kueue.x-k8s.io/queue-name": "team-a-gpus"},
        {"jobDeploymentStatus": "Suspended", "jobStatus": "NEW"},
    )
    job = observed_job(body)
    assert job is not None
    assert (job.stage, job.attempt, job.suspended, job.queue) == (
        StageName.TRAIN,
        2,
        True,
        "team-a-gpus",
    )
    assert not job.failed and not job.succeeded
    assert job.describe() == (
        "RayJob shop-train-2: waiting for Kueue admission in queue team-a-gpus; "
        "deployment Suspended, job NEW"
    )


def test_an_admitted_rayjob_is_not_suspended() -> None:
    body = rayjob(
        {"suspend": False},
        {"kueue.x-k8s.io/queue-name": "team-a-gpus"},
        {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
    )
    job = observed_job(body)
    assert job is not None and not job.suspended
    assert job.describe() == "RayJob shop-train-2: deployment Running, job RUNNING"


def test_a_rayjob_suspended_by_hand_is_waiting_too() -> None:
    job = observed_job(rayjob({"suspend": True}, {}, {}))
    assert job is not None and job.suspended and job.queue == "" and not job.failed
    assert job.describe() == (
        "RayJob shop-train-2: suspended (spec.suspend); deployment New, job PENDING"
    )
