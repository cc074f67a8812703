"""A stage that fails after measuring something (evaluation under a refusing gate) leaves its
numbers in the status: they travel with the failure, through the record in the store on a
cluster, and `stage_failed` records them as a finished stage's are recorded."""

from __future__ import annotations

from typing import Any

from distillrun.api.conditions import ConditionType
from distillrun.api.failures import Failure, FailureReason
from distillrun.api.status import DistillRunStatus, Phase, StageName, StageState
from distillrun.api.transitions import condition_of, stage_failed, stage_started

NOW = "2030-01-01T00:00:00Z"
REFUSED: dict[str, Any] = {
    "execution_accuracy": 0.25,
    "base_execution_accuracy": 0.125,
    "teacher_execution_accuracy": 0.875,
    "gold_execution_accuracy": 0.5,
    "examples": 8,
    "correct": 2,
    "scored": 8,
    "unjudgeable": 0,
    "gold_empty": 0,
    "metrics": "file:///runs/shop/evaluate/metrics.json",
    "adapter": None,
}
"""Evaluate's summary when the gate refuses the student: scored, nothing published."""


def test_a_refused_student_leaves_its_accuracy_beside_the_base_in_the_status() -> None:
    running = stage_started(DistillRunStatus(), StageName.EVALUATE, attempt=1, now=NOW)
    status = stage_failed(
        running,
        StageName.EVALUATE,
        FailureReason.ACCURACY_BELOW_THRESHOLD,
        "execution accuracy 0.25 < 0.70",
        attempts=1,
        now=NOW,
        summary=REFUSED,
    )
    assert status.phase == Phase.FAILED
    assert status.stages["evaluate"].state == StageState.FAILED
    failed = condition_of(status, ConditionType.FAILED)
    assert failed is not None
    assert (failed.status, failed.reason) == ("True", "AccuracyBelowThreshold")
    evaluation = status.evaluation
    assert (evaluation.execution_accuracy, evaluation.base_execution_accuracy) == (0.25, 0.125)
    assert evaluation.teacher_execution_accuracy == 0.875
    assert evaluation.gold_execution_accuracy == 0.5
    assert (evaluation.examples, evaluation.scored) == (8, 8)
    assert status.artifacts.adapter is None  # nothing published
    wire = status.model_dump(mode="json", by_alias=True)["evaluation"]
    assert wire["executionAccuracy"] == 0.25 and wire["baseExecutionAccuracy"] == 0.125


def test_a_failure_without_numbers_leaves_the_evaluation_empty() -> None:
    status = stage_failed(
        DistillRunStatus(),
        StageName.EVALUATE,
        FailureReason.NO_HOLDOUT_DATA,
        "no holdout",
        attempts=1,
        now=NOW,
    )
    assert status.evaluation.execution_accuracy is None
    assert status.evaluation.base_execution_accuracy is None


def test_a_failure_record_keeps_the_numbers_through_json() -> None:
    failure = Failure(FailureReason.ACCURACY_BELOW_THRESHOLD, "too low", summary=REFUSED)
    record = failure.to_json()
    assert record["summary"] == REFUSED and record["retryable"] is False
    assert Failure.of_json(record) == failure
    bare = Failure(FailureReason.STAGE_CRASHED, "boom").to_json()
    assert "summary" not in bare
    assert Failure.of_json(bare).summary is None
    assert Failure.of_json({**bare, "summary": "not numbers"}).summary is None
