"""Top-up rounds in the generate stage and the judgments it shares with validate, against a
real file store, the real synthetic teacher and a real SQLite sandbox."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from distillrun.api.spec import RateLimits
from distillrun.jobs import generate, judging, validate
from distillrun.jobs.context import StageContext, StageFailed
from distillrun.teacher.base import GeneratedExample, ShardOutput, ShardRequest, Teacher, Usage
from distillrun.teacher.estimate import CostEstimate
from distillrun.teacher.governor import GovernorClient
from distillrun.teacher.synthetic import SyntheticTeacher
from tests.unit.jobs.conftest import RecordingProgress
from tests.unit.jobs.test_generate_validate import CountingTeacher, make_context

SIX_SHARDS = {"targetExamples": 240, "examplesPerShard": 40}
"""shop-tiny's teacher, six shards of 40: with `EchoingTeacher` they yield 180 accepted
examples, not 240."""


class EchoingTeacher(SyntheticTeacher):
    """The synthetic teacher repeating itself: the last quarter of every shard echoes the first
    quarter, alternately the same example (a duplicate) and the same question over other SQL
    (a near-duplicate question), so screening rejects a quarter of every shard. The real one
    avoids repeats across a run's shards, which leaves nothing to top up."""

    def write_shard(self, request: ShardRequest) -> ShardOutput:
        output = super().write_shard(request)
        quarter = len(output.examples) // 4
        kept = output.examples[: len(output.examples) - quarter]
        echoes = [
            example.model_copy(
                update={
                    "id": f"{request.key}-echo-{n:03d}",
                    "sql": example.sql if n % 2 else f"SELECT * FROM ({example.sql}) AS echoed",
                }
            )
            for n, example in enumerate(kept[:quarter])
        ]
        return output.model_copy(update={"examples": kept + echoes})


def with_progress(ctx: StageContext) -> RecordingProgress:
    ctx.progress = RecordingProgress()
    return ctx.progress


def notes(progress: RecordingProgress) -> list[str]:
    return [message for _, message in progress.notes]


def with_validation(ctx: StageContext, **changes: Any) -> StageContext:
    """The same store and inputs under a changed `spec.validation` (python field names)."""
    spec = ctx.run.spec
    validation = spec.validation.model_copy(update=changes)
    run = ctx.run.model_copy(update={"spec": spec.model_copy(update={"validation": validation})})
    return replace(ctx, run=run)


@pytest.fixture(scope="module")
def topped_up(tmp_path_factory: pytest.TempPathFactory) -> tuple[StageContext, dict[str, Any]]:
    ctx = make_context(tmp_path_factory.mktemp("topped"), **SIX_SHARDS)
    with_progress(ctx)
    return ctx, generate.run(ctx, EchoingTeacher()).summary


def test_top_up_rounds_reach_the_target_the_first_round_misses(
    topped_up: tuple[StageContext, dict[str, Any]],
) -> None:
    ctx, summary = topped_up
    assert summary["rounds"] > 1 and summary["shards"] > 6
    assert summary["screened_accepted"] >= 240
    manifest = ctx.store.get_json(generate.MANIFEST_KEY)
    assert manifest["by_round"][0] == {"round": 0, "shards": 6, "accepted": 180}
    assert sum(r["shards"] for r in manifest["by_round"]) == len(manifest["plan"])
    assert any(n.startswith("round 1: ") and " missing; focus: " in n for n in notes(ctx.progress))
    # validate accepts exactly what generate counted, and drops repeats with their reasons
    result = validate.run(ctx)
    assert result.summary["accepted"] == summary["screened_accepted"]
    assert result.summary["rejected"]["duplicate"] > 0
    rejected = ctx.store.read_jsonl(validate.REJECTED_KEY)
    near = [r for r in rejected if r["verdict"]["reason"] == "near_duplicate_question"]
    assert near and all(r["verdict"]["message"].startswith("asks what ") for r in near)


def test_top_up_shards_carry_their_focus_to_the_teacher(
    topped_up: tuple[StageContext, dict[str, Any]],
) -> None:
    ctx, _ = topped_up
    rounds = [ctx.store.get_json(k) for k in ctx.store.list_keys(generate.ROUNDS_PREFIX)]
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1))
    shards = [s for r in rounds for s in r["shards"]]
    assert all(s["tables"] or s["constructs"] for s in shards)
    assert {s["index"] for s in shards} == set(range(6, 6 + len(shards)))
    plan = ctx.store.get_json(generate.MANIFEST_KEY)["plan"]
    assert [s["key"] for s in shards] == plan[6:]


def test_a_rerun_replays_every_round_without_a_teacher_call(
    topped_up: tuple[StageContext, dict[str, Any]],
) -> None:
    ctx, summary = topped_up
    teacher = CountingTeacher(inner=EchoingTeacher())
    again = generate.run(ctx, teacher)
    assert teacher.calls == [] and again.reused
    assert again.summary["reused_shards"] == again.summary["shards"] == summary["shards"]
    assert again.summary["screened_accepted"] == summary["screened_accepted"]


def test_without_top_up_rounds_the_stage_stops_short_and_says_why(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, maxTopUpRounds=0, **SIX_SHARDS)
    progress = with_progress(ctx)
    summary = generate.run(ctx, EchoingTeacher()).summary
    assert summary["rounds"] == 1 and summary["screened_accepted"] == 180
    assert "180 of 240 accepted; no more top-up rounds (teacher.maxTopUpRounds: 0)" in notes(
        progress
    )


class FadingTeacher(EchoingTeacher):
    """`EchoingTeacher` whose top-up shards (after the first six) return only half of what they
    write: one top-up round, sized from the first round's yield, cannot reach the target."""

    def write_shard(self, request: ShardRequest) -> ShardOutput:
        output = super().write_shard(request)
        if request.index < 6:
            return output
        return output.model_copy(update={"examples": output.examples[: len(output.examples) // 2]})


def test_the_round_cap_is_respected(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, maxTopUpRounds=1, **SIX_SHARDS)
    progress = with_progress(ctx)
    summary = generate.run(ctx, FadingTeacher()).summary
    assert summary["rounds"] == 2 and summary["screened_accepted"] < 240
    assert any("teacher.maxTopUpRounds: 1" in n for n in notes(progress))


@dataclass
class RepeatingTeacher:
    """Writes the same valid query in every shard: after the first, nothing new is accepted."""

    calls: list[int] = field(default_factory=list)
    name: str = "repeating"

    @property
    def parameters(self) -> dict[str, Any]:
        return {}

    def write_shard(self, request: ShardRequest) -> ShardOutput:
        self.calls.append(request.index)
        example = GeneratedExample(
            id=f"{request.key}-000",
            shard=request.key,
            question="How many customers are there?",
            sql="SELECT COUNT(*) FROM customers",
            teacher=self.name,
        )
        return ShardOutput(key=request.key, examples=[example])


def test_a_teacher_that_adds_nothing_new_stops_the_rounds(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, targetExamples=3, examplesPerShard=1)
    progress = with_progress(ctx)
    teacher = RepeatingTeacher()
    summary = generate.run(ctx, teacher).summary
    # round 0 (3 shards) accepts 1; round 1 (one shard at that yield... capped at 3) adds none
    assert summary["rounds"] == 2 and summary["screened_accepted"] == 1
    assert teacher.calls == [0, 1, 2, 3, 4, 5]
    assert "1 of 3 accepted; round 1 added none, so no more rounds" in notes(progress)


@dataclass
class PricedTeacher:
    """The synthetic teacher at a fixed price per shard, with an estimate the stage can budget
    by (a GovernedTeacher whose worst case is `worst` per shard)."""

    price: Decimal = Decimal("0.03")
    worst: Decimal = Decimal("0.05")
    calls: list[int] = field(default_factory=list)
    inner: SyntheticTeacher = field(default_factory=EchoingTeacher)
    name: str = "priced"

    @property
    def parameters(self) -> dict[str, Any]:
        return self.inner.parameters

    def with_governor(self, governor: GovernorClient) -> Teacher:
        return self

    def estimate(
        self, requests: Sequence[ShardRequest], limits: RateLimits, *, batch: bool
    ) -> CostEstimate:
        return CostEstimate(
            requests=len(requests),
            input_tokens=0,
            cache_write_tokens=0,
            cache_read_tokens=0,
            output_tokens=0,
            usd=self.price * len(requests),
            worst_usd=self.worst * len(requests),
            batch=batch,
            realtime_minutes=0.0,
        )

    def write_shard(self, request: ShardRequest) -> ShardOutput:
        self.calls.append(request.index)
        output = self.inner.write_shard(request)
        return output.model_copy(update={"usage": Usage(usd=float(self.price), requests=1)})


@pytest.mark.parametrize(
    ("max_usd", "top_up_shards"),
    [(0.2, 0), (0.25, 1)],  # round 0 costs 0.18; a top-up shard may cost up to 0.05
)
def test_top_up_rounds_plan_only_what_the_budget_left_pays_for(
    tmp_path: Path, max_usd: float, top_up_shards: int
) -> None:
    ctx = make_context(tmp_path, budget={"maxUSD": max_usd}, **SIX_SHARDS)
    progress = with_progress(ctx)
    teacher = PricedTeacher()
    summary = generate.run(ctx, teacher).summary
    assert sorted(teacher.calls) == list(range(6 + top_up_shards))
    assert summary["screened_accepted"] < 240
    assert any(n.startswith("budget reached: ") and "of 240 accepted" in n for n in notes(progress))


def test_a_stage_killed_in_a_top_up_round_pays_only_for_what_is_missing(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, **SIX_SHARDS)
    with pytest.raises(StageFailed) as failed:
        # the second shard of round 1
        generate.run(ctx, CountingTeacher(fail_at=7, inner=EchoingTeacher()))
    assert failed.value.reason == "TeacherFailed"
    stored_rounds = ctx.store.list_keys(generate.ROUNDS_PREFIX)
    assert len(stored_rounds) == 1
    resumed = CountingTeacher(inner=EchoingTeacher())
    summary = generate.run(ctx, resumed).summary
    assert 7 in resumed.calls and not set(resumed.calls) & {0, 1, 2, 3, 4, 5, 6}
    assert ctx.store.list_keys(generate.ROUNDS_PREFIX)[0] == stored_rounds[0]
    assert summary["screened_accepted"] >= 240


class CountingSandboxes:
    """Counts the sandboxes the judging module opens."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = 0
        real = judging.open_sandbox

        def counting(*args: Any) -> AbstractContextManager[Any]:
            self.opened += 1
            return real(*args)

        monkeypatch.setattr(judging, "open_sandbox", counting)


def test_validate_reuses_the_judgments_generate_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = make_context(tmp_path)
    generate.run(ctx, SyntheticTeacher())
    sandboxes = CountingSandboxes(monkeypatch)
    result = validate.run(ctx)
    assert sandboxes.opened == 0 and result.summary["accepted"] > 0
    # a setting that does not change a verdict keeps the judgments
    reshuffled = with_validation(ctx, holdout_fraction=0.3)
    assert not validate.run(reshuffled).reused and sandboxes.opened == 0


def test_a_changed_validation_spec_judges_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # six shards: some of their queries look for values the seed rows do not hold
    ctx = make_context(tmp_path, **SIX_SHARDS, maxTopUpRounds=0)
    generate.run(ctx, SyntheticTeacher())
    before = validate.run(ctx).summary
    sandboxes = CountingSandboxes(monkeypatch)
    strict = with_validation(ctx, reject_empty_results=True)
    after = validate.run(strict).summary
    assert sandboxes.opened > 0
    assert after["rejected"].get("empty_result", 0) > 0
    assert after["accepted"] < before["accepted"]


def test_a_stale_judgment_entry_is_judged_again(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    generate.run(ctx, SyntheticTeacher())
    plan = ctx.store.get_json(generate.MANIFEST_KEY)["plan"]
    entry = ctx.store.get_json(judging.judged_object_key(plan[0]))
    ctx.store.put_json(judging.judged_object_key(plan[0]), {**entry, "fingerprint": "old"})
    assert validate.run(ctx).summary["generated"] == 60
    judged_again = ctx.store.get_json(judging.judged_object_key(plan[0]))
    assert judged_again["fingerprint"] == entry["fingerprint"]

    def verdicts(e: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
        return [(j["id"], j["verdict"]["reason"], j["normalized"]) for j in e["judged"]]

    assert verdicts(judged_again) == verdicts(entry)


def test_a_repeated_query_is_executed_once_and_its_verdict_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    executed: list[str] = []
    real = judging.execute_checked

    def counting(checked: Any, sandbox: Any, **kwargs: Any) -> Any:
        executed.append(checked.sql)
        return real(checked, sandbox, **kwargs)

    monkeypatch.setattr(judging, "execute_checked", counting)
    monkeypatch.setattr(judging, "CHUNK_SIZE", 10_000)  # one chunk, one sandbox
    ctx = make_context(tmp_path, **SIX_SHARDS, maxTopUpRounds=0)
    generate.run(ctx, EchoingTeacher())
    result = validate.run(ctx)

    assert result.summary["rejected"]["duplicate"] > 0  # the teacher did repeat itself
    assert len(executed) == len(set(executed)) < result.summary["generated"]
    verdicts: dict[str, set[str]] = {}
    for key in ctx.store.get_json(generate.MANIFEST_KEY)["plan"]:
        shard = ShardOutput.model_validate_json(ctx.store.get_bytes(generate.shard_object_key(key)))
        judged = ctx.store.get_json(judging.judged_object_key(key))["judged"]
        for example, one in zip(shard.examples, judged, strict=True):
            verdict = json.dumps(one["verdict"], sort_keys=True)
            verdicts.setdefault(" ".join(example.sql.split()), set()).add(verdict)
    assert len(verdicts) < result.summary["generated"]
    assert all(len(seen) == 1 for seen in verdicts.values())
