"""The RayJob entrypoint runs a stage from the document the operator writes into the stage's
ConfigMap, and ends in what the operator reads: outputs, or a failure record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from distillrun.api.failures import Failure
from distillrun.api.layout import REPORT_KEY
from distillrun.api.resource import DistillRun, parse_run
from distillrun.api.status import StageName
from distillrun.jobs import entrypoint
from distillrun.jobs.context import StageFailed, StageResult
from distillrun.operator.builders.config import run_store_uri, stage_config
from distillrun.operator.outputs import StoreOutputs

EXAMPLES = Path(__file__).parents[3] / "examples"


def inline_run(dialect: str = "sqlite") -> DistillRun:
    """The shop as a small synthetic run with its schema and seed inline, in `dialect`."""
    return parse_run(
        {
            "apiVersion": "distillrun.dev/v1alpha1",
            "kind": "DistillRun",
            "metadata": {"name": "shop", "namespace": "team-a", "uid": "u-1", "generation": 1},
            "spec": {
                "database": {
                    "dialect": dialect,
                    "schema": {"ddl": (EXAMPLES / "shop" / "schema.sql").read_text()},
                    "seedData": {"ddl": (EXAMPLES / "shop" / "seed.sql").read_text()},
                },
                "seedQuestions": ["How many customers are there?"],
                "teacher": {"provider": "synthetic", "targetExamples": 20, "examplesPerShard": 10},
                "student": {"hardwareProfile": "cpu", "gpusPerWorker": 0},
            },
        }
    )


def _config(
    tmp_path: Path, stage: StageName, attempt: int = 1, dialect: str = "sqlite"
) -> tuple[Path, str]:
    run = inline_run(dialect)
    store = run_store_uri(f"file://{tmp_path / 'store'}", run)
    path = tmp_path / "run.json"
    path.write_text(stage_config(run, stage, attempt, store, {}).to_json())
    return path, store


def _failed_with(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stage: StageName,
    stage_run: Callable[..., Any],
) -> tuple[Failure, str]:
    """The failure record the entrypoint leaves when running `stage` is `stage_run`, which
    raises; and the store's URL."""
    monkeypatch.setattr(entrypoint, "run_stage", stage_run)
    config, store = _config(tmp_path, stage)
    assert entrypoint.main([str(config)]) == 1
    failure = StoreOutputs(store).failure(stage, 1)
    assert failure is not None
    return failure, store


@pytest.fixture(autouse=True)
def _no_ray_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def test_generate_runs_from_the_operator_document(tmp_path: Path) -> None:
    config, store = _config(tmp_path, StageName.GENERATE)
    assert entrypoint.main([str(config)]) == 0
    summary = StoreOutputs(store).summary(StageName.GENERATE)
    assert summary is not None and summary["generated"] > 0


def test_a_named_failure_is_recorded_as_final(tmp_path: Path) -> None:
    config, store = _config(tmp_path, StageName.EVALUATE, attempt=2)
    assert entrypoint.main([str(config)]) == 1
    failure = StoreOutputs(store).failure(StageName.EVALUATE, 2)
    assert failure is not None
    assert failure.reason == "NoHoldoutData" and failure.retryable is False


def test_a_crash_is_recorded_as_retryable_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_: Any) -> None:
        raise RuntimeError("worker lost")

    failure, store = _failed_with(tmp_path, monkeypatch, StageName.TRAIN, crash)
    assert (failure.reason, failure.retryable) == ("StageCrashed", True)
    assert "RuntimeError: worker lost" in failure.message
    traceback_file = (
        Path(store.removeprefix("file://")) / "errors" / "train-attempt-1.traceback.txt"
    )
    assert "worker lost" in traceback_file.read_text()


def test_a_refusing_gate_records_the_scores_with_its_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator fills the status from the failure record: the scores go in it."""
    scores = {"execution_accuracy": 0.25, "base_execution_accuracy": 0.125, "adapter": None}

    def refuse(*_: Any) -> None:
        raise StageFailed(StageName.EVALUATE, "AccuracyBelowThreshold", "0.25 < 0.70", scores)

    failure, _ = _failed_with(tmp_path, monkeypatch, StageName.EVALUATE, refuse)
    assert (failure.reason, failure.retryable) == ("AccuracyBelowThreshold", False)
    assert failure.summary == scores


def _evaluated(*_: Any) -> StageResult:
    return StageResult(StageName.EVALUATE, {"execution_accuracy": 0.5})


def test_the_last_stage_draws_the_report_into_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entrypoint, "run_stage", _evaluated)
    config, store = _config(tmp_path, StageName.EVALUATE)
    assert entrypoint.main([str(config)]) == 0
    report = Path(store.removeprefix("file://")) / REPORT_KEY
    assert "<html" in report.read_text().lower()


def test_a_report_that_cannot_be_drawn_leaves_the_stage_succeeded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> str:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(entrypoint, "run_stage", _evaluated)
    monkeypatch.setattr("distillrun.report.build.build_report", broken)
    config, store = _config(tmp_path, StageName.EVALUATE)
    assert entrypoint.main([str(config)]) == 0
    root = Path(store.removeprefix("file://"))
    assert not (root / REPORT_KEY).exists()
    assert "RuntimeError: no fonts" in (root / "errors" / "report.txt").read_text()


def test_a_postgres_runs_train_needs_no_sandbox_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator gives the sandbox server only to the stages that run SQL; train still gets
    the schema and seed rows (on a cluster it failed `spec.database.seedData: ... set
    DISTILLRUN_SANDBOX_HOST`)."""
    for name in ("HOST", "PORT", "USER", "PASSWORD"):
        monkeypatch.delenv(f"DISTILLRUN_SANDBOX_{name}", raising=False)
    given: list[Any] = []

    def train(ctx: Any, stage: StageName, _: Any) -> StageResult:
        given.append((stage, ctx.schema.tables, ctx.seed_sql))
        return StageResult(stage, {"trained": True})

    monkeypatch.setattr(entrypoint, "run_stage", train)
    config, store = _config(tmp_path, StageName.TRAIN, dialect="postgres")
    assert entrypoint.main([str(config)]) == 0
    ((stage, tables, seed),) = given
    assert stage == StageName.TRAIN and tables and seed and "INSERT INTO" in seed
    assert StoreOutputs(store).failure(StageName.TRAIN, 1) is None
