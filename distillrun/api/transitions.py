"""Pure status transitions: each takes a status and returns a new one.

These are the only code that sets a run's conditions and stage states for what happens to a run
(a stage starts, succeeds or fails; the run succeeds; its inputs are refused), and both the
local runner and the operator's planner apply them, so `distillrun status` of a local run and
`kubectl get drun -o yaml` of a cluster run show the same conditions for the same events. The
operator only adds what a cluster has and a laptop does not (RayJob names, observed
generations, adopting a RayJob a lost status write never recorded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distillrun.api.conditions import ConditionReason, ConditionStatus, ConditionType
from distillrun.api.failures import FailureReason
from distillrun.api.status import (
    PHASE_OF_STAGE,
    Condition,
    DistillRunStatus,
    EvaluationStatus,
    Phase,
    StageName,
    StageState,
    StageStatus,
)


def with_condition(status: DistillRunStatus, condition: Condition) -> DistillRunStatus:
    """Replaces the condition of the same type; keeps lastTransitionTime if status is unchanged."""
    previous = next((c for c in status.conditions if c.type == condition.type), None)
    if previous is not None and previous.status == condition.status:
        condition = condition.model_copy(
            update={"last_transition_time": previous.last_transition_time}
        )
    others = [c for c in status.conditions if c.type != condition.type]
    return status.model_copy(update={"conditions": [*others, condition]})


def condition_of(status: DistillRunStatus, type_: ConditionType) -> Condition | None:
    return next((c for c in status.conditions if c.type == type_), None)


def _set(
    status: DistillRunStatus,
    type_: ConditionType,
    value: ConditionStatus,
    reason: str,
    message: str,
    now: str,
) -> DistillRunStatus:
    condition = Condition(
        type=type_, status=value, reason=reason, message=message, last_transition_time=now
    )
    return with_condition(status, condition)


def stage_of(status: DistillRunStatus, stage: StageName) -> StageStatus:
    return status.stages.get(str(stage), StageStatus())


def with_stage(status: DistillRunStatus, stage: StageName, **update: Any) -> DistillRunStatus:
    """`stage`'s status with `update` applied (its other fields kept)."""
    changed = stage_of(status, stage).model_copy(update=update)
    return status.model_copy(update={"stages": {**status.stages, str(stage): changed}})


def inputs_ready(status: DistillRunStatus, now: str) -> DistillRunStatus:
    """The run's inputs were checked: stages can run."""
    return _set(
        status,
        ConditionType.READY,
        ConditionStatus.TRUE,
        ConditionReason.INPUTS_READY,
        "inputs checked; stages can run",
        now,
    )


def inputs_refused(
    status: DistillRunStatus, reason: str, message: str, now: str
) -> DistillRunStatus:
    """The run cannot start yet (a Secret missing, a schema that does not parse): `reason`."""
    return _set(status, ConditionType.READY, ConditionStatus.FALSE, reason, message, now)


def stage_started(
    status: DistillRunStatus,
    stage: StageName,
    *,
    attempt: int,
    now: str,
    ray_job: str | None = None,
    message: str = "",
) -> DistillRunStatus:
    """Attempt `attempt` of `stage` starts (its inputs were checked). The teacher's budget is
    within bounds whenever generate starts: a spent budget is a final failure."""
    status = with_stage(
        status,
        stage,
        state=StageState.RUNNING,
        ray_job=ray_job,
        attempts=attempt,
        start_time=now,
        completion_time=None,
        message=message,
    )
    status = inputs_ready(status.model_copy(update={"phase": PHASE_OF_STAGE[stage]}), now)
    if stage == StageName.GENERATE:
        status = _set(
            status,
            ConditionType.BUDGET_EXHAUSTED,
            ConditionStatus.FALSE,
            ConditionReason.WITHIN_BUDGET,
            "",
            now,
        )
    return status


def stage_succeeded(
    status: DistillRunStatus,
    stage: StageName,
    summary: Mapping[str, Any],
    *,
    message: str,
    now: str,
    **observed: Any,
) -> DistillRunStatus:
    """`stage` committed its outputs: its numbers go into the status (`record_summary`).
    `observed`: what the operator saw of its RayJob (`ray_job`, `attempts`)."""
    return with_stage(
        record_summary(status, stage, summary),
        stage,
        state=StageState.SUCCEEDED,
        completion_time=now,
        message=message,
        **observed,
    )


def stage_failed(
    status: DistillRunStatus,
    stage: StageName,
    reason: str,
    message: str,
    *,
    attempts: int,
    now: str,
    summary: Mapping[str, Any] | None = None,
) -> DistillRunStatus:
    """`stage` failed for good after `attempts` attempt(s): the run fails with `reason`. The
    numbers it measured before failing (`summary`: evaluation's accuracy under a refusing gate)
    go into the status as a finished stage's do (`record_summary`)."""
    run_message = f"{stage} failed after {attempts} attempt(s): {message}"
    if summary is not None:
        status = record_summary(status, stage, summary)
    status = with_stage(
        status,
        stage,
        state=StageState.FAILED,
        attempts=attempts,
        completion_time=now,
        message=f"{reason}: {message}",
    )
    status = status.model_copy(update={"phase": Phase.FAILED})
    for type_, value in (
        (ConditionType.FAILED, ConditionStatus.TRUE),
        (ConditionType.SUCCEEDED, ConditionStatus.FALSE),
        (ConditionType.READY, ConditionStatus.FALSE),
    ):
        status = _set(status, type_, value, reason, run_message, now)
    if reason == FailureReason.BUDGET_EXHAUSTED:
        status = _set(
            status,
            ConditionType.BUDGET_EXHAUSTED,
            ConditionStatus.TRUE,
            FailureReason.BUDGET_EXHAUSTED,
            message,
            now,
        )
    return status


def run_succeeded(status: DistillRunStatus, now: str) -> DistillRunStatus:
    """Every stage succeeded."""
    done = status.model_copy(update={"phase": Phase.SUCCEEDED})
    message = "every stage succeeded"
    for type_, value, reason, text in (
        (ConditionType.SUCCEEDED, ConditionStatus.TRUE, ConditionReason.COMPLETED, message),
        (ConditionType.FAILED, ConditionStatus.FALSE, ConditionReason.COMPLETED, ""),
        (ConditionType.READY, ConditionStatus.TRUE, ConditionReason.SUCCEEDED, message),
    ):
        done = _set(done, type_, value, reason, text, now)
    return done


def record_summary(
    status: DistillRunStatus, stage: StageName, summary: Mapping[str, Any]
) -> DistillRunStatus:
    """Copies a stage's numbers into the status (counts, cost, accuracy, artifact URIs).
    Training's adapter is only a candidate: the run's adapter is the one evaluation publishes
    after the gate."""
    updates: dict[str, Any] = {}
    if stage == StageName.GENERATE:
        usage = summary.get("usage", {})
        updates["counts"] = status.counts.model_copy(
            update={"generated": int(summary.get("generated", 0))}
        )
        updates["cost"] = status.cost.model_copy(
            update={
                "input_tokens": int(usage.get("input_tokens", 0)),
                "output_tokens": int(usage.get("output_tokens", 0)),
                "cache_read_tokens": int(usage.get("cache_read_tokens", 0)),
                "cache_write_tokens": int(usage.get("cache_write_tokens", 0)),
                "usd": float(usage.get("usd", 0.0)),
            }
        )
    elif stage == StageName.VALIDATE:
        updates["counts"] = status.counts.model_copy(
            update={
                "accepted": int(summary.get("accepted", 0)),
                "rejected": {str(k): int(v) for k, v in summary.get("rejected", {}).items()},
            }
        )
        updates["artifacts"] = status.artifacts.model_copy(
            update={"dataset": summary.get("dataset")}
        )
    elif stage == StageName.EVALUATE:
        updates["evaluation"] = EvaluationStatus.of_summary(summary)
        updates["artifacts"] = status.artifacts.model_copy(
            update={"adapter": summary.get("adapter"), "report": summary.get("report")}
        )
    return status.model_copy(update=updates)
