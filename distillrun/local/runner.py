"""The local runner: every stage of one DistillRun, in order, on a local Ray.

It resolves the manifest's inputs, checks them before anything expensive starts, writes the
resolved spec to the store, then runs generate → validate → train → evaluate. Parallel pieces
(teacher shards, validation chunks) are Ray tasks; the status is recomputed after every stage
and written to `status.json` in the run's store prefix, so `distillrun status` and a rerun see
where it stands. A failing stage ends the run with its reason; what it committed stays. At the
end, finished or failed, the run's report page is built from what is in the store.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from distillrun.api.errors import FieldProblem, ManifestError
from distillrun.api.failures import FailureReason
from distillrun.api.layout import SPEC_KEY, STATUS_KEY, crash_key
from distillrun.api.resource import DistillRun, load_run
from distillrun.api.status import DistillRunStatus, StageName
from distillrun.api.transitions import run_succeeded, stage_failed, stage_started, stage_succeeded
from distillrun.jobs import evaluate, generate, train, validate
from distillrun.jobs.context import ProgressSink, StageContext, StageFailed, StageResult
from distillrun.jobs.inputs import load_inputs, with_inline_sources
from distillrun.jobs.parallel import Executor, InlineExecutor, RayExecutor
from distillrun.local.preflight import check_local_run, resolve_gold_set
from distillrun.local.summary import describe_result
from distillrun.store import Store, open_store
from distillrun.store.lease import Lease, held
from distillrun.teacher.base import Teacher
from distillrun.teacher.factory import TeacherUnavailable, falls_back, make_teacher, missing_key

DEFAULT_STORE = "distillrun-artifacts"  # a plain path: relative to the working directory
LOCAL_UID = "local"


@dataclass
class RunOutcome:
    """How a local run ended: results per finished stage, and the failure if there was one."""

    run: DistillRun
    store: Store
    status: DistillRunStatus
    results: dict[StageName, StageResult] = field(default_factory=dict)
    failure: StageFailed | None = None
    report_problem: str | None = None
    """Why the report page could not be built, when it could not (the run's outcome stands)."""

    @property
    def succeeded(self) -> bool:
        return self.failure is None

    @property
    def interrupted(self) -> bool:
        return self.failure is not None and self.failure.reason == FailureReason.INTERRUPTED


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_key(run: DistillRun, source: str, progress: ProgressSink) -> None:
    """Refuses a run whose teacher needs an API key that is not set, naming the variable,
    unless the spec asks for the synthetic fallback (`teacher.factory`), which is then said."""
    spec = run.spec.teacher
    variable = missing_key(spec)
    if variable is None:
        return
    if falls_back(spec):
        progress.note(
            StageName.GENERATE,
            f"{variable} is not set: the offline synthetic teacher writes the examples instead "
            f"of {spec.provider} {spec.model} (spec.teacher.fallbackToSynthetic)",
        )
        return
    problem = (
        f"{variable} is not set, and the {spec.provider} teacher needs it: export it, or set "
        "spec.teacher.fallbackToSynthetic: true to use the offline synthetic teacher instead"
    )
    raise ManifestError(source, [FieldProblem("spec.teacher.provider", problem)])


def prepare(
    manifest: Path,
    store_uri: str | None,
    progress: ProgressSink,
    *,
    accept_estimate: bool = False,
) -> StageContext:
    """Loads and checks everything a run needs; raises ManifestError naming the field at fault.
    An LLM teacher's cost is estimated here, before any call (see `_check_estimate`)."""
    source = str(manifest)
    run = load_run(manifest)
    schema, seed_sql = load_inputs(run, manifest.parent, source)
    check_local_run(run, schema, manifest.parent, source)
    _check_key(run, source, progress)
    run = resolve_gold_set(run, manifest.parent)
    run = with_inline_sources(run, schema.ddl, seed_sql)
    try:
        teacher = make_teacher(run.spec.teacher)
    except TeacherUnavailable as exc:
        raise ManifestError(source, [FieldProblem(exc.field, str(exc))]) from None
    root = open_store(store_uri or run.spec.artifacts.uri or DEFAULT_STORE)
    meta = run.metadata
    store = root.sub(f"{meta.namespace}/{meta.name}/{meta.uid or LOCAL_UID}")
    ctx = StageContext(run=run, store=store, schema=schema, seed_sql=seed_sql, progress=progress)
    _check_estimate(ctx, teacher, source, accept_estimate)
    return ctx


def _check_estimate(ctx: StageContext, teacher: Teacher, source: str, accept: bool) -> None:
    """Shows what the shards still missing should cost, and refuses a run expected to cost more
    than `budget.maxUSD` unless told to proceed (the budget still caps the run either way)."""
    estimate = generate.preflight(ctx, teacher)
    if estimate is None:
        return
    teacher_spec = ctx.run.spec.teacher
    budget = teacher_spec.budget.max_usd
    ctx.progress.note(StageName.GENERATE, estimate.describe(budget))
    ctx.progress.note(
        StageName.GENERATE,
        f"a teacher request may take {teacher_spec.request_timeout_seconds:g} s and is tried "
        f"{teacher_spec.max_attempts} times (spec.teacher.requestTimeoutSeconds, maxAttempts)",
    )
    deadline = ctx.run.spec.teacher.deadline_hours
    if deadline is not None and not estimate.batch and estimate.realtime_minutes > deadline * 60:
        ctx.progress.note(
            StageName.GENERATE,
            f"warning: at the rate limits realtime needs at least {estimate.realtime_minutes:.0f} "
            f"min, beyond deadlineHours {deadline:g}; raise the limits or the deadline "
            "(24 or more lets mode auto use the cheaper Batches API)",
        )
    if estimate.usd > Decimal(str(budget)) and not accept:
        problem = (
            f"the estimated teacher cost ${estimate.usd:.2f} exceeds the budget ${budget:.2f}; "
            "raise maxUSD, lower targetExamples, or pass --accept-estimate to generate until "
            "the budget is spent"
        )
        raise ManifestError(source, [FieldProblem("spec.teacher.budget.maxUSD", problem)])


@contextmanager
def local_ray(num_cpus: int | None) -> Iterator[Executor]:
    """A Ray runtime for the run: started here and stopped after, or reused if already up."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        yield RayExecutor()
    finally:
        if started:
            ray.shutdown()


def _stages(
    ctx: StageContext, executor: Executor
) -> list[tuple[StageName, Callable[[], StageResult]]]:
    teacher = make_teacher(ctx.run.spec.teacher)
    return [
        (StageName.GENERATE, lambda: generate.run(ctx, teacher, executor)),
        (StageName.VALIDATE, lambda: validate.run(ctx, executor)),
        (StageName.TRAIN, lambda: train.run(ctx)),
        (StageName.EVALUATE, lambda: evaluate.run(ctx)),
    ]


def execute(ctx: StageContext, executor: Executor, lease: Lease | None = None) -> RunOutcome:
    """Runs the stages in order with `executor` for their parallel parts; with the run's
    `lease`, each stage starts only while it is still held. Ctrl-C ends the stage that runs as
    failed with reason Interrupted (not left Running), and the run's status and report are
    written as for any failure; a rerun resumes from what was committed."""
    status = DistillRunStatus()
    outcome = RunOutcome(run=ctx.run, store=ctx.store, status=status)
    for stage, call in _stages(ctx, executor):
        if lease is not None:
            lease.check()
        status = stage_started(status, stage, attempt=1, now=_now())
        ctx.store.put_json(STATUS_KEY, status.model_dump(mode="json", by_alias=True))
        started = time.monotonic()
        try:
            result = call()
        except StageFailed as named:
            outcome.failure = named
        except KeyboardInterrupt:
            outcome.failure = StageFailed(
                stage,
                FailureReason.INTERRUPTED,
                f"interrupted (Ctrl-C) during {stage}; run the same command again to resume "
                "from what was committed",
            )
        except Exception as exc:  # a bug, not a user mistake: keep the traceback in the store
            key = crash_key(stage)
            ctx.store.put_bytes(key, traceback.format_exc().encode())
            outcome.failure = StageFailed(
                stage,
                FailureReason.STAGE_CRASHED,
                f"{type(exc).__name__}: {exc} (traceback: {ctx.store.url(key)})",
            )
        if outcome.failure is not None:
            failure = outcome.failure
            status = stage_failed(
                status,
                stage,
                failure.reason,
                str(failure),
                attempts=1,
                now=_now(),
                summary=failure.summary,
            )
            break
        outcome.results[stage] = result
        ctx.progress.note(stage, describe_result(result, time.monotonic() - started))
        message = "reused committed outputs" if result.reused else "done"
        status = stage_succeeded(status, stage, result.summary, message=message, now=_now())
    else:
        status = run_succeeded(status, _now())
    with _finishing(interrupted=outcome.interrupted):
        ctx.store.put_json(STATUS_KEY, status.model_dump(mode="json", by_alias=True))
        outcome.status = _with_report(ctx, outcome, status)
    return outcome


@contextmanager
def _finishing(*, interrupted: bool) -> Iterator[None]:
    """After a Ctrl-C, a second one must not cut the status and report in half: SIGINT is
    ignored while they are written (from the main thread, where handlers can be set)."""
    if not interrupted or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _with_report(
    ctx: StageContext, outcome: RunOutcome, status: DistillRunStatus
) -> DistillRunStatus:
    """Builds the report page from what the run left in the store (a failed run too) and
    records where it is. The page is a view of the run, so failing to draw it never fails the
    run: the reason goes to the outcome and the traceback to errors/report.txt. Imported here:
    drawing needs matplotlib, which a run should not need to start."""
    try:
        from distillrun.report.build import build_report

        uri = build_report(ctx.store, schema=ctx.schema)
    except Exception as exc:
        key = crash_key("report")
        ctx.store.put_bytes(key, traceback.format_exc().encode())
        outcome.report_problem = f"{type(exc).__name__}: {exc} (traceback: {ctx.store.url(key)})"
        return status
    artifacts = status.artifacts.model_copy(update={"report": uri})
    status = status.model_copy(update={"artifacts": artifacts})
    ctx.store.put_json(STATUS_KEY, status.model_dump(mode="json", by_alias=True))
    return status


def run_manifest(
    manifest: Path,
    store_uri: str | None,
    progress: ProgressSink,
    *,
    use_ray: bool = True,
    num_cpus: int | None = None,
    accept_estimate: bool = False,
) -> RunOutcome:
    """`distillrun run`: prepares the run, then executes it on a local Ray (or inline)."""
    ctx = prepare(manifest, store_uri, progress, accept_estimate=accept_estimate)
    # Taking the lease is the run's first write: a store that cannot be written (no permission,
    # no bucket, no credentials) is found here, before the local Ray starts and anything is
    # paid; and only the lease holder writes, so a refused second run changes nothing.
    with held(ctx.store) as lease:  # one process per run: `store.lease`
        ctx.store.put_json(SPEC_KEY, ctx.run.to_wire())
        if lease.taken_from is not None:
            dead = lease.taken_from.describe(time.time())
            progress.note(StageName.GENERATE, f"took over the lease of a dead run: {dead}")
        if not use_ray:
            return execute(ctx, InlineExecutor(), lease)
        with local_ray(num_cpus) as executor:
            return execute(ctx, executor, lease)
