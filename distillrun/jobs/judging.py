"""Judging generated examples, once per shard, for the generate and validate stages.

Both stages need the same verdicts: generate to count what its shards will yield (and top up
when short of `targetExamples`), validate to write the dataset. So a shard's judgments are
computed by whichever stage needs them first and stored under `validate/judged/<shard key>.json`
with a fingerprint of everything a verdict depends on (the judging fields of the validation
spec, the sandbox limits, the schema, the seed rows); a stage finding a matching entry reuses
it, and a changed input judges again. A shard never changes under its key, so the key and the
fingerprint name a judgment exactly.

Judging runs in parallel chunks of whole shards (about `CHUNK_SIZE` examples), each chunk in
its own fresh sandbox built from the schema and seed rows. `screen` then applies, in plan
order, what depends on more than one shard: identical SQL (by the configured normal form) and
near-duplicate questions (`teacher.diversity`) are rejected, the earlier example kept. Both
stages call it, so generate counts accepted examples exactly as validate will.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from distillrun.api.layout import JUDGED_PREFIX
from distillrun.api.spec import DedupMode, SandboxSpec
from distillrun.jobs.context import StageContext
from distillrun.jobs.parallel import Executor
from distillrun.sql.constructs import constructs_of_sql
from distillrun.sql.judge import execute_checked, judge
from distillrun.sql.sandbox import Sandbox, open_sandbox
from distillrun.sql.schema import SchemaInfo
from distillrun.sql.verdict import Reason, Verdict
from distillrun.teacher.base import GeneratedExample, ShardOutput
from distillrun.teacher.diversity import QuestionIndex

CHUNK_SIZE = 50
"""Examples judged in one sandbox (whole shards, so a chunk may hold more)."""


def judged_object_key(shard_key: str) -> str:
    return f"{JUDGED_PREFIX}{shard_key}.json"


@dataclass(frozen=True)
class Judged:
    """One example with its verdict and what was read off its SQL: the normal form (for
    deduplication), the schema tables it reads and its constructs (for coverage)."""

    example: GeneratedExample
    verdict: Verdict
    normalized: str | None
    tables: tuple[str, ...] = ()
    constructs: tuple[str, ...] = ()


@dataclass(frozen=True)
class JudgeSettings:
    """Everything a verdict depends on besides the SQL; picklable for Ray tasks."""

    schema: SchemaInfo
    seed_sql: str | None
    limits: SandboxSpec
    execute: bool
    reject_empty: bool

    @classmethod
    def of(cls, ctx: StageContext) -> JudgeSettings:
        spec = ctx.run.spec
        return cls(
            schema=ctx.schema,
            seed_sql=ctx.seed_sql,
            limits=spec.database.sandbox,
            execute=spec.validation.require_execution,
            reject_empty=spec.validation.reject_empty_results,
        )

    @property
    def fingerprint(self) -> str:
        material = json.dumps(
            {
                "execute": self.execute,
                "reject_empty": self.reject_empty,
                "sandbox": self.limits.model_dump(mode="json"),
                "schema": self.schema.fingerprint,
                "seed": hashlib.sha256((self.seed_sql or "").encode()).hexdigest(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class _Chunk:
    """A picklable batch of shards to judge in one sandbox."""

    shards: tuple[ShardOutput, ...]
    settings: JudgeSettings


def _judge_chunk(chunk: _Chunk) -> list[tuple[str, list[Judged]]]:
    """Judges every example of the chunk's shards. A query whose checked SQL (what the sandbox
    would run) was already executed in this chunk is not run again: the same statement on the
    same read-only data gets the same verdict, so repeats cost no execution time."""
    settings = chunk.settings
    executed: dict[str, Verdict] = {}

    def one(example: GeneratedExample, sandbox: Sandbox | None) -> Judged:
        verdict, checked, _ = judge(example.sql, settings.schema, None)
        if checked is None:
            return Judged(example, verdict, None)
        if sandbox is not None:
            if checked.sql not in executed:
                executed[checked.sql], _ = execute_checked(
                    checked, sandbox, reject_empty=settings.reject_empty
                )
            verdict = executed[checked.sql]
        constructs = constructs_of_sql(checked.sql, settings.schema.dialect)
        return Judged(example, verdict, checked.normalized, checked.tables, tuple(constructs))

    def all_shards(sandbox: Sandbox | None) -> list[tuple[str, list[Judged]]]:
        return [(s.key, [one(e, sandbox) for e in s.examples]) for s in chunk.shards]

    if not settings.execute:
        return all_shards(None)
    with open_sandbox(settings.schema, settings.seed_sql, settings.limits) as sandbox:
        return all_shards(sandbox)


def _chunks(shards: Sequence[ShardOutput], settings: JudgeSettings) -> list[_Chunk]:
    chunks: list[_Chunk] = []
    current: list[ShardOutput] = []
    size = 0
    for shard in shards:
        if current and size + len(shard.examples) > CHUNK_SIZE:
            chunks.append(_Chunk(tuple(current), settings))
            current, size = [], 0
        current.append(shard)
        size += len(shard.examples)
    if current:
        chunks.append(_Chunk(tuple(current), settings))
    return chunks


def _to_json(judged: Judged) -> dict[str, Any]:
    return {
        "id": judged.example.id,
        "verdict": judged.verdict.model_dump(mode="json"),
        "normalized": judged.normalized,
        "tables": list(judged.tables),
        "constructs": list(judged.constructs),
    }


def _cached(ctx: StageContext, shard: ShardOutput, fingerprint: str) -> list[Judged] | None:
    """The stored judgments of `shard`, or None when there are none for these inputs."""
    key = judged_object_key(shard.key)
    if not ctx.store.exists(key):
        return None
    entry = ctx.store.get_json(key)
    records = entry.get("judged", [])
    if entry.get("fingerprint") != fingerprint or [r["id"] for r in records] != [
        e.id for e in shard.examples
    ]:
        return None
    return [
        Judged(
            example,
            Verdict.model_validate(r["verdict"]),
            r["normalized"],
            tuple(r["tables"]),
            tuple(r["constructs"]),
        )
        for example, r in zip(shard.examples, records, strict=True)
    ]


def judge_shards(
    ctx: StageContext,
    shards: Sequence[ShardOutput],
    executor: Executor,
    on_judged: Callable[[list[Judged]], None] | None = None,
) -> list[list[Judged]]:
    """The judgments of every shard in `shards` (same order): stored ones reused, the others
    judged in parallel and stored the moment their chunk finishes. `on_judged` sees each
    shard's judgments as they become known (stored ones first)."""
    settings = JudgeSettings.of(ctx)
    fingerprint = settings.fingerprint
    found: dict[str, list[Judged]] = {}
    to_judge: list[ShardOutput] = []
    for shard in shards:
        cached = _cached(ctx, shard, fingerprint)
        if cached is None:
            to_judge.append(shard)
            continue
        found[shard.key] = cached
        if on_judged is not None:
            on_judged(cached)
    for _, results in executor.map_unordered(_judge_chunk, _chunks(to_judge, settings)):
        for key, judged in results:
            entry = {"fingerprint": fingerprint, "judged": [_to_json(j) for j in judged]}
            ctx.store.put_json(judged_object_key(key), entry)
            found[key] = judged
            if on_judged is not None:
                on_judged(judged)
    return [found[shard.key] for shard in shards]


def _sql_key(judged: Judged, mode: DedupMode) -> str | None:
    if mode == DedupMode.EXACT:
        return " ".join(judged.example.sql.split())
    return judged.normalized


@dataclass(frozen=True)
class Screened:
    """Every example, accepted or rejected with its reason, in plan order."""

    accepted: list[Judged]
    rejected: list[Judged]


def screen(judged: Iterable[Judged], mode: DedupMode) -> Screened:
    """Applies the rules that compare examples with each other, in plan order: an example the
    judge refused stays refused; then one whose SQL repeats an accepted example's is a
    DUPLICATE, and one whose question near-duplicates an accepted example's is a
    NEAR_DUPLICATE_QUESTION. With `dedup: none` both are kept."""
    accepted: list[Judged] = []
    rejected: list[Judged] = []
    seen_sql: dict[str, str] = {}
    questions = QuestionIndex()
    for one in judged:
        if not one.verdict.ok:
            rejected.append(one)
            continue
        if mode != DedupMode.NONE:
            key = _sql_key(one, mode)
            earlier = seen_sql.get(key) if key is not None else None
            if earlier is not None:
                why = Verdict(ok=False, reason=Reason.DUPLICATE, message=f"same SQL as {earlier}")
                rejected.append(_rejected(one, why))
                continue
            earlier = questions.find(one.example.question)
            if earlier is not None:
                why = Verdict(
                    ok=False,
                    reason=Reason.NEAR_DUPLICATE_QUESTION,
                    message=f"asks what {earlier} asks",
                )
                rejected.append(_rejected(one, why))
                continue
            if key is not None:
                seen_sql[key] = one.example.id
            questions.add(one.example.question, one.example.id)
        accepted.append(one)
    return Screened(accepted, rejected)


def _rejected(judged: Judged, verdict: Verdict) -> Judged:
    return Judged(judged.example, verdict, judged.normalized, judged.tables, judged.constructs)
