"""Pure status transitions: each takes a status and returns a new one. The local runner uses
them now; the operator applies the same ones to the resource's status subresource."""

from __future__ import annotations

from typing import Any

from distillrun.api.status import (
    PHASE_OF_STAGE,
    Condition,
    DistillRunStatus,
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


def _stage(status: DistillRunStatus, stage: StageName) -> StageStatus:
    return status.stages.get(str(stage), StageStatus())


def _with_stage(
    status: DistillRunStatus, stage: StageName, stage_status: StageStatus, **fields: Any
) -> DistillRunStatus:
    return status.model_copy(
        update={"stages": {**status.stages, str(stage): stage_status}, **fields}
    )


def stage_started(status: DistillRunStatus, stage: StageName, now: str) -> DistillRunStatus:
    current = _stage(status, stage)
    started = current.model_copy(
        update={
            "state": StageState.RUNNING,
            "start_time": now,
            "completion_time": None,
            "attempts": current.attempts + 1,
            "message": "",
        }
    )
    return _with_stage(status, stage, started, phase=PHASE_OF_STAGE[stage])


def stage_succeeded(
    status: DistillRunStatus, stage: StageName, message: str, now: str
) -> DistillRunStatus:
    done = _stage(status, stage).model_copy(
        update={"state": StageState.SUCCEEDED, "completion_time": now, "message": message}
    )
    return _with_stage(status, stage, done)


def run_succeeded(status: DistillRunStatus, now: str) -> DistillRunStatus:
    done = status.model_copy(update={"phase": Phase.SUCCEEDED})
    done = with_condition(
        done,
        Condition(type="Succeeded", status="True", reason="Completed", last_transition_time=now),
    )
    return with_condition(
        done, Condition(type="Failed", status="False", reason="Completed", last_transition_time=now)
    )


def stage_failed(
    status: DistillRunStatus, stage: StageName, reason: str, message: str, now: str
) -> DistillRunStatus:
    failed = _stage(status, stage).model_copy(
        update={"state": StageState.FAILED, "completion_time": now, "message": message}
    )
    status = _with_stage(status, stage, failed, phase=Phase.FAILED)
    return with_condition(
        status,
        Condition(
            type="Failed", status="True", reason=reason, message=message, last_transition_time=now
        ),
    )
