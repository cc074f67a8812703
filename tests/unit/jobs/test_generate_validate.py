"""generate and validate against a real file store, the real synthetic teacher and a real
SQLite sandbox: shards committed once and reused, every example judged with a reason, the
dataset loadable with `datasets`."""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from distillrun.api import parse_run
from distillrun.api.layout import SPEC_KEY
from distillrun.api.spec import Dialect
from distillrun.api.status import StageName
from distillrun.jobs import generate, validate
from distillrun.jobs.context import SilentProgress, StageContext, StageFailed
from distillrun.jobs.inputs import load_inputs
from distillrun.report.page import render_page
from distillrun.report.read import read_run
from distillrun.report.terminal import render_status
from distillrun.store import open_store
from distillrun.teacher.base import GeneratedExample, ShardOutput, ShardRequest
from distillrun.teacher.synthetic import SyntheticTeacher

EXAMPLES = Path(__file__).parents[3] / "examples"


def make_context(tmp_path: Path, **teacher: Any) -> StageContext:
    data = yaml.safe_load((EXAMPLES / "shop-tiny.yaml").read_text())
    data["spec"]["teacher"].update({"targetExamples": 60, "examplesPerShard": 20, **teacher})
    run = parse_run(data)
    schema, seed = load_inputs(run, EXAMPLES, "shop-tiny.yaml")
    store = open_store(str(tmp_path / "store")).sub("default/shop-tiny/local")
    return StageContext(run=run, store=store, schema=schema, seed_sql=seed)


@dataclass
class CountingTeacher:
    """The real synthetic teacher, counting the shards it is asked for."""

    fail_at: int | None = None
    calls: list[int] = field(default_factory=list)
    inner: SyntheticTeacher = field(default_factory=SyntheticTeacher)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def parameters(self) -> dict[str, Any]:
        return self.inner.parameters

    def write_shard(self, request: ShardRequest) -> ShardOutput:
        if request.index == self.fail_at:
            raise ConnectionError("teacher went away")
        self.calls.append(request.index)
        return self.inner.write_shard(request)


@dataclass
class ScriptedTeacher:
    """Writes exactly the SQL it is given: for checking the validate stage's verdicts."""

    sqls: list[str]
    name: str = "scripted"

    @property
    def parameters(self) -> dict[str, Any]:
        return {"sqls": self.sqls}

    def write_shard(self, request: ShardRequest) -> ShardOutput:
        examples = [
            GeneratedExample(
                id=f"{request.key}-{i:03d}",
                shard=request.key,
                question=f"q{i}",
                sql=sql,
                teacher=self.name,
            )
            for i, sql in enumerate(self.sqls)
        ]
        return ShardOutput(key=request.key, examples=examples)


def test_generate_commits_each_shard_once_and_reuses_them(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, maxTopUpRounds=0)
    teacher = CountingTeacher()
    first = generate.run(ctx, teacher)
    assert sorted(teacher.calls) == [0, 1, 2]
    assert first.summary["generated"] == 60 and first.summary["teacher_calls"] == 3

    again = CountingTeacher()
    second = generate.run(ctx, again)
    assert again.calls == [] and second.reused
    assert second.summary["generated"] == 60

    plan = ctx.store.get_json(generate.MANIFEST_KEY)["plan"]
    ctx.store.delete(generate.shard_object_key(plan[1]))
    healed = CountingTeacher()
    generate.run(ctx, healed)
    assert healed.calls == [1]
    assert sorted(ctx.store.list_keys(generate.SHARDS_PREFIX)) == sorted(
        generate.shard_object_key(k) for k in plan
    )


def test_a_failing_teacher_keeps_committed_shards(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, maxTopUpRounds=0)
    with pytest.raises(StageFailed) as failed:
        generate.run(ctx, CountingTeacher(fail_at=2))
    assert failed.value.reason == "TeacherFailed"
    assert "2 of 3 shards are committed" in str(failed.value)
    resumed = CountingTeacher()
    generate.run(ctx, resumed)
    assert resumed.calls == [2]


def test_shard_keys_do_not_depend_on_the_target(tmp_path: Path) -> None:
    small = generate.plan_shards(make_context(tmp_path), SyntheticTeacher())
    large = generate.plan_shards(make_context(tmp_path, targetExamples=100), SyntheticTeacher())
    assert [r.key for r in large[: len(small)]] == [r.key for r in small]
    reseeded = generate.plan_shards(make_context(tmp_path, seed=8), SyntheticTeacher())
    assert not {r.key for r in reseeded} & {r.key for r in small}


def test_validate_writes_a_loadable_dataset_and_reuses_it(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    generate.run(ctx, SyntheticTeacher())
    result = validate.run(ctx)
    summary = result.summary
    assert summary["accepted"] + sum(summary["rejected"].values()) == summary["generated"] == 60
    assert summary["train"] + summary["holdout"] == summary["accepted"] > 0
    assert summary["holdout"] >= 1

    from datasets import load_dataset

    root = Path(ctx.store.url().removeprefix("file://"))
    data = load_dataset(
        "json",
        data_files={
            "train": str(root / validate.TRAIN_KEY),
            "holdout": str(root / validate.HOLDOUT_KEY),
        },
    )
    assert data["train"].num_rows == summary["train"]
    assert set(data["train"].column_names) >= {
        "id",
        "question",
        "sql",
        "explanation",
        "result_hash",
    }
    assert not set(data["train"]["id"]) & set(data["holdout"]["id"])

    assert validate.run(ctx).reused


BAD_SQL = {
    "SELECT name FROM customers WHERE country = 'DE'": None,
    "SELECT  name FROM customers WHERE country = 'DE' ": "duplicate",
    "DROP TABLE customers": "not_select",
    "SELECT * FROM invoices": "unknown_table",
    "SELECT nickname FROM customers": "unknown_column",
    "SELEC name FROM customers": "parse",
    "SELECT 1; DELETE FROM orders": "multiple_statements",
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    ): "timeout",
}


def test_validate_gives_every_rejection_its_reason(tmp_path: Path) -> None:
    ctx = make_context(
        tmp_path, targetExamples=len(BAD_SQL), examplesPerShard=len(BAD_SQL), maxTopUpRounds=0
    )
    generate.run(ctx, ScriptedTeacher(list(BAD_SQL)))
    result = validate.run(ctx)
    expected = sorted(r for r in BAD_SQL.values() if r is not None)
    rejected = ctx.store.read_jsonl(validate.REJECTED_KEY)
    assert sorted(r["verdict"]["reason"] for r in rejected) == expected
    assert all(r["verdict"]["message"] for r in rejected)
    assert result.summary["accepted"] == 1


@dataclass
class NoteTaker(SilentProgress):
    notes: list[str] = field(default_factory=list)

    def note(self, stage: StageName, message: str) -> None:
        self.notes.append(message)


EMPTY_SQL = [
    "SELECT COUNT(*) FROM customers",
    "SELECT name FROM customers WHERE country = 'Atlantis'",
    "SELECT name FROM products WHERE price < 0",
    "SELECT id FROM orders WHERE status = 'lost at sea'",
]


@pytest.mark.parametrize(
    ("with_seed", "expected"),
    [
        (True, ["3 of 4 gold results are empty (75%)"]),
        (False, ["the seed data is empty", "3 of 4 gold results are empty (75%)"]),
    ],
)
def test_validate_warns_when_gold_results_are_empty(
    tmp_path: Path, with_seed: bool, expected: list[str]
) -> None:
    """Empty gold results prove nothing; the user hears so before paying for training."""
    ctx = make_context(tmp_path, targetExamples=4, examplesPerShard=4, maxTopUpRounds=0)
    progress = NoteTaker()
    ctx = dataclasses.replace(ctx, seed_sql=ctx.seed_sql if with_seed else None, progress=progress)
    generate.run(ctx, ScriptedTeacher(EMPTY_SQL))
    summary = validate.run(ctx).summary
    assert summary["accepted"] == 4
    assert summary["empty_results"] == 3  # a COUNT(*) has its row even on empty tables
    warnings = summary["warnings"]
    assert [any(e in w for w in warnings) for e in expected] == [True] * len(expected)
    assert len(warnings) == len(expected)
    assert [n for n in progress.notes if n.startswith("warning: ")] == [
        f"warning: {w}" for w in warnings
    ]

    ctx.store.put_json(SPEC_KEY, ctx.run.to_wire())
    report = read_run(ctx.store, schema=ctx.schema)
    assert report.data is not None and report.data.warnings == tuple(warnings)
    assert html.escape(warnings[-1]) in render_page(report)
    console = Console(width=400, record=True)
    console.print(render_status(report, datetime.now(UTC)))
    assert expected[-1] in console.export_text()  # `distillrun status` says so too


def test_validate_before_generate_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(StageFailed) as failed:
        validate.run(make_context(tmp_path))
    assert failed.value.reason == "NoGeneratedData"
    assert failed.value.stage == StageName.VALIDATE


def test_holdout_split_is_stable_and_never_empty() -> None:
    records = [{"id": f"x-{i}"} for i in range(200)]
    train, holdout = validate.split_holdout(records, 0.1)
    assert (train, holdout) == validate.split_holdout(list(records), 0.1)
    assert 5 <= len(holdout) <= 40
    two = [{"id": "a"}, {"id": "b"}]
    small_train, small_holdout = validate.split_holdout(two, 0.01)
    assert len(small_train) == len(small_holdout) == 1


def test_the_holdout_holds_no_near_copy_of_a_training_query() -> None:
    """Queries that differ only in their constants are one group: never split across."""
    shapes = [
        "SELECT name, price FROM products ORDER BY price DESC LIMIT {n}",
        "SELECT COUNT(*) FROM customers WHERE country = 'C{n}'",
        "SELECT name FROM products WHERE price > {n}",
        "SELECT COUNT(*) FROM orders WHERE status = 's{n}'",
    ] + [f"SELECT id FROM orders WHERE customer_id = {{n}} AND id > {k}" for k in range(40)]
    records = [
        {"id": f"x-{i}-{n}", "sql": shape.format(n=n)}
        for i, shape in enumerate(shapes)
        for n in range(1, 6)
    ]
    assert validate.query_shape(records[0]["sql"], Dialect.SQLITE) == validate.query_shape(
        records[1]["sql"], Dialect.SQLITE
    )

    def shape_of(record: dict[str, Any]) -> str:
        return validate.query_shape(record["sql"], Dialect.SQLITE)

    train, holdout = validate.split_holdout(records, 0.2, group_of=shape_of)
    assert train and holdout and len(train) + len(holdout) == len(records)
    assert not {shape_of(r) for r in train} & {shape_of(r) for r in holdout}
    assert (train, holdout) == validate.split_holdout(list(records), 0.2, group_of=shape_of)
