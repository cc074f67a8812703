"""The local runner: every stage of one DistillRun, in order, on a local Ray.

It resolves the manifest's inputs, checks them before anything expensive starts, writes the
resolved spec to the store, then runs generate → validate → train → evaluate. Parallel pieces
(teacher shards, validation chunks) are Ray tasks; the status is recomputed after every stage
and written to `status.json` in the run's store prefix, so `distillrun status` and a rerun see
where it stands. A failing stage ends the run with its reason; what it committed stays.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distillrun.api.errors import FieldProblem, ManifestError
from distillrun.api.resource import DistillRun, load_run
from distillrun.api.spec import TeacherProvider
from distillrun.api.status import DistillRunStatus, StageName
from distillrun.api.transitions import run_succeeded, stage_failed, stage_started, stage_succeeded
from distillrun.jobs import evaluate, generate, train, validate
from distillrun.jobs.context import ProgressSink, StageContext, StageFailed, StageResult
from distillrun.jobs.inputs import load_inputs
from distillrun.jobs.parallel import Executor, InlineExecutor, RayExecutor
from distillrun.store import Store, open_store
from distillrun.teacher.factory import TeacherUnavailable, make_teacher

DEFAULT_STORE = "file://./distillrun-artifacts"
LOCAL_UID = "local"
API_KEY_VARIABLES = {
    TeacherProvider.ANTHROPIC: "ANTHROPIC_API_KEY",
    TeacherProvider.OPENAI_COMPATIBLE: "OPENAI_API_KEY",
}


@dataclass
class RunOutcome:
    """How a local run ended: results per finished stage, and the failure if there was one."""

    run: DistillRun
    store: Store
    status: DistillRunStatus
    results: dict[StageName, StageResult] = field(default_factory=dict)
    failure: StageFailed | None = None

    @property
    def succeeded(self) -> bool:
        return self.failure is None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_local_teacher(run: DistillRun, progress: ProgressSink) -> DistillRun:
    """Without an API key a local run falls back to the synthetic teacher, and says so."""
    provider = run.spec.teacher.provider
    variable = API_KEY_VARIABLES.get(TeacherProvider(provider))
    if variable is None or os.environ.get(variable):
        return run
    progress.note(
        StageName.GENERATE,
        f"{variable} is not set: using the offline synthetic teacher instead of {provider}",
    )
    teacher = run.spec.teacher.model_copy(update={"provider": TeacherProvider.SYNTHETIC})
    return run.model_copy(update={"spec": run.spec.model_copy(update={"teacher": teacher})})


def prepare(manifest: Path, store_uri: str | None, progress: ProgressSink) -> StageContext:
    """Loads and checks everything a run needs; raises ManifestError naming the field at fault."""
    run = _with_local_teacher(load_run(manifest), progress)
    source = str(manifest)
    schema, seed_sql = load_inputs(run, manifest.parent, source)
    try:
        make_teacher(run.spec.teacher)
    except TeacherUnavailable as exc:
        raise ManifestError(source, [FieldProblem("spec.teacher.provider", str(exc))]) from None
    root = open_store(store_uri or run.spec.artifacts.uri or DEFAULT_STORE)
    meta = run.metadata
    store = root.sub(f"{meta.namespace}/{meta.name}/{meta.uid or LOCAL_UID}")
    return StageContext(run=run, store=store, schema=schema, seed_sql=seed_sql, progress=progress)


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


def _record(status: DistillRunStatus, result: StageResult) -> DistillRunStatus:
    """Copies a stage's numbers into the status (counts, cost, accuracy, artifact URIs)."""
    summary = result.summary
    updates: dict[str, Any] = {}
    if result.stage == StageName.GENERATE:
        usage = summary["usage"]
        updates["counts"] = status.counts.model_copy(update={"generated": summary["generated"]})
        updates["cost"] = status.cost.model_copy(
            update={
                "input_tokens": usage["input_tokens"],
                "output_tokens": usage["output_tokens"],
                "cache_read_tokens": usage["cache_read_tokens"],
                "usd": usage["usd"],
            }
        )
    elif result.stage == StageName.VALIDATE:
        updates["counts"] = status.counts.model_copy(
            update={"accepted": summary["accepted"], "rejected": summary["rejected"]}
        )
        updates["artifacts"] = status.artifacts.model_copy(update={"dataset": summary["dataset"]})
    elif result.stage == StageName.TRAIN:
        updates["artifacts"] = status.artifacts.model_copy(update={"adapter": summary["adapter"]})
    elif result.stage == StageName.EVALUATE:
        updates["evaluation"] = status.evaluation.model_copy(
            update={
                "execution_accuracy": summary["execution_accuracy"],
                "examples": summary["examples"],
            }
        )
    return status.model_copy(update=updates)


def execute(ctx: StageContext, executor: Executor) -> RunOutcome:
    """Runs the stages in order with `executor` for their parallel parts."""
    ctx.store.put_json("spec.json", ctx.run.to_wire())
    status = DistillRunStatus()
    outcome = RunOutcome(run=ctx.run, store=ctx.store, status=status)
    for stage, call in _stages(ctx, executor):
        status = stage_started(status, stage, _now())
        ctx.store.put_json("status.json", status.model_dump(mode="json", by_alias=True))
        try:
            result = call()
        except StageFailed as failure:
            outcome.failure = failure
        except Exception as exc:  # a bug, not a user mistake: keep the traceback in the store
            key = f"errors/{stage}.txt"
            ctx.store.put_bytes(key, traceback.format_exc().encode())
            outcome.failure = StageFailed(
                stage,
                "StageCrashed",
                f"{type(exc).__name__}: {exc} (traceback: {ctx.store.url(key)})",
            )
        if outcome.failure is not None:
            failure = outcome.failure
            status = stage_failed(status, stage, failure.reason, str(failure), _now())
            break
        outcome.results[stage] = result
        message = "reused committed outputs" if result.reused else "done"
        status = stage_succeeded(_record(status, result), stage, message, _now())
    else:
        status = run_succeeded(status, _now())
    ctx.store.put_json("status.json", status.model_dump(mode="json", by_alias=True))
    outcome.status = status
    return outcome


def run_manifest(
    manifest: Path,
    store_uri: str | None,
    progress: ProgressSink,
    *,
    use_ray: bool = True,
    num_cpus: int | None = None,
) -> RunOutcome:
    """`distillrun run`: prepares the run, then executes it on a local Ray (or inline)."""
    ctx = prepare(manifest, store_uri, progress)
    if not use_ray:
        return execute(ctx, InlineExecutor())
    with local_ray(num_cpus) as executor:
        return execute(ctx, executor)
