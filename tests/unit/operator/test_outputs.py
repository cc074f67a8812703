"""The operator reads the stages' completion markers under the stages' own keys (repeated in
`distillrun.operator.outputs`, which must not import the stages)."""

from __future__ import annotations

from pathlib import Path

from distillrun.api.status import StageName
from distillrun.jobs import entrypoint, evaluate, generate, validate
from distillrun.jobs.training import layout
from distillrun.operator.outputs import (
    PUBLISHED_ADAPTER,
    PUBLISHED_DONE_KEY,
    SUMMARY_KEYS,
    StoreOutputs,
    failure_key,
)
from distillrun.store import open_store


def test_keys_are_the_stages_own() -> None:
    assert SUMMARY_KEYS == {
        StageName.GENERATE: generate.MANIFEST_KEY,
        StageName.VALIDATE: validate.DONE_KEY,
        StageName.TRAIN: layout.CANDIDATE_DONE_KEY,
        StageName.EVALUATE: evaluate.METRICS_KEY,
    }
    assert (PUBLISHED_ADAPTER, PUBLISHED_DONE_KEY) == (
        layout.PUBLISHED_PREFIX,
        layout.PUBLISHED_DONE_KEY,
    )
    for stage in StageName:
        assert failure_key(stage, 3) == entrypoint.failure_key(stage, 3)


def test_summaries_and_failures_are_read_from_the_store(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    outputs = StoreOutputs(f"file://{tmp_path}")
    assert outputs.summary(StageName.VALIDATE) is None
    store.put_json(validate.DONE_KEY, {"fingerprint": "f", "summary": {"accepted": 3}})
    store.put_json(generate.MANIFEST_KEY, {"generated": 9, "plan": []})
    assert outputs.summary(StageName.VALIDATE) == {"accepted": 3}
    assert outputs.summary(StageName.GENERATE) == {"generated": 9, "plan": []}
    store.put_json(evaluate.METRICS_KEY, {"execution_accuracy": 0.5, "examples": 2})
    assert outputs.summary(StageName.EVALUATE) == {"execution_accuracy": 0.5, "examples": 2}
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
