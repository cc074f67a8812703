"""The example's human-written gold set, examples/shop/gold.jsonl: questions phrased the way
people ask them, each with SQL that passes the validate stage's checks and returns rows on the
shop's seed data (an empty answer would prove nothing), wired into the quickstart so evaluate
scores it beside the holdout from whatever directory the run starts in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.jobs.context import SilentProgress
from distillrun.local.runner import prepare
from distillrun.sql.judge import judge
from distillrun.sql.sandbox import open_sandbox
from distillrun.sql.schema import parse_schema
from distillrun.store import read_uri
from distillrun.teacher.base import ShardRequest
from distillrun.teacher.diversity import QuestionIndex
from distillrun.teacher.synthetic import SyntheticTeacher

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHOP = EXAMPLES / "shop"
GOLD = SHOP / "gold.jsonl"


def gold_records() -> list[dict[str, Any]]:
    records = [json.loads(line) for line in GOLD.read_text().splitlines() if line.strip()]
    assert all(isinstance(r, dict) for r in records)
    return records


def test_the_gold_set_holds_at_least_forty_distinct_questions_with_sql() -> None:
    records = gold_records()
    assert len(records) >= 40
    for record in records:
        assert set(record) == {"id", "question", "sql"}, record
        assert record["question"].strip() and record["sql"].strip()
    assert len({r["id"] for r in records}) == len(records)
    questions = QuestionIndex()
    for record in records:
        assert questions.find(record["question"]) is None, record["question"]
        questions.add(record["question"], record["id"])


def test_every_gold_query_passes_the_checks_and_returns_rows() -> None:
    schema = parse_schema((SHOP / "schema.sql").read_text(), Dialect.SQLITE)
    limits = SandboxSpec(statement_timeout_ms=2000, max_rows=1000)
    failed: list[str] = []
    with open_sandbox(schema, (SHOP / "seed.sql").read_text(), limits) as sandbox:
        for record in gold_records():
            verdict, _, _ = judge(record["sql"], schema, sandbox, reject_empty=True)
            if not verdict.ok:
                failed.append(f"{record['id']}: {verdict.reason}: {verdict.message}")
    assert not failed, "\n".join(failed)


def test_gold_questions_are_not_phrased_like_the_synthetic_teacher() -> None:
    """The gold set measures what the student does with questions it was not trained on the
    wording of: none near-duplicates a question the synthetic teacher writes for the shop."""
    schema = parse_schema((SHOP / "schema.sql").read_text(), Dialect.SQLITE)
    teacher = SyntheticTeacher()
    written = QuestionIndex()
    for index in range(25):
        request = ShardRequest(f"k{index}", index, 40, 7, schema, (), True)
        for example in teacher.write_shard(request).examples:
            written.add(example.question, example.id)
    alike = [
        f"{r['question']!r} ~ {found}"
        for r in gold_records()
        if (found := written.find(r["question"])) is not None
    ]
    assert not alike, alike


def test_the_quickstart_scores_the_gold_set_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the manifest's relative path is not under the cwd
    ctx = prepare(EXAMPLES / "quickstart.yaml", str(tmp_path / "store"), SilentProgress())
    gold = ctx.run.spec.evaluation.gold_set
    assert gold is not None and gold.uri == str(GOLD)
    assert len(read_uri(gold.uri).decode().splitlines()) == len(gold_records())
