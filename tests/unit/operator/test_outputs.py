"""The operator reads the stages' completion markers and failure records under the keys of
`distillrun.api.layout`, where the stages write them."""

from __future__ import annotations

from pathlib import Path

from distillrun.api.layout import (
    MANIFEST_KEY,
    METRICS_KEY,
    PUBLISHED_DONE_KEY,
    REPORT_KEY,
    VALIDATE_DONE_KEY,
    failure_key,
)
from distillrun.api.status import DistillRunStatus, StageName
from distillrun.api.transitions import record_summary
from distillrun.operator.outputs import StoreOutputs
from distillrun.store import open_store


def test_summaries_and_failures_are_read_from_the_store(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    outputs = StoreOutputs(f"file://{tmp_path}")
    assert outputs.summary(StageName.VALIDATE) is None
    store.put_json(VALIDATE_DONE_KEY, {"fingerprint": "f", "summary": {"accepted": 3}})
    store.put_json(MANIFEST_KEY, {"generated": 9, "plan": []})
    assert outputs.summary(StageName.VALIDATE) == {"accepted": 3}
    assert outputs.summary(StageName.GENERATE) == {"generated": 9, "plan": []}
    store.put_json(METRICS_KEY, {"execution_accuracy": 0.5, "examples": 2})
    assert outputs.summary(StageName.EVALUATE) == {
        "execution_accuracy": 0.5,
        "examples": 2,
        "base_execution_accuracy": None,
        "teacher_execution_accuracy": None,
        "gold_execution_accuracy": None,
    }
    store.put_json(PUBLISHED_DONE_KEY, {"fingerprint": "f"})
    published = outputs.summary(StageName.EVALUATE)
    assert published is not None and published["adapter"] == store.url("adapter/")
    assert outputs.failure(StageName.TRAIN, 1) is None
    store.put_json(failure_key(StageName.TRAIN, 1), {"reason": "NoTrainingData", "message": "m"})
    failure = outputs.failure(StageName.TRAIN, 1)
    assert failure is not None
    assert (failure.reason, failure.message, failure.retryable) == ("NoTrainingData", "m", False)


def test_without_a_store_there_are_no_outputs() -> None:
    outputs = StoreOutputs(None)
    assert outputs.summary(StageName.GENERATE) is None
    assert outputs.failure(StageName.GENERATE, 1) is None


def test_the_report_drawn_by_the_last_stage_is_linked_in_the_status(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    outputs = StoreOutputs(f"file://{tmp_path}")
    store.put_json(METRICS_KEY, {"execution_accuracy": 0.5, "examples": 2})
    summary = outputs.summary(StageName.EVALUATE)
    assert summary is not None and "report" not in summary
    store.put_bytes(REPORT_KEY, b"<html></html>")
    summary = outputs.summary(StageName.EVALUATE)
    assert summary is not None and summary["report"] == store.url(REPORT_KEY)
    status = record_summary(DistillRunStatus(), StageName.EVALUATE, summary)
    assert status.artifacts.report == store.url(REPORT_KEY)


def test_the_scores_evaluate_stores_give_the_status_its_own_summary_gives(
    tmp_path: Path,
) -> None:
    """On a cluster the status is filled from `metrics.json`; the base model's, the teacher's
    and the gold set's accuracies are nested there and flat in the stage's summary."""
    store = open_store(f"file://{tmp_path}")
    store.put_json(
        METRICS_KEY,
        {
            "execution_accuracy": 0.75,
            "examples": 4,
            "scored": 4,
            "gold_set": {"execution_accuracy": 0.5, "examples": 2},
            "base": {"holdout": {"execution_accuracy": 0.25}, "gold_set": None},
            "teacher": {"holdout": {"execution_accuracy": 1.0}, "model": "claude"},
        },
    )
    summary = StoreOutputs(f"file://{tmp_path}").summary(StageName.EVALUATE)
    assert summary is not None
    evaluation = record_summary(DistillRunStatus(), StageName.EVALUATE, summary).evaluation
    assert evaluation.execution_accuracy == 0.75
    assert evaluation.base_execution_accuracy == 0.25
    assert evaluation.teacher_execution_accuracy == 1.0
    assert evaluation.gold_execution_accuracy == 0.5


def test_a_failure_record_brings_the_numbers_measured_before_the_failure(
    tmp_path: Path,
) -> None:
    store = open_store(f"file://{tmp_path}")
    numbers = {"execution_accuracy": 0.25, "base_execution_accuracy": 0.125, "adapter": None}
    store.put_json(
        failure_key(StageName.EVALUATE, 1),
        {"reason": "AccuracyBelowThreshold", "message": "m", "summary": numbers},
    )
    failure = StoreOutputs(f"file://{tmp_path}").failure(StageName.EVALUATE, 1)
    assert failure is not None and failure.summary == numbers
