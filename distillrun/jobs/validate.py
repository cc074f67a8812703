"""The validate stage: every generated query is checked and executed; the survivors become the
dataset.

Shards are judged through `jobs.judging`: a shard the generate stage already judged (to count
its yield) under the same inputs is not judged again, so validate runs only what is new. Then,
in plan order, duplicates (by the configured SQL normal form) and near-duplicate questions are
rejected, and the accepted examples are split into train and holdout by a hash of their query's
shape (the SQL with every constant masked), so the split is the same on every rerun and the
holdout holds no near-copy of a training example: queries that differ only in a constant
("the 3 cheapest products", "the 10 cheapest products") land on the same side. Every rejected
example is kept with its reason class and the engine's message. The summary warns when the seed
data is empty or many accepted queries return no rows (`jobs.empty_results`): those examples
cannot carry an evaluation, and that is cheaper to learn before training. `validate/_done.json`
is written last and carries a fingerprint of the inputs; a rerun with the same inputs reuses the
stage's outputs.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import sqlglot
from sqlglot import exp

from distillrun.api.failures import FailureReason
from distillrun.api.layout import (
    ACCEPTED_KEY,
    HOLDOUT_KEY,
    MANIFEST_KEY,
    REJECTED_KEY,
    TRAIN_KEY,
    shard_object_key,
)
from distillrun.api.layout import VALIDATE_DONE_KEY as DONE_KEY
from distillrun.api.spec import Dialect
from distillrun.api.status import StageName
from distillrun.jobs.context import StageContext, StageFailed, StageResult
from distillrun.jobs.empty_results import empty_data_warnings
from distillrun.jobs.judging import Judged, judge_shards, screen
from distillrun.jobs.parallel import Executor, InlineExecutor
from distillrun.teacher.base import ShardOutput

SPLIT_FORMAT = 2
"""Bump when the train/holdout split rule changes: stored datasets are then split again."""


def _in_holdout(group: str, fraction: float) -> bool:
    digest = hashlib.sha256(group.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def query_shape(sql: str, dialect: Dialect) -> str:
    """`sql` with every literal replaced by a placeholder: two queries of one shape differ only
    in their constants. Text that does not parse is its own shape."""
    try:
        tree = sqlglot.parse_one(sql, read=str(dialect))
    except sqlglot.errors.SqlglotError:
        return sql
    for literal in list(tree.find_all(exp.Literal)):
        literal.replace(exp.Placeholder())
    return tree.sql(dialect=str(dialect))


def split_holdout(
    records: list[dict[str, Any]],
    fraction: float,
    group_of: Callable[[dict[str, Any]], str] = lambda record: str(record["id"]),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and holdout by a hash of each record's group (`group_of`), so a group is never on
    both sides; both non-empty whenever there are two groups."""
    groups = [group_of(r) for r in records]
    train = [r for r, g in zip(records, groups, strict=True) if not _in_holdout(g, fraction)]
    holdout = [r for r, g in zip(records, groups, strict=True) if _in_holdout(g, fraction)]
    if len(set(groups)) >= 2 and not holdout:
        moved = groups[records.index(train[-1])]
        holdout = [r for r, g in zip(records, groups, strict=True) if g == moved]
        train = [r for r, g in zip(records, groups, strict=True) if g != moved]
    if len(set(groups)) >= 2 and not train:
        moved = groups[records.index(holdout[-1])]
        train = [r for r, g in zip(records, groups, strict=True) if g == moved]
        holdout = [r for r, g in zip(records, groups, strict=True) if g != moved]
    return train, holdout


def _dataset_record(judged: Judged) -> dict[str, Any]:
    e, v = judged.example, judged.verdict
    return {
        "id": e.id,
        "question": e.question,
        "sql": e.sql,
        "explanation": e.explanation,
        "tables": e.tables,
        "constructs": e.constructs,
        "result_hash": v.result_hash or "",
        "rows": v.rows or 0,
        "usage": e.usage.model_dump(),
    }


def _fingerprint(ctx: StageContext) -> str:
    spec = ctx.run.spec
    material = json.dumps(
        {
            # committed shards never change under their key, so the plan names the input exactly
            "plan": ctx.store.get_json(MANIFEST_KEY)["plan"],
            "validation": spec.validation.model_dump(mode="json"),
            "sandbox": spec.database.sandbox.model_dump(mode="json"),
            "schema": ctx.schema.fingerprint,
            "seed": hashlib.sha256((ctx.seed_sql or "").encode()).hexdigest(),
            "split": SPLIT_FORMAT,
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _load_shards(ctx: StageContext) -> list[ShardOutput]:
    if not ctx.store.exists(MANIFEST_KEY):
        raise StageFailed(
            StageName.VALIDATE,
            FailureReason.NO_GENERATED_DATA,
            "generate has not committed its manifest yet",
        )
    plan: list[str] = ctx.store.get_json(MANIFEST_KEY)["plan"]
    return [
        ShardOutput.model_validate_json(ctx.store.get_bytes(shard_object_key(key))) for key in plan
    ]


def run(ctx: StageContext, executor: Executor | None = None) -> StageResult:
    """Judges every generated example not judged yet and writes the dataset, accepted and
    rejected sets."""
    fingerprint = _fingerprint(ctx) if ctx.store.exists(MANIFEST_KEY) else ""
    if ctx.store.exists(DONE_KEY):
        done = ctx.store.get_json(DONE_KEY)
        if done.get("fingerprint") == fingerprint:
            ctx.progress.note(StageName.VALIDATE, "inputs unchanged: reusing the dataset")
            return StageResult(StageName.VALIDATE, done["summary"], reused=True)

    shards = _load_shards(ctx)
    total = sum(len(s.examples) for s in shards)
    tally: Counter[str] = Counter()

    def show(judged: list[Judged]) -> None:
        tally.update(j.verdict.reason or "ok" for j in judged)
        ctx.progress.counts(
            StageName.VALIDATE,
            {
                "checked": sum(tally.values()),
                **{f"rejected:{k}": v for k, v in tally.items() if k != "ok"},
            },
            total=total,
        )

    judged = judge_shards(ctx, shards, executor or InlineExecutor(), on_judged=show)
    spec = ctx.run.spec
    screened = screen((j for shard in judged for j in shard), spec.validation.dedup)
    accepted, rejected = screened.accepted, screened.rejected

    records = [_dataset_record(j) for j in accepted]
    dialect = ctx.schema.dialect
    train, holdout = split_holdout(
        records,
        spec.validation.holdout_fraction,
        group_of=lambda record: query_shape(str(record["sql"]), dialect),
    )
    reasons = Counter(str(j.verdict.reason) for j in rejected)
    empty = sum(1 for record in records if not record["rows"])
    summary: dict[str, Any] = {
        "generated": total,
        "accepted": len(accepted),
        "rejected": dict(sorted(reasons.items())),
        "train": len(train),
        "holdout": len(holdout),
        "dataset": ctx.store.url("dataset/"),
        "empty_results": empty,
        "warnings": empty_data_warnings(ctx.seed_sql, len(records), empty),
    }
    for warning in summary["warnings"]:
        ctx.progress.note(StageName.VALIDATE, f"warning: {warning}")
    ctx.store.put_jsonl(
        REJECTED_KEY,
        (
            {**j.example.model_dump(), "verdict": j.verdict.model_dump(mode="json")}
            for j in rejected
        ),
    )
    ctx.store.put_jsonl(
        ACCEPTED_KEY,
        ({**_dataset_record(j), "verdict": j.verdict.model_dump(mode="json")} for j in accepted),
    )
    ctx.store.put_jsonl(TRAIN_KEY, train)
    ctx.store.put_jsonl(HOLDOUT_KEY, holdout)
    ctx.store.put_json(DONE_KEY, {"fingerprint": fingerprint, "summary": summary})
    ctx.progress.counts(StageName.VALIDATE, {"checked": total, "accepted": len(accepted)})
    return StageResult(StageName.VALIDATE, summary)
