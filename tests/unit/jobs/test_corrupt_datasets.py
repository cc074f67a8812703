"""A damaged dataset file fails train and evaluate with a message naming the file and the line,
not a crash; a missing one still says which stage to run first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from distillrun.jobs import evaluate, train, validate
from distillrun.jobs.context import StageContext, StageFailed, StageResult
from tests.unit.jobs.test_generate_validate import make_context

GOOD_LINE = b'{"id": "a", "question": "How many?", "sql": "SELECT 1"}\n'


@pytest.mark.parametrize(
    ("stage", "key"),
    [(train.run, validate.TRAIN_KEY), (evaluate.run, validate.HOLDOUT_KEY)],
    ids=["train", "evaluate"],
)
def test_a_corrupt_line_names_the_file_and_line(
    tmp_path: Path, stage: Callable[[StageContext], StageResult], key: str
) -> None:
    ctx = make_context(tmp_path)
    ctx.store.put_bytes(key, GOOD_LINE + b'{"id": "b", "question": \n')
    with pytest.raises(StageFailed) as failed:
        stage(ctx)
    assert failed.value.reason == "InvalidDataset"
    assert f"{ctx.store.url(key)}: line 2 is not valid JSON" in str(failed.value)


@pytest.mark.parametrize(
    ("stage", "reason"),
    [(train.run, "NoTrainingData"), (evaluate.run, "NoHoldoutData")],
    ids=["train", "evaluate"],
)
def test_a_missing_dataset_says_what_to_run_first(
    tmp_path: Path, stage: Callable[[StageContext], StageResult], reason: str
) -> None:
    with pytest.raises(StageFailed) as failed:
        stage(make_context(tmp_path))
    assert failed.value.reason == reason and "run the" in str(failed.value)
