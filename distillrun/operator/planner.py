"""The level-based decision: from what exists to what the status is and what to create next.

`plan` is pure. It looks at the run (spec and the status recorded so far), the RayJobs that
exist for it, and — only when a stage ends — the stage's outputs in the store, and returns the
status to record, at most one stage attempt to start, and the Events that describe the
transitions. The controller calls it on every watch event and on a periodic resync; whatever was
missed (an event, a restart, a hand-deleted RayJob) shows in what exists, so the next call lands
in the right state.

The rules that keep RELIABILITY.md's invariants:
- one RayJob per (stage, attempt) with a deterministic name; the attempt in flight is the larger
  of the recorded one and the highest that exists, so a RayJob created just before a crash (and
  never recorded) is adopted, not duplicated;
- attempts grow only on a real failure: a failed RayJob with a retryable reason, or a RayJob
  that vanished before its stage wrote its outputs (deleted by hand);
- named failures from the stage itself (budget spent, auth refused, accuracy below the gate) are
  final at once, and so are KubeRay's deadlines (`DEADLINES`: a new attempt would wait as long
  for the same missing capacity); retryable ones stop at `max_attempts` with the last reason;
- a terminal run is never touched again except for `observedGeneration`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from distillrun.api.conditions import ConditionStatus, ConditionType
from distillrun.api.failures import Failure, FailureReason
from distillrun.api.resource import DistillRun
from distillrun.api.status import (
    PHASE_OF_STAGE,
    STAGE_ORDER,
    DistillRunStatus,
    Phase,
    StageName,
    StageState,
)
from distillrun.api.transitions import (
    condition_of,
    inputs_ready,
    inputs_refused,
    run_succeeded,
    stage_failed,
    stage_of,
    stage_started,
    stage_succeeded,
    with_stage,
)
from distillrun.operator.builders.common import child_name
from distillrun.operator.preflight import Inputs, Problem
from distillrun.operator.settings import OperatorSettings

FAILED_DEPLOYMENT = frozenset({"Failed", "ValidationFailed"})
FAILED_JOB = frozenset({"FAILED", "STOPPED"})
TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED})
NORMAL, WARNING = "Normal", "Warning"
DEADLINES: dict[str, str] = {
    FailureReason.PRE_RUNNING_DEADLINE_EXCEEDED: (
        "its Ray cluster did not start within the operator's deadline "
        f"({OperatorSettings.env_name('jobs_ray_start_deadline_seconds')}): its pods stayed "
        "Pending (no node has the CPU, memory or GPUs they request: `kubectl describe pods` "
        "shows FailedScheduling) or could not pull their image"
    ),
    FailureReason.DEADLINE_EXCEEDED: (
        "it ran longer than the operator's deadline "
        f"({OperatorSettings.env_name('jobs_ray_job_deadline_seconds')})"
    ),
}
"""KubeRay's reasons for a RayJob it failed on a deadline the operator set, and what they
mean for the run."""


@dataclass(frozen=True)
class ObservedJob:
    """What a RayJob of this run says about itself (KubeRay's two status axes)."""

    name: str
    stage: StageName
    attempt: int
    deployment_status: str = ""
    job_status: str = ""
    reason: str = ""
    message: str = ""
    start_time: str | None = None
    end_time: str | None = None
    suspended: bool = False
    """`spec.suspend`: created so for Kueue, which clears it on admission (and sets it again
    when it preempts); KubeRay then reports `Suspended` or nothing yet, which is not a failure."""
    queue: str = ""
    """The Kueue LocalQueue it waits in (its `kueue.x-k8s.io/queue-name` label), if any."""

    @property
    def succeeded(self) -> bool:
        return self.job_status == "SUCCEEDED"

    @property
    def silent(self) -> bool:
        """Nothing reported yet: KubeRay has not written a status, nor Kueue suspended it."""
        return not (self.deployment_status or self.job_status or self.suspended)

    @property
    def failed(self) -> bool:
        return self.deployment_status in FAILED_DEPLOYMENT or self.job_status in FAILED_JOB

    def describe(self) -> str:
        state = f"deployment {self.deployment_status or 'New'}, job {self.job_status or 'PENDING'}"
        if self.suspended and self.queue:
            return f"RayJob {self.name}: waiting for Kueue admission in queue {self.queue}; {state}"
        if self.suspended:
            return f"RayJob {self.name}: suspended (spec.suspend); {state}"
        return f"RayJob {self.name}: {state}"


class Outputs(Protocol):
    """The stages' results in the artifact store, read only when a stage ends."""

    def summary(self, stage: StageName) -> Mapping[str, Any] | None:
        """The stage's summary once its outputs are complete, else None."""

    def failure(self, stage: StageName, attempt: int) -> Failure | None:
        """The failure the stage recorded for `attempt`, if it recorded one."""


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event about the run."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Start:
    """Create the ConfigMap and RayJob of this stage attempt."""

    stage: StageName
    attempt: int
    inputs: Inputs


@dataclass
class Plan:
    """What to do: record `status`, start `start` (if any), post `events`."""

    status: DistillRunStatus
    start: Start | None = None
    events: list[Event] = field(default_factory=list)


Preflight = Callable[[], Inputs | Problem]


def plan(
    run: DistillRun,
    jobs: Sequence[ObservedJob],
    outputs: Outputs,
    preflight: Preflight,
    *,
    max_attempts: int,
    now: str,
) -> Plan:
    """The status `run` should have given `jobs`, and the next step."""
    recorded = run.status or DistillRunStatus()
    generation = run.metadata.generation
    result = Plan(status=recorded.model_copy(update={"observed_generation": generation}))
    if (
        recorded.observed_generation is not None
        and generation is not None
        and recorded.observed_generation != generation
    ):
        result.events.append(
            Event(
                NORMAL,
                "SpecUpdated",
                f"generation {generation} observed; changes apply to stages not started yet",
            )
        )
    if recorded.phase in TERMINAL_PHASES:
        result.status = _conditions_generation(result.status, generation)
        return result

    builder = _Builder(run, result, outputs, preflight, max_attempts, now)
    for stage in STAGE_ORDER:
        if not builder.settle(stage, [j for j in jobs if j.stage == stage]):
            break
    else:
        builder.succeed()
    result.status = _conditions_generation(result.status, generation)
    return result


def _conditions_generation(status: DistillRunStatus, generation: int | None) -> DistillRunStatus:
    return status.model_copy(
        update={
            "conditions": [
                c.model_copy(update={"observed_generation": generation}) for c in status.conditions
            ]
        }
    )


class _Builder:
    """Accumulates the status and events of one `plan` call, stage by stage."""

    def __init__(
        self,
        run: DistillRun,
        result: Plan,
        outputs: Outputs,
        preflight: Preflight,
        max_attempts: int,
        now: str,
    ) -> None:
        self.run = run
        self.result = result
        self.outputs = outputs
        self.preflight = preflight
        self.max_attempts = max_attempts
        self.now = now

    @property
    def status(self) -> DistillRunStatus:
        return self.result.status

    def _set(self, status: DistillRunStatus) -> None:
        self.result.status = status

    def _event(self, type_: str, reason: str, message: str) -> None:
        self.result.events.append(Event(type_, reason, message))

    def _stage(self, stage: StageName, **update: Any) -> None:
        self._set(with_stage(self.status, stage, **update))

    # -- one stage ---------------------------------------------------------------------------

    def settle(self, stage: StageName, jobs: Sequence[ObservedJob]) -> bool:
        """Brings `stage` up to date; True when it has succeeded and the next one may go."""
        recorded = stage_of(self.status, stage)
        if recorded.state == StageState.SUCCEEDED:
            return True
        attempt = max([recorded.attempts, *(j.attempt for j in jobs)])
        if attempt == 0:
            self._start(stage, 1)
            return False
        current = next((j for j in jobs if j.attempt == attempt), None)
        name = child_name(self.run.metadata.name, stage, attempt)
        if current is None:
            recorded_failure = self.outputs.failure(stage, attempt)
            if recorded_failure is not None:  # it failed, then its RayJob went away
                return self._failed(stage, attempt, recorded_failure)
            summary = self.outputs.summary(stage)
            if summary is not None:  # it finished, then its RayJob went away
                self._succeeded(stage, attempt, name, summary, None)
                return True
            return self._failed(
                stage,
                attempt,
                Failure(
                    FailureReason.RAY_JOB_DELETED,
                    f"RayJob {name} disappeared before the stage wrote its outputs",
                ),
            )
        if current.succeeded:
            summary = self.outputs.summary(stage)
            if summary is None:
                return self._failed(
                    stage,
                    attempt,
                    Failure(
                        FailureReason.STAGE_OUTPUT_MISSING,
                        f"{current.name} reports SUCCEEDED but the stage's outputs are not "
                        "complete in the artifact store",
                    ),
                )
            self._succeeded(stage, attempt, current.name, summary, current)
            return True
        if current.failed:
            return self._failed(stage, attempt, self._failure_of(stage, attempt, current))
        previous = next((j for j in jobs if j.attempt == attempt - 1), None)
        self._running(stage, attempt, current, previous)
        return False

    def _failure_of(self, stage: StageName, attempt: int, job: ObservedJob | None) -> Failure:
        """Why `attempt` failed: what the stage recorded, else what its RayJob says, else that
        its RayJob is gone."""
        recorded = self.outputs.failure(stage, attempt)
        if recorded is not None:
            return recorded
        if job is None:
            name = child_name(self.run.metadata.name, stage, attempt)
            return Failure(FailureReason.RAY_JOB_DELETED, f"RayJob {name} disappeared")
        if job.reason in DEADLINES:
            detail = f" ({job.message})" if job.message else ""
            return Failure(job.reason, f"RayJob {job.name}: {DEADLINES[job.reason]}{detail}")
        return Failure(job.reason or FailureReason.RAY_JOB_FAILED, job.message or job.describe())

    def _running(
        self, stage: StageName, attempt: int, job: ObservedJob, previous: ObservedJob | None
    ) -> None:
        recorded = stage_of(self.status, stage)
        adopted = recorded.attempts != attempt or recorded.ray_job != job.name
        message = job.describe()
        if not adopted and recorded.message and job.silent:
            # "created" says as much, and rewording it would cost a status write (in the pass
            # of the previous stage's `Complete`, which KubeRay reports after its SUCCEEDED).
            message = recorded.message
        if adopted:
            # Started by a pass whose status write was lost (a crash, a conflict): announce
            # now what that pass would have announced.
            if attempt > 1 and recorded.attempts == attempt - 1:
                failure = self._failure_of(stage, attempt - 1, previous)
                self._event(
                    WARNING,
                    "StageRetrying",
                    f"{stage}: attempt {attempt - 1} failed ({failure.reason}: "
                    f"{failure.message}); starting attempt {attempt} of {self.max_attempts}",
                )
            self._event(NORMAL, "StageStarted", f"{stage}: adopted {job.name} (attempt {attempt})")
        self._stage(
            stage,
            state=StageState.RUNNING,
            ray_job=job.name,
            attempts=attempt,
            start_time=job.start_time or recorded.start_time or self.now,
            message=message,
        )
        self._set(self.status.model_copy(update={"phase": PHASE_OF_STAGE[stage]}))
        # A RayJob exists, so its inputs were checked when it was created (perhaps by a pass
        # whose status write was lost to a crash or a conflict).
        self._set(inputs_ready(self.status, self.now))

    def _start(self, stage: StageName, attempt: int, after: Failure | None = None) -> None:
        """Starts `attempt` of `stage` if the inputs are usable (`after`: the failure of the
        previous attempt, announced only when the new one really starts)."""
        checked = self.preflight()
        if isinstance(checked, Problem):
            previous = condition_of(self.status, ConditionType.READY)
            if previous is None or (previous.status, previous.reason) != (
                ConditionStatus.FALSE,
                checked.reason,
            ):
                self._event(WARNING, checked.reason, checked.message)
            self._set(inputs_refused(self.status, checked.reason, checked.message, self.now))
            if attempt == 1 and stage == StageName.GENERATE:
                self._set(self.status.model_copy(update={"phase": Phase.PENDING}))
            return
        name = child_name(self.run.metadata.name, stage, attempt)
        if after is not None:
            self._event(
                WARNING,
                "StageRetrying",
                f"{stage}: attempt {attempt - 1} failed ({after.reason}: {after.message}); "
                f"starting attempt {attempt} of {self.max_attempts}",
            )
        self.result.start = Start(stage, attempt, checked)
        self._set(
            stage_started(
                self.status,
                stage,
                attempt=attempt,
                now=self.now,
                ray_job=name,
                message=f"RayJob {name} created",
            )
        )
        self._event(NORMAL, "StageStarted", f"{stage}: created RayJob {name} (attempt {attempt})")

    def _succeeded(
        self,
        stage: StageName,
        attempt: int,
        name: str,
        summary: Mapping[str, Any],
        job: ObservedJob | None,
    ) -> None:
        self._set(
            stage_succeeded(
                self.status,
                stage,
                summary,
                message=job.describe() if job else "outputs complete; RayJob no longer exists",
                now=(job.end_time if job else None) or self.now,
                ray_job=name,
                attempts=attempt,
            )
        )
        self._event(NORMAL, "StageSucceeded", f"{stage}: {name} succeeded")

    def _failed(self, stage: StageName, attempt: int, failure: Failure) -> bool:
        if failure.retryable and attempt < self.max_attempts:
            self._stage(stage, message=f"attempt {attempt} failed: {failure.reason}")
            self._start(stage, attempt + 1, after=failure)
            return False
        self._set(
            stage_failed(
                self.status,
                stage,
                failure.reason,
                failure.message,
                attempts=attempt,
                now=self.now,
                summary=failure.summary,
            )
        )
        failed = condition_of(self.status, ConditionType.FAILED)
        assert failed is not None  # set by stage_failed
        self._event(WARNING, "RunFailed", f"{failure.reason}: {failed.message}")
        return False

    def succeed(self) -> None:
        self._set(run_succeeded(self.status, self.now))
        self._event(NORMAL, "RunSucceeded", "every stage succeeded")
