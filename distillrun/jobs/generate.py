"""The generate stage: the teacher writes examples, one shard at a time, in parallel.

The plan is a list of shard keys (`teacher.base.shard_key`), fixed by the spec alone. A shard is
committed as one object, `generate/shards/<key>.json`, written put-if-absent the moment the
teacher returns it; a restarted stage lists what is committed and asks the teacher only for the
rest, so a finished shard is never paid for twice. `generate/_manifest.json` sums up the plan.

LLM teachers get one rate governor and budget keeper for the whole stage (`teacher.governor`:
a Ray actor when the shards are Ray tasks), started with what the committed shards already
cost, so the budget holds across restarts. A shard that fails does not lose the others: the
stage keeps collecting and committing every shard still in flight, then fails with the reason
(`BudgetExhausted`, `TeacherAuthFailed`, ... see `teacher.errors`); a stop reason makes the
remaining shards fail fast instead of calling the teacher.

A reply that holds no usable example (empty, refused, not JSON, cut before the first one) is not
a shard: committing it would mark the shard done and reuse nothing forever. It is kept under
`generate/unusable/<key>/` instead (its cost still counts against the budget, across restarts
too), the shard stays missing, and the stage fails with `TeacherReplyUnusable`, quoting the
reply, once the shards in flight are committed; a rerun asks for that shard again. Empty shards
committed by earlier versions are moved there too when the stage starts, so they are asked again.

In batch mode the missing shards go to the provider's batch API as one batch; its id is stored
under `generate/batches/<id>.json` *before* the stage waits for it, so a restarted stage finds
the record and resumes waiting on the same batch instead of submitting (and paying for) a new
one. Shards a batch could not write (errored, expired) are written in realtime afterwards.

Top-up rounds: the plan above is round 0. After a round is committed its shards are judged
(`jobs.judging`, whose stored judgments validate reuses) and screened exactly as validate will,
so the stage knows how many examples will be accepted. While that is short of
`targetExamples`, the last round added some, and `teacher.maxTopUpRounds` allows, it plans
another round (`jobs.topup`: sized from the deficit and the yield, each shard focused on
under-covered tables and constructs) and stores it under `generate/rounds/` *before* asking for
any of it, keyed by the shards before it; a restarted stage replays the stored rounds, so it
asks only for shards not committed and never plans a round twice. With a priced teacher a
round holds only the shards the budget left can pay for at their worst case; when none fits,
the stage stops topping up and succeeds with what it has.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from distillrun.api.failures import FailureReason
from distillrun.api.layout import (
    BATCHES_PREFIX,
    MANIFEST_KEY,
    ROUNDS_PREFIX,
    SHARDS_PREFIX,
    UNUSABLE_PREFIX,
    shard_object_key,
)
from distillrun.api.spec import RateLimits, TeacherMode, TeacherSpec
from distillrun.api.status import StageName
from distillrun.jobs.context import StageContext, StageFailed, StageResult
from distillrun.jobs.judging import Judged, judge_shards, screen
from distillrun.jobs.parallel import Executor, InlineExecutor, RayExecutor
from distillrun.jobs.topup import Focus, shard_focus, top_up_shards, under_covered
from distillrun.sql.constructs import CONSTRUCTS
from distillrun.store import Store
from distillrun.teacher.accounting import usage_sum
from distillrun.teacher.base import ShardOutput, ShardRequest, Teacher, Usage, shard_key
from distillrun.teacher.errors import BudgetExhausted, TeacherFailed, TeacherStop
from distillrun.teacher.estimate import CostEstimate
from distillrun.teacher.governor import GovernorClient, Reservation, open_governor
from distillrun.teacher.pricing import from_usd

BATCH_POLL_INTERVAL_S = 30.0
BATCH_WINDOW_HOURS = 24.0
"""The Batches API's promise: every request ends (succeeded, errored or expired) within 24 h."""
AUTO_BATCH_AFTER_MINUTES = 30.0
"""`mode: auto` without `deadlineHours` sends a batch when realtime would take longer than this
at the account's rate limits: a batch then costs half and usually finishes no later."""


def auto_uses_batch(realtime_minutes: float, deadline_hours: float | None) -> bool:
    """`mode: auto`'s choice. A deadline of at least the batch window lets the Batches API's
    promise hold, so the cheaper batch is taken; a shorter one could be missed by a batch, so
    realtime. Without a deadline, batch only when realtime would be slow anyway."""
    if deadline_hours is not None:
        return deadline_hours >= BATCH_WINDOW_HOURS
    return realtime_minutes > AUTO_BATCH_AFTER_MINUTES


@runtime_checkable
class GovernedTeacher(Protocol):
    """A teacher whose calls go through the stage's governor (limits and budget)."""

    def with_governor(self, governor: GovernorClient) -> Teacher: ...

    def estimate(
        self, requests: Sequence[ShardRequest], limits: RateLimits, *, batch: bool
    ) -> CostEstimate: ...


class BatchResultsLike(Protocol):
    outputs: dict[str, ShardOutput]
    failed: dict[str, str]
    cost: Decimal


@runtime_checkable
class BatchTeacher(Protocol):
    """A teacher that can also write shards through a provider's batch API."""

    mode: TeacherMode

    def batch_worst_case(self, requests: Sequence[ShardRequest]) -> Decimal: ...

    def submit_batch(self, requests: Sequence[ShardRequest]) -> str: ...

    def collect_batch(
        self, batch_id: str, requests: Mapping[str, ShardRequest], poll_interval_s: float
    ) -> BatchResultsLike: ...


def _request(ctx: StageContext, teacher: Teacher, index: int, focus: Focus) -> ShardRequest:
    spec = ctx.run.spec.teacher
    questions = tuple(ctx.run.spec.seed_questions)
    key = shard_key(
        ctx.schema,
        questions,
        teacher,
        spec.seed,
        spec.examples_per_shard,
        index,
        focus.tables,
        focus.constructs,
    )
    return ShardRequest(
        key=key,
        index=index,
        count=spec.examples_per_shard,
        seed=spec.seed,
        schema=ctx.schema,
        seed_questions=questions,
        reasoning=spec.reasoning,
        focus_tables=focus.tables,
        focus_constructs=focus.constructs,
    )


def plan_shards(ctx: StageContext, teacher: Teacher) -> list[ShardRequest]:
    """The first round: every shard `targetExamples` needs if all were accepted, in index
    order; a pure function of the spec and schema."""
    spec = ctx.run.spec.teacher
    count = math.ceil(spec.target_examples / spec.examples_per_shard)
    return [_request(ctx, teacher, i, Focus()) for i in range(count)]


def _committed(ctx: StageContext) -> set[str]:
    return {
        key.removeprefix(SHARDS_PREFIX).removesuffix(".json")
        for key in ctx.store.list_keys(SHARDS_PREFIX)
    }


def _missing(ctx: StageContext, plan: list[ShardRequest]) -> list[ShardRequest]:
    committed = _committed(ctx)
    return [r for r in plan if r.key not in committed]


def _use_batch(teacher: Teacher, missing: Sequence[ShardRequest], spec: TeacherSpec) -> bool:
    """Whether the missing shards go through the batch API (see `auto_uses_batch`)."""
    if not isinstance(teacher, BatchTeacher) or not missing:
        return False
    if teacher.mode != TeacherMode.AUTO:
        return bool(teacher.mode == TeacherMode.BATCH)
    if not isinstance(teacher, GovernedTeacher):
        return False
    realtime = teacher.estimate(missing, spec.rate_limits, batch=False)
    return auto_uses_batch(realtime.realtime_minutes, spec.deadline_hours)


def preflight(ctx: StageContext, teacher: Teacher) -> CostEstimate | None:
    """What the first round's missing shards should cost, before any call (None: the teacher
    is free). Top-up rounds come on top, each planned within the budget left."""
    if not isinstance(teacher, GovernedTeacher):
        return None
    spec = ctx.run.spec.teacher
    missing = _missing(ctx, plan_shards(ctx, teacher))
    return teacher.estimate(missing, spec.rate_limits, batch=_use_batch(teacher, missing, spec))


@dataclass(frozen=True)
class _ShardJob:
    """A picklable unit of work for an executor: the teacher and the request."""

    teacher: Teacher
    request: ShardRequest


@dataclass(frozen=True)
class _ShardFailure:
    """A shard the teacher could not write; returned, not raised, so the stage keeps
    committing the shards that were written."""

    reason: str
    message: str


def _write_shard(job: _ShardJob) -> ShardOutput | _ShardFailure:
    try:
        return job.teacher.write_shard(job.request)
    except TeacherStop as stop:
        return _ShardFailure(stop.reason, str(stop))
    except Exception as exc:
        return _ShardFailure(FailureReason.TEACHER_FAILED, f"{type(exc).__name__}: {exc}")


class _Progress:
    """Commits shards and counts them, for the live display and the final message."""

    def __init__(self, ctx: StageContext, total: int, done: int) -> None:
        self.ctx = ctx
        self.total = total
        self.done = done
        self.failure: _ShardFailure | None = None
        self._show()

    def _show(self) -> None:
        self.ctx.progress.counts(StageName.GENERATE, {"shards": self.done}, total=self.total)

    def commit(self, output: ShardOutput) -> None:
        """Commits a shard with examples; keeps a reply without any aside (module docstring)."""
        if not output.examples:
            self.fail(_unusable(self.ctx, output))
            return
        self.ctx.store.put_bytes(
            shard_object_key(output.key), output.model_dump_json().encode(), if_absent=True
        )
        self.done += 1
        self._show()

    def fail(self, failure: _ShardFailure) -> None:
        """Keeps the first specific stop reason (it explains the others), else the first
        failure."""
        if self.failure is None or (
            self.failure.reason == TeacherFailed.reason and failure.reason != TeacherFailed.reason
        ):
            self.failure = failure


UNUSABLE_REASON = "TeacherReplyUnusable"
QUOTED_REPLY_CHARS = 120
"""How much of an unusable reply the failure message quotes (the kept reply has more)."""


def _unusable(ctx: StageContext, output: ShardOutput) -> _ShardFailure:
    """Stores a reply that yielded no example (not as the shard) and says what was wrong with
    it, in the teacher's own words where it gave some."""
    key = f"{UNUSABLE_PREFIX}{output.key}/{secrets.token_hex(6)}.json"
    ctx.store.put_bytes(key, output.model_dump_json().encode(), if_absent=True)
    problem = output.malformed[0] if output.malformed else {}
    stop = f", stop reason {problem['stop_reason']!r}" if problem.get("stop_reason") else ""
    item = problem.get("item")
    quoted = f": {str(item)[:QUOTED_REPLY_CHARS]!r}" if item else ""
    return _ShardFailure(
        UNUSABLE_REASON,
        f"the teacher's reply for shard {output.key} held no usable example "
        f"({problem.get('reason', 'empty')}{stop}: {problem.get('detail', 'no content')}"
        f"{quoted}); the reply is kept at {ctx.store.url(key)} and the shard is not "
        "committed, so a rerun asks the teacher for it again",
    )


def _set_aside_empty(ctx: StageContext, requests: Sequence[ShardRequest]) -> None:
    """Moves committed shards without an example (committed so by versions that did not keep
    such replies aside) to where unusable replies go, so they are asked for again."""
    committed = _committed(ctx)
    for request in (r for r in requests if r.key in committed):
        shard = _read(ctx, request.key)
        if not shard.examples:
            _unusable(ctx, shard)
            ctx.store.delete(shard_object_key(request.key))


def _realtime(
    teacher: Teacher, requests: list[ShardRequest], executor: Executor, progress: _Progress
) -> None:
    jobs = [_ShardJob(teacher, r) for r in requests]
    for _, outcome in executor.map_unordered(_write_shard, jobs):
        if isinstance(outcome, ShardOutput):
            progress.commit(outcome)
        else:
            progress.fail(outcome)


def _batch_records(ctx: StageContext) -> list[dict[str, Any]]:
    return [ctx.store.get_json(key) for key in sorted(ctx.store.list_keys(BATCHES_PREFIX))]


def _submit(
    ctx: StageContext,
    teacher: BatchTeacher,
    requests: list[ShardRequest],
    governor: GovernorClient,
) -> tuple[dict[str, Any], Reservation] | None:
    """Reserves budget shard by shard, submits what fits as one batch and records its id
    before anything waits on it. What does not fit the budget stops the governor, so it is
    not sent afterwards at realtime prices (the stage then fails with BudgetExhausted); what
    fit is still submitted."""
    chosen: list[ShardRequest] = []
    worst = Decimal(0)
    for request in requests:
        cost = teacher.batch_worst_case([request])
        try:
            governor.reserve(cost, wait=False)  # what is in flight is this batch itself
        except BudgetExhausted as refused:
            governor.stop(refused)
            break
        chosen.append(request)
        worst += cost
    if not chosen:
        return None
    batch_id = teacher.submit_batch(chosen)
    record = {
        "id": batch_id,
        "shards": [r.key for r in chosen],
        "worst_usd": str(worst),
        "submitted_at": datetime.now(UTC).isoformat(),
    }
    ctx.store.put_json(f"{BATCHES_PREFIX}{batch_id}.json", record, if_absent=True)
    return record, Reservation(worst)


def _batches(
    ctx: StageContext,
    teacher: BatchTeacher,
    missing: list[ShardRequest],
    governor: GovernorClient,
    progress: _Progress,
    poll_interval_s: float,
) -> list[ShardRequest]:
    """Writes `missing` through batches (resuming recorded ones); returns what is left."""
    by_key = {r.key: r for r in missing}
    waiting: list[tuple[dict[str, Any], Reservation]] = []
    for record in _batch_records(ctx):
        if any(key in by_key for key in record["shards"]):
            # Submitted before a restart: already paid for, so it is reserved whatever the
            # budget says now; it is waited on again, never resubmitted.
            waiting.append((record, governor.reserve_committed(Decimal(record["worst_usd"]))))
    covered = {key for record, _ in waiting for key in record["shards"]}
    new = [r for r in missing if r.key not in covered]
    submitted = _submit(ctx, teacher, new, governor) if new else None
    if submitted is not None:
        waiting.append(submitted)
        record = submitted[0]
        ctx.progress.note(
            StageName.GENERATE, f"batch {record['id']}: {len(record['shards'])} shard(s)"
        )
    for record, reservation in waiting:
        mine = {key: by_key[key] for key in record["shards"] if key in by_key}
        results = teacher.collect_batch(record["id"], mine, poll_interval_s)
        governor.spend(reservation, results.cost)
        for output in results.outputs.values():
            progress.commit(output)
        for key, why in results.failed.items():
            ctx.progress.note(StageName.GENERATE, f"shard {key}: {why} in batch; will retry")
    done = _committed(ctx)
    return [r for r in missing if r.key not in done]


def _generate(
    ctx: StageContext,
    teacher: Teacher,
    missing: list[ShardRequest],
    executor: Executor,
    progress: _Progress,
    poll_interval_s: float,
) -> dict[str, Any]:
    """Writes the missing shards through one governor; returns the governor's numbers."""
    spec = ctx.run.spec.teacher
    if not isinstance(teacher, GovernedTeacher):
        _realtime(teacher, missing, executor, progress)
        return {}
    use_batch = _use_batch(teacher, missing, spec)
    spent = _spent(ctx)
    budget = Decimal(str(spec.budget.max_usd))
    use_ray = isinstance(executor, RayExecutor)
    with open_governor(spec.rate_limits, budget, spent, use_ray=use_ray) as governor:
        governed = teacher.with_governor(governor)
        left: list[ShardRequest] = missing
        if use_batch and isinstance(governed, BatchTeacher):
            try:
                left = _batches(ctx, governed, missing, governor, progress, poll_interval_s)
            except TeacherStop as stop:
                progress.fail(_ShardFailure(stop.reason, str(stop)))
                left = []
        _realtime(governed, left, executor, progress)
        return {"mode": "batch" if use_batch else "realtime", **governor.snapshot()}


def unusable_replies(store: Store) -> list[ShardOutput]:
    """Every reply kept aside as unusable in a run's store, by this run and the ones before."""
    return [
        ShardOutput.model_validate_json(store.get_bytes(key))
        for key in store.list_keys(UNUSABLE_PREFIX)
    ]


def _spent(ctx: StageContext) -> Decimal:
    """What the teacher cost so far, exactly: the committed shards and the unusable replies."""
    paid = [*(_read(ctx, key) for key in _committed(ctx)), *unusable_replies(ctx.store)]
    return sum((from_usd(output.usage.usd) for output in paid), Decimal(0))


def _read(ctx: StageContext, key: str) -> ShardOutput:
    return ShardOutput.model_validate_json(ctx.store.get_bytes(shard_object_key(key)))


def _total(outputs: Iterable[ShardOutput]) -> tuple[Usage, int, Counter[str]]:
    """Summed usage (dollars summed exactly), examples and problems by reason."""
    items = list(outputs)
    problems = Counter(str(p.get("reason", "unknown")) for o in items for p in o.malformed)
    return usage_sum(o.usage for o in items), sum(len(o.examples) for o in items), problems


@dataclass(frozen=True)
class _Written:
    """What writing one round's shards did."""

    reused: int
    calls: int
    governor: dict[str, Any]


def _write_round(
    ctx: StageContext,
    teacher: Teacher,
    requests: list[ShardRequest],
    executor: Executor,
    poll_interval_s: float,
    committed_before: int,
) -> _Written:
    """Writes the round's missing shards; raises StageFailed (after committing everything in
    flight) when the teacher stops. `committed_before` counts the earlier rounds' shards, for
    the progress bar and the failure message."""
    _set_aside_empty(ctx, requests)
    missing = _missing(ctx, requests)
    reused = len(requests) - len(missing)
    if reused:
        ctx.progress.note(StageName.GENERATE, f"reusing {reused} committed shard(s)")
    total = committed_before + len(requests)
    progress = _Progress(ctx, total, committed_before + reused)
    governor = (
        _generate(ctx, teacher, missing, executor, progress, poll_interval_s) if missing else {}
    )
    if progress.failure is not None:
        raise StageFailed(
            StageName.GENERATE,
            progress.failure.reason,
            f"{progress.failure.message} ({progress.done} of {total} shards are committed "
            "and will be reused)",
        )
    return _Written(reused, progress.done - committed_before - reused, governor)


def _round_key(number: int, before: Sequence[ShardRequest]) -> str:
    """Where round `number` is stored: keyed by the shards before it, so a changed spec (other
    shards before it) plans afresh instead of replaying a round planned for other data."""
    digest = hashlib.sha256(json.dumps([r.key for r in before]).encode()).hexdigest()[:16]
    return f"{ROUNDS_PREFIX}{number:03d}-{digest}.json"


def _affordable(ctx: StageContext, teacher: Teacher, requests: list[ShardRequest]) -> int:
    """How many of `requests` (in order) the budget left pays for at their worst case."""
    if not isinstance(teacher, GovernedTeacher):
        return len(requests)
    spec = ctx.run.spec.teacher
    left = Decimal(str(spec.budget.max_usd)) - _spent(ctx)
    batch = _use_batch(teacher, requests, spec)
    fits = 0
    for request in requests:
        left -= teacher.estimate([request], spec.rate_limits, batch=batch).worst_usd
        if left < 0:
            break
        fits += 1
    return fits


def _next_round(
    ctx: StageContext,
    teacher: Teacher,
    number: int,
    plan: list[ShardRequest],
    accepted: list[Judged],
    gained: int,
) -> list[ShardRequest]:
    """The shards of top-up round `number` (stored ones replayed), or [] with a note on why
    the stage stops here."""
    spec = ctx.run.spec.teacher
    target = spec.target_examples
    have = len(accepted)
    if have >= target:
        return []
    short = f"{have} of {target} accepted"
    if number > spec.max_top_up_rounds:
        why = f"{short}; no more top-up rounds (teacher.maxTopUpRounds: {spec.max_top_up_rounds})"
        ctx.progress.note(StageName.GENERATE, why)
        return []
    if gained <= 0:
        ctx.progress.note(
            StageName.GENERATE, f"{short}; round {number - 1} added none, so no more rounds"
        )
        return []
    key = _round_key(number, plan)
    if ctx.store.exists(key):
        record = ctx.store.get_json(key)
    else:
        record = _plan_round(ctx, teacher, number, plan, accepted)
        if record is None:
            ctx.progress.note(StageName.GENERATE, f"budget reached: {short}")
            return []
        ctx.store.put_json(key, record, if_absent=True)
        record = ctx.store.get_json(key)  # another writer's record wins a race
    requests = [
        _request(ctx, teacher, s["index"], Focus(tuple(s["tables"]), tuple(s["constructs"])))
        for s in record["shards"]
    ]
    focus = Focus(tuple(record["focus"]["tables"]), tuple(record["focus"]["constructs"]))
    ctx.progress.note(
        StageName.GENERATE,
        f"round {number}: {len(requests)} shard(s) for {target - have} missing; "
        f"focus: {focus.describe()}",
    )
    return requests


def _plan_round(
    ctx: StageContext,
    teacher: Teacher,
    number: int,
    plan: list[ShardRequest],
    accepted: list[Judged],
) -> dict[str, Any] | None:
    """A new top-up round's record, or None when the budget pays for no shard of it."""
    spec = ctx.run.spec.teacher
    missing = spec.target_examples - len(accepted)
    size = top_up_shards(
        missing,
        len(accepted),
        sum(r.count for r in plan),
        spec.examples_per_shard,
        most=len(plan_shards(ctx, teacher)),
    )
    under = under_covered(accepted, [t.name for t in ctx.schema.tables], list(CONSTRUCTS))
    first = max(r.index for r in plan) + 1
    requests = [_request(ctx, teacher, first + j, shard_focus(under, j)) for j in range(size)]
    fits = _affordable(ctx, teacher, requests)
    if not fits:
        return None
    return {
        "round": number,
        "missing": missing,
        "focus": {"tables": list(under.tables), "constructs": list(under.constructs)},
        "shards": [
            {
                "key": r.key,
                "index": r.index,
                "tables": list(r.focus_tables),
                "constructs": list(r.focus_constructs),
            }
            for r in requests[:fits]
        ],
    }


def run(
    ctx: StageContext,
    teacher: Teacher,
    executor: Executor | None = None,
    *,
    poll_interval_s: float = BATCH_POLL_INTERVAL_S,
) -> StageResult:
    """Writes every missing shard of the plan, a round at a time (see the module docstring),
    committing each shard as soon as it is written."""
    executor = executor or InlineExecutor()
    dedup = ctx.run.spec.validation.dedup
    plan: list[ShardRequest] = []
    judged: list[Judged] = []
    rounds: list[dict[str, Any]] = []
    reused = calls = 0
    governor: dict[str, Any] = {}
    accepted: list[Judged] = []
    requests = plan_shards(ctx, teacher)
    while requests:
        written = _write_round(ctx, teacher, requests, executor, poll_interval_s, len(plan))
        reused += written.reused
        calls += written.calls
        governor = written.governor or governor
        plan += requests
        outputs = [_read(ctx, r.key) for r in requests]
        judged += [j for shard in judge_shards(ctx, outputs, executor) for j in shard]
        before = len(accepted)
        accepted = screen(judged, dedup).accepted
        rounds.append(
            {"round": len(rounds), "shards": len(requests), "accepted": len(accepted) - before}
        )
        ctx.progress.counts(
            StageName.GENERATE,
            {"shards": len(plan), "screened_accepted": len(accepted)},
            total=len(plan),
        )
        requests = _next_round(ctx, teacher, len(rounds), plan, accepted, len(accepted) - before)

    usage, examples, problems = _total(_read(ctx, r.key) for r in plan)
    unusable = unusable_replies(ctx.store)
    usage = usage_sum([usage, *(reply.usage for reply in unusable)])  # paid for all the same
    summary = {
        "teacher": teacher.name,
        "shards": len(plan),
        "reused_shards": reused,
        "teacher_calls": calls,
        "rounds": len(rounds),
        "generated": examples,
        "screened_accepted": len(accepted),
        "malformed": sum(problems.values()),
        "malformed_by_reason": dict(sorted(problems.items())),
        "unusable_replies": len(unusable),
        "usage": usage.model_dump(),
    }
    manifest = {
        **summary,
        "parameters": teacher.parameters,
        "governor": governor,
        "plan": [r.key for r in plan],
        "by_round": rounds,
    }
    ctx.store.put_json(MANIFEST_KEY, manifest)
    ctx.progress.counts(
        StageName.GENERATE,
        {"shards": len(plan), "generated": examples, "screened_accepted": len(accepted)},
    )
    return StageResult(StageName.GENERATE, summary, reused=calls == 0)
