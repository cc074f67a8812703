"""The level-based planner, decision by decision: given what exists, the status and next step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from distillrun.api.resource import DistillRun, parse_run
from distillrun.api.status import DistillRunStatus, Phase, StageName, StageState
from distillrun.operator.controller import observed_job
from distillrun.operator.planner import Failure, ObservedJob, Plan, plan
from distillrun.operator.preflight import Inputs, Problem
from tests.unit.operator.conftest import cpu_manifest

NOW = "2030-01-01T00:00:00Z"
INPUTS = Inputs(store_uri="file:///data/team-a/shop/uid")
GENERATE_SUMMARY = {
    "generated": 40,
    "usage": {
        "input_tokens": 100,
        "output_tokens": 50,
        "cache_read_tokens": 7,
        "cache_write_tokens": 3,
        "usd": 0.25,
    },
}


class FakeOutputs:
    def __init__(
        self,
        summaries: Mapping[StageName, Mapping[str, Any]] | None = None,
        failures: Mapping[tuple[StageName, int], Failure] | None = None,
    ) -> None:
        self.summaries = dict(summaries or {})
        self.failures = dict(failures or {})

    def summary(self, stage: StageName) -> Mapping[str, Any] | None:
        return self.summaries.get(stage)

    def failure(self, stage: StageName, attempt: int) -> Failure | None:
        return self.failures.get((stage, attempt))


def _run(status: DistillRunStatus | None = None, generation: int = 1) -> DistillRun:
    data = cpu_manifest()
    data["metadata"]["generation"] = generation
    run = parse_run(data)
    return run.model_copy(update={"status": status})


def _plan(
    run: DistillRun,
    jobs: Sequence[ObservedJob] = (),
    outputs: FakeOutputs | None = None,
    checked: Inputs | Problem = INPUTS,
    max_attempts: int = 3,
) -> Plan:
    return plan(
        run, jobs, outputs or FakeOutputs(), lambda: checked, max_attempts=max_attempts, now=NOW
    )


def _job(
    stage: StageName, attempt: int, deployment: str = "", job: str = "", **kw: Any
) -> ObservedJob:
    return ObservedJob(f"shop-{stage}-{attempt}", stage, attempt, deployment, job, **kw)


def _condition(status: DistillRunStatus, type_: str) -> tuple[str, str]:
    found = next(c for c in status.conditions if c.type == type_)
    return found.status, found.reason


def test_a_new_run_starts_generate_attempt_1() -> None:
    result = _plan(_run())
    assert result.start is not None
    assert (result.start.stage, result.start.attempt) == (StageName.GENERATE, 1)
    stage = result.status.stages["generate"]
    assert (stage.state, stage.attempts, stage.ray_job) == (
        StageState.RUNNING,
        1,
        "shop-generate-1",
    )
    assert result.status.phase == Phase.GENERATING
    assert _condition(result.status, "Ready") == ("True", "InputsReady")
    assert _condition(result.status, "BudgetExhausted") == ("False", "WithinBudget")
    assert [e.reason for e in result.events] == ["StageStarted"]
    assert all(c.observed_generation == 1 for c in result.status.conditions)
    assert result.status.observed_generation == 1


def test_a_problem_holds_the_run_with_one_event() -> None:
    problem = Problem("SecretNotFound", "spec.teacher.apiKeySecretRef: Secret x does not exist")
    first = _plan(_run(), checked=problem)
    assert first.start is None
    assert first.status.phase == Phase.PENDING
    assert _condition(first.status, "Ready") == ("False", "SecretNotFound")
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "SecretNotFound")]
    again = _plan(_run(first.status), checked=problem)
    assert again.events == [] and again.status == first.status
    fixed = _plan(_run(first.status))
    assert fixed.start is not None and _condition(fixed.status, "Ready") == ("True", "InputsReady")


def test_a_running_job_is_reported_not_restarted() -> None:
    started = _plan(_run()).status
    result = _plan(_run(started), [_job(StageName.GENERATE, 1, "Running", "RUNNING")])
    assert result.start is None and result.events == []
    message = result.status.stages["generate"].message
    assert message == "RayJob shop-generate-1: deployment Running, job RUNNING"


@pytest.mark.parametrize(("deployment", "job"), [("", ""), ("Suspended", "NEW")])
def test_a_job_queued_by_kueue_is_waiting_not_failed(deployment: str, job: str) -> None:
    """Created suspended, a RayJob reports nothing yet (or `Suspended`, as after a preemption)
    until Kueue admits it: the stage keeps running, says where it waits, and nothing restarts."""
    started = _plan(_run()).status
    queued = _job(StageName.GENERATE, 1, deployment, job, suspended=True, queue="team-a-gpus")
    result = _plan(_run(started), [queued])
    assert result.start is None and result.events == []
    stage = result.status.stages["generate"]
    assert (stage.state, stage.attempts) == (StageState.RUNNING, 1)
    assert stage.message == (
        "RayJob shop-generate-1: waiting for Kueue admission in queue team-a-gpus; "
        f"deployment {deployment or 'New'}, job {job or 'PENDING'}"
    )
    assert result.status.phase == Phase.GENERATING


def test_a_finished_stage_records_its_numbers_and_starts_the_next() -> None:
    started = _plan(_run()).status
    done = _job(StageName.GENERATE, 1, "Complete", "SUCCEEDED", end_time="2030-01-01T00:10:00Z")
    result = _plan(_run(started), [done], FakeOutputs({StageName.GENERATE: GENERATE_SUMMARY}))
    assert result.status.stages["generate"].state == StageState.SUCCEEDED
    assert result.status.stages["generate"].completion_time == "2030-01-01T00:10:00Z"
    assert result.status.counts.generated == 40
    assert result.status.cost.usd == 0.25 and result.status.cost.cache_read_tokens == 7
    assert result.status.cost.cache_write_tokens == 3
    assert result.start is not None and result.start.stage == StageName.VALIDATE
    assert result.status.phase == Phase.VALIDATING
    assert [e.reason for e in result.events] == ["StageSucceeded", "StageStarted"]


def test_the_next_stage_starts_when_the_driver_succeeds_not_when_kuberay_completes() -> None:
    """KubeRay v1.6.0 (K8sJobMode) reports `jobStatus: SUCCEEDED` while the deployment is still
    `Running` (its submitter has not exited yet), and `Complete` in a later reconcile. The job's
    entrypoint writes the outputs before its driver exits, so SUCCEEDED is the signal: the next
    stage starts then, and the `Complete` that follows changes nothing."""
    started = _plan(_run()).status
    outputs = FakeOutputs({StageName.GENERATE: GENERATE_SUMMARY})
    ended = _job(StageName.GENERATE, 1, "Running", "SUCCEEDED", end_time="2030-01-01T00:10:00Z")
    result = _plan(_run(started), [ended], outputs)
    assert result.status.stages["generate"].state == StageState.SUCCEEDED
    assert result.status.stages["generate"].completion_time == "2030-01-01T00:10:00Z"
    assert result.start is not None and result.start.stage == StageName.VALIDATE
    assert [e.reason for e in result.events] == ["StageSucceeded", "StageStarted"]

    complete = _job(StageName.GENERATE, 1, "Complete", "SUCCEEDED", end_time=ended.end_time)
    validate = _job(StageName.VALIDATE, 1)
    later = _plan(_run(result.status), [complete, validate], outputs)
    assert later.start is None and later.events == []
    assert later.status == result.status  # nothing to write: validate-1 reports nothing yet
    assert later.status.stages["validate"].message == "RayJob shop-validate-1 created"


def test_a_job_that_failed_before_kuberay_says_so_is_retried_once() -> None:
    """`jobStatus: FAILED` with the deployment still `Running` is a failed attempt, as before
    (Ray's job status is final, and KubeRay's own retries are off: `backoffLimit: 0`); the
    `Failed` deployment status that follows does not fail the attempt again."""
    started = _plan(_run()).status
    early = _job(StageName.GENERATE, 1, "Running", "FAILED", reason="", message="exit 1")
    result = _plan(_run(started), [early])
    assert result.start is not None and result.start.attempt == 2
    assert [e.reason for e in result.events] == ["StageRetrying", "StageStarted"]

    final = _job(StageName.GENERATE, 1, "Failed", "FAILED", reason="AppFailed", message="exit 1")
    later = _plan(_run(result.status), [final, _job(StageName.GENERATE, 2)])
    assert later.start is None and later.events == []
    assert later.status.stages["generate"].attempts == 2


def test_success_without_outputs_is_a_failed_attempt() -> None:
    started = _plan(_run()).status
    result = _plan(_run(started), [_job(StageName.GENERATE, 1, "Complete", "SUCCEEDED")])
    assert result.start is not None and result.start.attempt == 2
    assert "StageOutputMissing" in result.events[0].message


def test_a_failed_job_is_retried_up_to_the_limit_then_fails_with_its_reason() -> None:
    status = _plan(_run()).status
    for attempt in (1, 2):
        failed = _job(
            StageName.GENERATE,
            attempt,
            "Failed",
            "FAILED",
            reason="AppFailed",
            message="exit code 1",
        )
        result = _plan(_run(status), [failed], max_attempts=3)
        assert result.start is not None and result.start.attempt == attempt + 1
        assert result.events[0].reason == "StageRetrying"
        status = result.status
    last = _job(StageName.GENERATE, 3, "Failed", "FAILED", reason="AppFailed", message="exit 1")
    result = _plan(_run(status), [last], max_attempts=3)
    assert result.start is None
    assert result.status.phase == Phase.FAILED
    assert _condition(result.status, "Failed") == ("True", "AppFailed")
    assert _condition(result.status, "Ready") == ("False", "AppFailed")
    assert result.status.stages["generate"].attempts == 3
    assert result.status.stages["generate"].state == StageState.FAILED


def test_a_named_failure_is_final_at_once() -> None:
    status = _plan(_run()).status
    budget = Failure("BudgetExhausted", "spent $25.00 of $25.00")
    result = _plan(
        _run(status),
        [_job(StageName.GENERATE, 1, "Failed", "FAILED")],
        FakeOutputs(failures={(StageName.GENERATE, 1): budget}),
    )
    assert result.start is None and result.status.phase == Phase.FAILED
    assert _condition(result.status, "BudgetExhausted") == ("True", "BudgetExhausted")
    assert _condition(result.status, "Failed") == ("True", "BudgetExhausted")


def test_a_refusing_gate_fails_the_run_with_the_accuracy_it_measured() -> None:
    """The evaluate job's failure record carries the scores: the status shows the refused
    student's accuracy beside the base model's, and no adapter."""
    done = {
        StageName.GENERATE: GENERATE_SUMMARY,
        StageName.VALIDATE: {"accepted": 30, "rejected": {}, "dataset": "file:///d/"},
        StageName.TRAIN: {"adapter": "file:///candidate/"},
    }
    jobs = [_job(stage, 1, "Complete", "SUCCEEDED") for stage in done]
    status = _plan(_run(), jobs, FakeOutputs(done)).status
    refused = Failure(
        "AccuracyBelowThreshold",
        "evaluate failed (AccuracyBelowThreshold): execution accuracy 0.25 < 0.70",
        summary={
            "execution_accuracy": 0.25,
            "base_execution_accuracy": 0.125,
            "examples": 8,
            "scored": 8,
            "adapter": None,
        },
    )
    result = _plan(
        _run(status),
        [*jobs, _job(StageName.EVALUATE, 1, "Failed", "FAILED")],
        FakeOutputs(done, failures={(StageName.EVALUATE, 1): refused}),
    )
    assert result.start is None and result.status.phase == Phase.FAILED
    assert _condition(result.status, "Failed") == ("True", "AccuracyBelowThreshold")
    assert result.status.stages["evaluate"].state == StageState.FAILED
    evaluation = result.status.evaluation
    assert (evaluation.execution_accuracy, evaluation.base_execution_accuracy) == (0.25, 0.125)
    assert (evaluation.examples, evaluation.scored) == (8, 8)
    assert result.status.artifacts.adapter is None


@pytest.mark.parametrize(
    ("reason", "setting"),
    [
        ("PreRunningDeadlineExceeded", "DISTILLRUN_JOBS_RAY_START_DEADLINE_SECONDS"),
        ("DeadlineExceeded", "DISTILLRUN_JOBS_RAY_JOB_DEADLINE_SECONDS"),
    ],
)
def test_a_kuberay_deadline_ends_the_run_with_its_reason(reason: str, setting: str) -> None:
    """A RayJob whose pods cannot be scheduled is failed by KubeRay on the operator's deadline
    (read from the RayJob as the controller reads it); the run fails at once with that reason,
    without a new attempt that would wait as long again."""
    status = _plan(_run()).status
    message = "The RayJob has passed the preRunningDeadlineSeconds. PreRunningDeadlineSeconds: 1200"
    body = {
        "metadata": {
            "name": "shop-generate-1",
            "labels": {"distillrun.dev/stage": "generate", "distillrun.dev/attempt": "1"},
        },
        "spec": {},
        "status": {"jobDeploymentStatus": "Failed", "reason": reason, "message": message},
    }
    job = observed_job(body)
    assert job is not None
    result = _plan(_run(status), [job], max_attempts=3)
    assert result.start is None and result.status.phase == Phase.FAILED
    assert _condition(result.status, "Failed") == ("True", reason)
    stage = result.status.stages["generate"]
    assert (stage.state, stage.attempts) == (StageState.FAILED, 1)
    assert stage.message.startswith(f"{reason}: RayJob shop-generate-1: ")
    assert setting in stage.message and message in stage.message


def test_a_vanished_job_is_a_new_attempt_or_a_success_by_its_outputs() -> None:
    status = _plan(_run()).status
    gone = _plan(_run(status), [])
    assert gone.start is not None and gone.start.attempt == 2
    assert "RayJobDeleted" in gone.events[0].message
    finished = _plan(_run(status), [], FakeOutputs({StageName.GENERATE: GENERATE_SUMMARY}))
    assert finished.status.stages["generate"].state == StageState.SUCCEEDED
    assert finished.start is not None and finished.start.stage == StageName.VALIDATE


def test_a_job_created_before_a_crash_is_adopted_not_duplicated() -> None:
    problem = Problem("SecretNotFound", "spec.teacher.apiKeySecretRef: Secret x does not exist")
    held = _plan(_run(), checked=problem).status  # then the Secret came, a RayJob was created,
    result = _plan(_run(held), [_job(StageName.GENERATE, 1, "Initializing")])  # and we died
    assert result.start is None
    assert result.status.stages["generate"].attempts == 1
    assert result.status.phase == Phase.GENERATING
    assert _condition(result.status, "Ready") == ("True", "InputsReady")
    assert [e.reason for e in result.events] == ["StageStarted"]


def test_every_stage_done_is_success() -> None:
    status = DistillRunStatus()
    summaries = {
        StageName.GENERATE: GENERATE_SUMMARY,
        StageName.VALIDATE: {"accepted": 30, "rejected": {"parse": 4}, "dataset": "file:///d/"},
        StageName.TRAIN: {"adapter": "file:///candidate/"},
        StageName.EVALUATE: {
            "execution_accuracy": 0.8,
            "examples": 7,
            "scored": 5,
            "unjudgeable": 1,
            "gold_empty": 1,
            "adapter": "file:///a/",
        },
    }
    jobs = [_job(stage, 1, "Complete", "SUCCEEDED") for stage in summaries]
    result = _plan(_run(status), jobs, FakeOutputs(summaries))
    assert result.start is None
    assert result.status.phase == Phase.SUCCEEDED
    assert _condition(result.status, "Succeeded") == ("True", "Completed")
    assert result.status.counts.accepted == 30 and result.status.counts.rejected == {"parse": 4}
    assert result.status.evaluation.execution_accuracy == 0.8
    assert (result.status.evaluation.scored, result.status.evaluation.unjudgeable) == (5, 1)
    assert result.status.evaluation.gold_empty == 1
    assert result.status.artifacts.adapter == "file:///a/"
    assert result.events[-1].reason == "RunSucceeded"


@pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.FAILED])
def test_a_terminal_run_is_left_alone(phase: Phase) -> None:
    status = DistillRunStatus(phase=phase, observed_generation=1)
    result = _plan(_run(status, generation=2), [])
    assert result.start is None
    assert result.status.phase == phase and result.status.observed_generation == 2
    assert [e.reason for e in result.events] == ["SpecUpdated"]


def test_a_retry_held_by_a_problem_is_announced_once_when_it_starts() -> None:
    status = _plan(_run()).status
    failed = [_job(StageName.GENERATE, 1, "Failed", "FAILED", reason="AppFailed")]
    problem = Problem("SecretNotFound", "spec.teacher.apiKeySecretRef: gone")
    held = _plan(_run(status), failed, checked=problem)
    assert held.start is None
    assert [e.reason for e in held.events] == ["SecretNotFound"]
    again = _plan(_run(held.status), failed, checked=problem)
    assert again.events == []
    resumed = _plan(_run(again.status), failed)
    assert resumed.start is not None and resumed.start.attempt == 2
    assert [e.reason for e in resumed.events] == ["StageRetrying", "StageStarted"]


def test_a_retry_whose_status_write_was_lost_is_still_announced() -> None:
    status = _plan(_run()).status
    failed = _job(StageName.GENERATE, 1, "Failed", "FAILED", reason="AppFailed", message="oom")
    result = _plan(_run(status), [failed, _job(StageName.GENERATE, 2, "Initializing")])
    assert result.start is None and result.status.stages["generate"].attempts == 2
    assert [e.reason for e in result.events] == ["StageRetrying", "StageStarted"]
    assert "AppFailed: oom" in result.events[0].message
