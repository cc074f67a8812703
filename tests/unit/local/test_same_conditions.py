"""A local run and a cluster run end with the same conditions for the same events: the local
runner and the operator's planner apply the same transitions (`distillrun.api.transitions`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from distillrun.api.failures import Failure, FailureReason
from distillrun.api.resource import parse_run
from distillrun.api.spec import Dialect
from distillrun.api.status import STAGE_ORDER, DistillRunStatus, StageName
from distillrun.jobs.context import SilentProgress, StageContext, StageFailed, StageResult
from distillrun.jobs.parallel import Executor, InlineExecutor
from distillrun.local import runner
from distillrun.local.summary import render_summary
from distillrun.operator.planner import ObservedJob, plan
from distillrun.operator.preflight import Inputs
from distillrun.sql.schema import parse_schema
from distillrun.store import open_store
from tests.unit.operator.conftest import cpu_manifest
from tests.unit.operator.test_planner import GENERATE_SUMMARY

SUMMARIES: dict[StageName, dict[str, Any]] = {
    StageName.GENERATE: GENERATE_SUMMARY,
    StageName.VALIDATE: {"accepted": 30, "rejected": {"parse": 10}, "dataset": "file:///d/"},
    StageName.TRAIN: {"adapter": "file:///candidate/"},
    StageName.EVALUATE: {
        "execution_accuracy": 0.5,
        "base_execution_accuracy": 0.25,
        "examples": 4,
        "scored": 4,
    },
}

Outcome = dict[str, Any] | StageFailed
"""What a stage does: commits these numbers, or fails so."""


def _scenario(failing: StageName | None, reason: FailureReason) -> dict[StageName, Outcome]:
    """Every stage succeeds up to `failing`, which fails with `reason`; a refusing gate, with
    the scores it measured."""
    outcomes: dict[StageName, Outcome] = {}
    for stage in STAGE_ORDER:
        if stage == failing:
            measured = SUMMARIES[stage] if stage == StageName.EVALUATE else None
            outcomes[stage] = StageFailed(stage, reason, "the stage said why", measured)
            break
        outcomes[stage] = SUMMARIES[stage]
    return outcomes


def _local(
    outcomes: Mapping[StageName, Outcome], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> runner.RunOutcome:
    def stages(
        ctx: StageContext, executor: Executor
    ) -> list[tuple[StageName, Callable[[], StageResult]]]:
        def call(stage: StageName) -> StageResult:
            outcome = outcomes[stage]
            if isinstance(outcome, StageFailed):
                raise outcome
            return StageResult(stage, dict(outcome), reused=True)

        return [(stage, lambda stage=stage: call(stage)) for stage in STAGE_ORDER]  # type: ignore[misc]

    monkeypatch.setattr(runner, "_stages", stages)
    monkeypatch.setattr(runner, "_with_report", lambda ctx, outcome, status: status)
    run = parse_run(cpu_manifest())
    ddl = "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
    ctx = StageContext(
        run,
        open_store(f"file://{tmp_path}"),
        parse_schema(ddl, Dialect.SQLITE),
        None,
        SilentProgress(),
    )
    return runner.execute(ctx, InlineExecutor())


class _Outputs:
    def __init__(self, outcomes: Mapping[StageName, Outcome], finished: set[StageName]) -> None:
        self.outcomes = outcomes
        self.finished = finished

    def summary(self, stage: StageName) -> Mapping[str, Any] | None:
        outcome = self.outcomes.get(stage)
        if stage not in self.finished or isinstance(outcome, StageFailed):
            return None
        return outcome

    def failure(self, stage: StageName, attempt: int) -> Failure | None:
        outcome = self.outcomes.get(stage)
        if stage not in self.finished or not isinstance(outcome, StageFailed):
            return None
        # as the entrypoint records it
        return Failure(outcome.reason, str(outcome), summary=outcome.summary)


def _cluster(outcomes: Mapping[StageName, Outcome]) -> DistillRunStatus:
    """Passes of the planner as KubeRay reports each stage's RayJob ending as `outcomes` say."""
    run = parse_run(cpu_manifest())
    jobs: list[ObservedJob] = []
    finished: set[StageName] = set()
    for _ in range(2 * len(STAGE_ORDER) + 1):
        result = plan(
            run,
            jobs,
            _Outputs(outcomes, finished),
            lambda: Inputs(store_uri="file:///store"),
            max_attempts=3,
            now="2030-01-01T00:00:00Z",
        )
        run = run.model_copy(update={"status": result.status})
        if result.start is not None:
            stage = result.start.stage
            failed = isinstance(outcomes[stage], StageFailed)
            end = ("Failed", "FAILED") if failed else ("Complete", "SUCCEEDED")
            jobs.append(ObservedJob(f"shop-{stage}-1", stage, 1, *end))
            finished.add(stage)
    assert run.status is not None
    return run.status


def _conditions(status: DistillRunStatus) -> set[tuple[str, str, str, str]]:
    return {(c.type, c.status, c.reason, c.message) for c in status.conditions}


@pytest.mark.parametrize(
    ("failing", "reason"),
    [
        (None, FailureReason.STAGE_FAILED),
        (StageName.GENERATE, FailureReason.BUDGET_EXHAUSTED),
        (StageName.TRAIN, FailureReason.NO_TRAINING_DATA),
        (StageName.EVALUATE, FailureReason.ACCURACY_BELOW_THRESHOLD),
    ],
)
def test_local_and_cluster_runs_end_with_the_same_status(
    failing: StageName | None,
    reason: FailureReason,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outcomes = _scenario(failing, reason)
    ended = _local(outcomes, tmp_path, monkeypatch)
    local = ended.status
    cluster = _cluster(outcomes)
    assert _conditions(local) == _conditions(cluster)
    assert local.phase == cluster.phase
    assert {k: v.state for k, v in local.stages.items()} == {
        k: v.state for k, v in cluster.stages.items()
    }
    assert (local.counts, local.cost, local.evaluation) == (
        cluster.counts,
        cluster.cost,
        cluster.evaluation,
    )
    types = {c.type for c in local.conditions}
    assert types >= {"Ready", "Succeeded", "Failed", "BudgetExhausted"}
    if failing is not None:
        failed = next(c for c in local.conditions if c.type == "Failed")
        assert (failed.status, failed.reason) == ("True", reason)
    if failing in (None, StageName.EVALUATE):  # scored, whether the gate let it through or not
        assert local.evaluation.execution_accuracy == 0.5
        assert local.evaluation.base_execution_accuracy == 0.25
        printed = render_summary(replace(ended, results={}))  # the lines drawn from the status
        assert "execution accuracy: 0.500 on 4 scored of 4 holdout examples" in printed
        assert "base model before training: 0.250 (distillation +25.0 points)" in printed
