"""The entrypoint of a stage inside a RayJob:
`python -m distillrun.jobs.entrypoint /etc/distillrun/run.json`.

The operator writes the document (the resolved run, the stage, the attempt number, the run's
store prefix) into the attempt's ConfigMap; this module turns it into the same `StageContext`
the local runner builds and calls the same stage function. Under KubeRay the driver has
`RAY_ADDRESS` and fans shards out over the Ray cluster; without it (a shell on a laptop) the
stage runs inline.

How it ends is what the operator reads: exit 0 after the stage committed its outputs; on a
failure the stage can name (budget spent, key refused, accuracy under the gate, bad inputs),
`errors/<stage>-attempt-<n>.json` with `retryable: false`, so the run fails at once with that
reason; when the sandbox server stayed unreachable, `SandboxUnavailable` with `retryable: true`
(a server pod being replaced: the next attempt waits for it again); on a crash, the same file
with `retryable: true` (a new attempt reuses every committed shard) and the traceback next to
it. Secrets arrive as environment variables and files the pod spec references; nothing here
prints them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distillrun.api.errors import ManifestError
from distillrun.api.failures import Failure, FailureReason
from distillrun.api.layout import SPEC_KEY, crash_key, failure_key, traceback_key
from distillrun.api.stage_config import StageConfig
from distillrun.api.status import SQL_STAGES, StageName
from distillrun.jobs import evaluate, generate, inputs, train, validate
from distillrun.jobs.context import StageContext, StageFailed, StageResult
from distillrun.jobs.parallel import Executor, InlineExecutor, RayExecutor
from distillrun.sql.errors import SandboxUnreachable
from distillrun.store import Store, open_store
from distillrun.teacher.factory import TeacherUnavailable, make_teacher

log = logging.getLogger("distillrun.jobs.entrypoint")


class LogProgress:
    """Progress as log lines in the Ray job's log (`kubectl logs`, the Ray dashboard)."""

    def counts(
        self, stage: StageName, values: dict[str, float | int], total: int | None = None
    ) -> None:
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        log.info("%s: %s%s", stage, shown, f" (of {total})" if total is not None else "")

    def note(self, stage: StageName, message: str) -> None:
        log.info("%s: %s", stage, message)


def run_stage(ctx: StageContext, stage: StageName, executor: Executor) -> StageResult:
    """Calls the stage the way the local runner does."""
    if stage == StageName.GENERATE:
        try:
            teacher = make_teacher(ctx.run.spec.teacher)
        except TeacherUnavailable as exc:
            raise StageFailed(
                stage, FailureReason.TEACHER_UNAVAILABLE, f"{exc.field}: {exc}"
            ) from None
        return generate.run(ctx, teacher, executor)
    if stage == StageName.VALIDATE:
        return validate.run(ctx, executor)
    if stage == StageName.TRAIN:
        return train.run(ctx)
    return evaluate.run(ctx)


def _executor() -> Executor:
    if not os.environ.get("RAY_ADDRESS"):
        return InlineExecutor()
    import ray

    if not ray.is_initialized():
        ray.init(log_to_driver=True)
    return RayExecutor()


def _record_failure(
    store: Store,
    stage: StageName,
    attempt: int,
    reason: str,
    message: str,
    *,
    crash: bool,
    summary: Mapping[str, Any] | None = None,
) -> None:
    location = None
    if crash:
        key = traceback_key(stage, attempt)
        store.put_bytes(key, traceback.format_exc().encode())
        location = store.url(key)
    failure = Failure(reason, message, traceback=location, summary=summary)
    store.put_json(failure_key(stage, attempt), failure.to_json())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one distillrun stage from its config.")
    parser.add_argument("config", type=Path, help="the stage's run.json (from its ConfigMap)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    config = StageConfig.read(args.config)
    stage, attempt = config.stage, config.attempt
    store = open_store(config.store)
    try:
        run = config.parsed_run(str(args.config))
        # Only the stages that run SQL prove the inputs in a sandbox: for a server dialect the
        # others (train) are given no sandbox server to prove them on.
        if stage in SQL_STAGES:  # the server is the operator's pod: wait while it (re)starts
            schema, seed_sql = inputs.load_inputs(
                run, args.config.parent, str(args.config), wait_s=inputs.SANDBOX_WAIT_S
            )
        else:
            schema, seed_sql = inputs.load_schema(run, args.config.parent, str(args.config))
        ctx = StageContext(run, store, schema, seed_sql, progress=LogProgress())
        result = run_stage(ctx, stage, _executor())
    except StageFailed as failed:
        reason, message = failed.reason, str(failed)
        _record_failure(store, stage, attempt, reason, message, crash=False, summary=failed.summary)
        log.error("%s", failed)
        return 1
    except ManifestError as bad:
        _record_failure(store, stage, attempt, FailureReason.INPUTS_INVALID, str(bad), crash=False)
        log.error("%s", bad)
        return 1
    except SandboxUnreachable as gone:
        # Also from a Ray task: Ray raises a subclass of the cause's type that keeps the cause
        # (the message without the task's traceback) as `cause`.
        message = str(getattr(gone, "cause", None) or gone)
        reason = FailureReason.SANDBOX_UNAVAILABLE
        _record_failure(store, stage, attempt, reason, message, crash=False)
        log.error("%s", message)
        return 1
    except Exception as exc:  # a bug or a lost resource: a new attempt may get past it
        message = f"{type(exc).__name__}: {exc}"
        _record_failure(store, stage, attempt, FailureReason.STAGE_CRASHED, message, crash=True)
        log.exception("%s crashed", stage)
        return 1
    log.info("%s done: %s", stage, json.dumps(result.summary, default=str))
    if stage == StageName.EVALUATE:
        _write_report(ctx)
    return 0


def _write_report(ctx: StageContext) -> None:
    """On a cluster the run's report page is drawn here, at the end of its last stage, into the
    store beside what it shows (the operator links it in the status). A view of the run: failing
    to draw it never fails the stage; the traceback goes to `errors/report.txt`. Imported here:
    drawing needs matplotlib, which the other stages do not. The page reads the run's spec from
    the store, where a local run writes it at its start (`spec.json`); here it is written
    first, from the stage's own document."""
    try:
        from distillrun.report.build import build_report

        ctx.store.put_json(SPEC_KEY, ctx.run.to_wire())
        log.info("report written: %s", build_report(ctx.store, schema=ctx.schema))
    except Exception:
        ctx.store.put_bytes(crash_key("report"), traceback.format_exc().encode())
        log.exception("the report could not be drawn")


if __name__ == "__main__":
    sys.exit(main())
