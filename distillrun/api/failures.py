"""Why a stage attempt failed: the reasons, and the record a stage attempt leaves in the store.

Every reason a run can fail with is a member of `FailureReason` (written on the `Failed`,
`Succeeded` and `Ready` conditions). Whether a new attempt may get past a failure is decided
here, once (`is_retryable`): the entrypoint writes the answer into the attempt's record and the
operator's planner reads it, or asks here for the failures it sees itself (a RayJob gone, a
KubeRay deadline).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FailureReason(StrEnum):
    # named by the stages: the same attempt would fail the same way again
    ACCURACY_BELOW_THRESHOLD = "AccuracyBelowThreshold"
    ADAPTER_BASE_MISMATCH = "AdapterBaseMismatch"
    BUDGET_EXHAUSTED = "BudgetExhausted"
    EXAMPLES_TOO_LONG = "ExamplesTooLong"
    INPUTS_INVALID = "InputsInvalid"
    INSUFFICIENT_GPU_MEMORY = "InsufficientGPUMemory"
    INSUFFICIENT_RESOURCES = "InsufficientResources"
    INVALID_DATASET = "InvalidDataset"
    INVALID_GOLD_SET = "InvalidGoldSet"
    INVALID_HARDWARE_PROFILE = "InvalidHardwareProfile"
    NO_ADAPTER = "NoAdapter"
    NO_GENERATED_DATA = "NoGeneratedData"
    NO_GPU = "NoGPU"
    NO_HOLDOUT_DATA = "NoHoldoutData"
    NO_STUDENT_BASE = "NoStudentBase"
    NO_TRAINING_DATA = "NoTrainingData"
    PROFILE_MISMATCH = "ProfileMismatch"
    QLORA_UNAVAILABLE = "QLoRAUnavailable"
    STUDENT_NOT_FOUND = "StudentNotFound"
    TEACHER_AUTH_FAILED = "TeacherAuthFailed"
    TEACHER_REQUEST_INVALID = "TeacherRequestInvalid"
    TEACHER_UNAVAILABLE = "TeacherUnavailable"
    TRAINING_INCOMPLETE = "TrainingIncomplete"
    UNKNOWN_HARDWARE_PROFILE = "UnknownHardwareProfile"
    UNSUPPORTED_STUDENT = "UnsupportedStudent"
    INTERRUPTED = "Interrupted"
    """A local run stopped by Ctrl-C."""
    # a new attempt may get past these
    STAGE_CRASHED = "StageCrashed"
    TEACHER_FAILED = "TeacherFailed"
    """Transient teacher failures outlasted every retry; committed shards are reused."""
    RAY_JOB_DELETED = "RayJobDeleted"
    RAY_JOB_FAILED = "RayJobFailed"
    STAGE_OUTPUT_MISSING = "StageOutputMissing"
    STAGE_FAILED = "StageFailed"
    """A failure record without a reason (written by hand or by an older version)."""
    SANDBOX_UNAVAILABLE = "SandboxUnavailable"
    """The sandbox server did not answer (not Ready, being replaced) for as long as the stage
    waited; the next attempt waits for it again."""
    # KubeRay's deadlines, set by the operator: a new attempt would wait as long again
    PRE_RUNNING_DEADLINE_EXCEEDED = "PreRunningDeadlineExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"


RETRYABLE = frozenset(
    {
        FailureReason.STAGE_CRASHED,
        FailureReason.TEACHER_FAILED,
        FailureReason.RAY_JOB_DELETED,
        FailureReason.RAY_JOB_FAILED,
        FailureReason.STAGE_OUTPUT_MISSING,
        FailureReason.SANDBOX_UNAVAILABLE,
    }
)


def is_retryable(reason: str) -> bool:
    """Whether a new attempt may get past a failure with `reason`. A reason that is not ours is
    KubeRay's for a RayJob it failed (other than its deadlines): worth another attempt."""
    try:
        return FailureReason(reason) in RETRYABLE
    except ValueError:
        return True


@dataclass(frozen=True)
class Failure:
    """Why an attempt failed, and whether a new attempt may get past it (`is_retryable`)."""

    reason: str
    message: str
    traceback: str | None = None
    """The traceback's URL in the store, for a crash."""
    summary: Mapping[str, Any] | None = None
    """The numbers the stage measured before it failed (evaluation's accuracy under a refusing
    gate): the status records them as it records a finished stage's."""

    @property
    def retryable(self) -> bool:
        return is_retryable(self.reason)

    def to_json(self) -> dict[str, Any]:
        """The record in the store; `retryable` is written for a reader outside this package."""
        record: dict[str, Any] = {
            "reason": str(self.reason),
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.traceback is not None:
            record["traceback"] = self.traceback
        if self.summary is not None:
            record["summary"] = dict(self.summary)
        return record

    @classmethod
    def of_json(cls, data: Mapping[str, Any]) -> Failure:
        traceback = data.get("traceback")
        summary = data.get("summary")
        return cls(
            reason=str(data.get("reason") or FailureReason.STAGE_FAILED),
            message=str(data.get("message") or ""),
            traceback=None if traceback is None else str(traceback),
            summary=dict(summary) if isinstance(summary, Mapping) else None,
        )
