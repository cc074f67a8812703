"""Why a teacher stopped the generate stage: the few failures that retrying cannot fix.

Each carries the condition reason the stage reports (`StageFailed.reason`). Raising one also
stops the run's rate governor, so every other shard in flight stops at its next request instead
of discovering the same problem on its own; shards already committed are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from distillrun.api.failures import FailureReason


class TeacherStop(Exception):
    """The teacher cannot go on; the stage ends with `reason` and no retry loop."""

    reason: ClassVar[str] = FailureReason.TEACHER_FAILED


class BudgetExhausted(TeacherStop):
    """`teacher.budget.maxUSD` would be exceeded, or the provider's spend limit was reached."""

    reason = FailureReason.BUDGET_EXHAUSTED


class TeacherAuthFailed(TeacherStop):
    """The API key was refused (missing, wrong, revoked, or without permission)."""

    reason = FailureReason.TEACHER_AUTH_FAILED


class TeacherRequestInvalid(TeacherStop):
    """The provider rejected the request itself (unknown model, too large...): every shard
    would fail the same way."""

    reason = FailureReason.TEACHER_REQUEST_INVALID


class TeacherFailed(TeacherStop):
    """Transient failures outlasted every retry (the SDK's and ours): the provider is down or
    unreachable. A rerun resumes from the committed shards."""

    reason = FailureReason.TEACHER_FAILED


@dataclass(frozen=True)
class Transient:
    """A failure worth retrying (rate limit, overload, server error, dropped connection);
    `retry_after_s` is the server's hint when it gave one."""

    message: str
    retry_after_s: float | None = None


def by_status(
    status: int, description: str, retry_after_s: float | None, rejected: str
) -> Transient | TeacherRequestInvalid:
    """What an HTTP error status means once a provider's error map has taken out its own cases
    (a refused key, no money): the same rule for every provider. Rate limits (429), timeouts
    (408), conflicts (409) and server errors are retried, honouring the server's hint; any
    other status is a request the server will never accept (`rejected` says so)."""
    if status in (408, 409, 429) or status >= 500:
        return Transient(description, retry_after_s)
    return TeacherRequestInvalid(rejected)


STOPS: dict[str, type[TeacherStop]] = {
    cls.reason: cls
    for cls in (BudgetExhausted, TeacherAuthFailed, TeacherRequestInvalid, TeacherFailed)
}
"""Stop classes by reason, to rebuild a stop recorded by the governor in another process."""
