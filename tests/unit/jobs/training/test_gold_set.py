"""A user's gold set that cannot be used stops the evaluate stage with a message naming it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from distillrun.api.spec import GoldSet
from distillrun.jobs.context import StageFailed
from distillrun.jobs.evaluate import _read_gold_set


def _ctx(uri: str) -> Any:
    evaluation = SimpleNamespace(gold_set=GoldSet(uri=uri))
    return SimpleNamespace(run=SimpleNamespace(spec=SimpleNamespace(evaluation=evaluation)))


def test_a_gold_set_is_read_with_ids(tmp_path: Path) -> None:
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        '{"question": "q", "sql": "SELECT 1"}\n\n{"id": "x", "question": "r", "sql": "SELECT 2"}\n'
    )
    read = _read_gold_set(_ctx(str(gold)))
    assert read is not None
    assert [r["id"] for r in read[1]] == ["gold-0001", "x"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"question": "q", "sql": "SELECT 1"}\nnot json\n',
            r"gold\.jsonl line 2: .*question and sql",
        ),
        ('{"question": "q"}\n', r"gold\.jsonl line 1: .*question and sql"),
        ('["q", "SELECT 1"]\n', r"gold\.jsonl line 1"),
        ("\n\n", r"gold\.jsonl has no examples"),
        (None, r"spec\.evaluation\.goldSet\.uri: "),
    ],
)
def test_a_bad_gold_set_is_named(tmp_path: Path, content: str | None, message: str) -> None:
    gold = tmp_path / "gold.jsonl"
    if content is not None:
        gold.write_text(content)
    with pytest.raises(StageFailed, match=message) as failed:
        _read_gold_set(_ctx(str(gold)))
    assert failed.value.reason == "InvalidGoldSet"
