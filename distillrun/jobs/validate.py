"""The validate stage: every generated query is checked and executed; the survivors become the
dataset.

Examples are judged in parallel chunks, each chunk in its own fresh sandbox built from the
schema and seed rows. Then, in plan order, duplicates (by the configured SQL normal form) are
rejected, and the accepted examples are split into train and holdout by a hash of their id, so
the split is the same on every rerun. Every rejected example is kept with its reason class and
the engine's message. `validate/_done.json` is written last and carries a fingerprint of the
inputs; a rerun with the same inputs reuses the stage's outputs.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from distillrun.api.spec import DedupMode, SandboxSpec
from distillrun.api.status import StageName
from distillrun.jobs.context import StageContext, StageFailed, StageResult
from distillrun.jobs.generate import MANIFEST_KEY, shard_object_key
from distillrun.jobs.parallel import Executor, InlineExecutor
from distillrun.sql.checks import CheckedQuery
from distillrun.sql.judge import judge
from distillrun.sql.sandbox import open_sandbox
from distillrun.sql.schema import SchemaInfo
from distillrun.sql.verdict import Reason, Verdict
from distillrun.teacher.base import GeneratedExample, ShardOutput

TRAIN_KEY = "dataset/train.jsonl"
HOLDOUT_KEY = "dataset/holdout.jsonl"
ACCEPTED_KEY = "validate/accepted.jsonl"
REJECTED_KEY = "validate/rejected.jsonl"
DONE_KEY = "validate/_done.json"
CHUNK_SIZE = 50


@dataclass(frozen=True)
class _Chunk:
    """A picklable batch of examples to judge in one sandbox."""

    examples: tuple[GeneratedExample, ...]
    schema: SchemaInfo
    seed_sql: str | None
    limits: SandboxSpec
    execute: bool
    reject_empty: bool


@dataclass(frozen=True)
class _Judged:
    example: GeneratedExample
    verdict: Verdict
    normalized: str | None


def _judge_chunk(chunk: _Chunk) -> list[_Judged]:
    def one(example: GeneratedExample, sandbox: Any) -> _Judged:
        verdict, checked, _ = judge(
            example.sql, chunk.schema, sandbox, reject_empty=chunk.reject_empty
        )
        return _Judged(example, verdict, _normal_form(checked))

    if not chunk.execute:
        return [one(e, None) for e in chunk.examples]
    with open_sandbox(chunk.schema, chunk.seed_sql, chunk.limits) as sandbox:
        return [one(e, sandbox) for e in chunk.examples]


def _normal_form(checked: CheckedQuery | None) -> str | None:
    return checked.normalized if checked is not None else None


def _dedup_key(judged: _Judged, mode: DedupMode) -> str | None:
    if mode == DedupMode.NONE:
        return None
    if mode == DedupMode.EXACT:
        return " ".join(judged.example.sql.split())
    return judged.normalized


def _in_holdout(example_id: str, fraction: float) -> bool:
    digest = hashlib.sha256(example_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_holdout(
    records: list[dict[str, Any]], fraction: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and holdout by a hash of each id; both non-empty whenever there are two records."""
    train = [r for r in records if not _in_holdout(r["id"], fraction)]
    holdout = [r for r in records if _in_holdout(r["id"], fraction)]
    if len(records) >= 2 and not holdout:
        holdout.append(train.pop())
    if len(records) >= 2 and not train:
        train.append(holdout.pop())
    return train, holdout


def _dataset_record(judged: _Judged) -> dict[str, Any]:
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
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _load_examples(ctx: StageContext) -> list[GeneratedExample]:
    if not ctx.store.exists(MANIFEST_KEY):
        raise StageFailed(
            StageName.VALIDATE, "NoGeneratedData", "generate has not committed its manifest yet"
        )
    plan: list[str] = ctx.store.get_json(MANIFEST_KEY)["plan"]
    examples: list[GeneratedExample] = []
    for key in plan:
        output = ShardOutput.model_validate_json(ctx.store.get_bytes(shard_object_key(key)))
        examples.extend(output.examples)
    return examples


def run(ctx: StageContext, executor: Executor | None = None) -> StageResult:
    """Judges every generated example and writes the dataset, accepted and rejected sets."""
    fingerprint = _fingerprint(ctx) if ctx.store.exists(MANIFEST_KEY) else ""
    if ctx.store.exists(DONE_KEY):
        done = ctx.store.get_json(DONE_KEY)
        if done.get("fingerprint") == fingerprint:
            ctx.progress.note(StageName.VALIDATE, "inputs unchanged: reusing the dataset")
            return StageResult(StageName.VALIDATE, done["summary"], reused=True)

    examples = _load_examples(ctx)
    spec = ctx.run.spec
    chunks = [
        _Chunk(
            examples=tuple(examples[i : i + CHUNK_SIZE]),
            schema=ctx.schema,
            seed_sql=ctx.seed_sql,
            limits=spec.database.sandbox,
            execute=spec.validation.require_execution,
            reject_empty=spec.validation.reject_empty_results,
        )
        for i in range(0, len(examples), CHUNK_SIZE)
    ]
    results: list[list[_Judged] | None] = [None] * len(chunks)
    tally: Counter[str] = Counter()
    checked = 0
    executor = executor or InlineExecutor()
    for index, judged_chunk in executor.map_unordered(_judge_chunk, chunks):
        results[index] = judged_chunk
        checked += len(judged_chunk)
        tally.update(j.verdict.reason or "ok" for j in judged_chunk)
        ctx.progress.counts(
            StageName.VALIDATE,
            {"checked": checked, **{f"rejected:{k}": v for k, v in tally.items() if k != "ok"}},
            total=len(examples),
        )

    accepted: list[_Judged] = []
    rejected: list[_Judged] = []
    seen: dict[str, str] = {}
    for judged in (j for chunk in results if chunk is not None for j in chunk):
        if not judged.verdict.ok:
            rejected.append(judged)
            continue
        key = _dedup_key(judged, spec.validation.dedup)
        if key is not None and key in seen:
            duplicate = Verdict(
                ok=False, reason=Reason.DUPLICATE, message=f"same SQL as {seen[key]}"
            )
            rejected.append(_Judged(judged.example, duplicate, judged.normalized))
            continue
        if key is not None:
            seen[key] = judged.example.id
        accepted.append(judged)

    records = [_dataset_record(j) for j in accepted]
    train, holdout = split_holdout(records, spec.validation.holdout_fraction)
    reasons = Counter(str(j.verdict.reason) for j in rejected)
    summary: dict[str, Any] = {
        "generated": len(examples),
        "accepted": len(accepted),
        "rejected": dict(sorted(reasons.items())),
        "train": len(train),
        "holdout": len(holdout),
        "dataset": ctx.store.url("dataset/"),
    }
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
    ctx.progress.counts(StageName.VALIDATE, {"checked": len(examples), "accepted": len(accepted)})
    return StageResult(StageName.VALIDATE, summary)
