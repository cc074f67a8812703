"""Train on datasets at the edge: one example trains; examples whose prompts leave no room
for an answer end the stage with a reason that says so, never a crash inside the trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from distillrun.jobs import train
from distillrun.jobs.context import StageContext, StageFailed

pytestmark = pytest.mark.usefixtures("offline_hub")

ContextAt = Callable[[Path, dict[str, Any]], StageContext]
QUICK = {"maxSteps": 2, "microBatchSize": 4, "checkpointEverySteps": 50}
NO_SAMPLES = {"duringTraining": {"everySteps": 0}}


def test_one_example_trains(
    tmp_path: Path, context_at: ContextAt, shop_records: list[dict[str, Any]]
) -> None:
    ctx = context_at(tmp_path / "store", {"student": QUICK, "evaluation": NO_SAMPLES})
    ctx.store.put_jsonl("dataset/train.jsonl", shop_records[:1])
    result = train.run(ctx)
    assert result.summary["examples"] == 1
    assert result.summary["steps"] == 2


def test_examples_without_room_for_an_answer_are_a_named_failure(
    tmp_path: Path, context_at: ContextAt, shop_records: list[dict[str, Any]]
) -> None:
    student = {**QUICK, "maxSeqLength": 32}
    ctx = context_at(tmp_path / "store", {"student": student, "evaluation": NO_SAMPLES})
    ctx.store.put_jsonl("dataset/train.jsonl", shop_records[:3])
    with pytest.raises(StageFailed) as failed:
        train.run(ctx)
    assert failed.value.reason == "ExamplesTooLong"
    assert "spec.student.maxSeqLength" in str(failed.value) and "all 3 examples" in str(
        failed.value
    )
