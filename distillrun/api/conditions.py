"""The condition types a DistillRun's status carries, and the reasons that are not failures.

A failed run's conditions carry a `FailureReason` (`distillrun.api.failures`); a run that cannot
start yet carries the preflight problem's reason on `Ready=False`. Both are strings on the wire
(`Condition.reason`), so a reason is written once here and compared as an enum everywhere.
"""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    READY = "Ready"
    """The run's inputs are usable and stages can run (False: why not, or why it ended)."""
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    BUDGET_EXHAUSTED = "BudgetExhausted"
    """The teacher's budget was spent (False from the first generate attempt on)."""
    SPEC_INVALID = "SpecInvalid"
    """The manifest was refused by the operator's validation (the CRD admitted it)."""


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionReason(StrEnum):
    """Reasons of conditions that do not report a failure."""

    COMPLETED = "Completed"
    """Every stage succeeded (on Succeeded and Failed)."""
    SUCCEEDED = "Succeeded"
    """Ready=True after the run succeeded."""
    INPUTS_READY = "InputsReady"
    WITHIN_BUDGET = "WithinBudget"
    SPEC_INVALID = "SpecInvalid"
    RAY_JOB_REJECTED = "RayJobRejected"
    """The apiserver refused a stage's RayJob (quota, admission webhook); retried next pass."""


class InputProblem(StrEnum):
    """Why a run cannot start yet (`Ready=False`, an Event): the operator's preflight checks
    what admission cannot know; fixing it (creating the Secret) lets the next pass proceed."""

    ARTIFACTS_NOT_SHARED = "ArtifactsNotShared"
    ARTIFACTS_UNSET = "ArtifactsUnset"
    CONFIG_MAP_KEY_NOT_FOUND = "ConfigMapKeyNotFound"
    CONFIG_MAP_NOT_FOUND = "ConfigMapNotFound"
    GPUS_EXCEED_NODE = "GpusExceedNode"
    HARDWARE_PROFILE_UNAVAILABLE = "HardwareProfileUnavailable"
    SANDBOX_INVALID = "SandboxInvalid"
    SCHEMA_INVALID = "SchemaInvalid"
    SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_REF_MISSING = "SecretRefMissing"
    SQL_UNREADABLE = "SqlUnreadable"
