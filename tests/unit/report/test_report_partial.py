"""Reports of runs that did not get everything done: a failed run, a run still generating, a
schema the artifacts cannot name, an unreadable artifact. Sections without data are absent;
what exists still renders."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from distillrun.api.status import StageName
from distillrun.cli import main
from distillrun.jobs import train
from distillrun.jobs.context import SilentProgress, StageContext, StageFailed, StageResult
from distillrun.local.runner import run_manifest
from distillrun.local.summary import render_summary
from distillrun.report import build
from distillrun.report.build import REPORT_KEY
from distillrun.report.page import render_page
from distillrun.report.read import read_run
from distillrun.store import Store
from tests.unit.report.conftest import EXAMPLES, PageLoad, tiny_manifest


def test_a_run_that_fails_in_training_still_gets_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_page: Callable[[Path], PageLoad]
) -> None:
    def no_gpu(ctx: StageContext) -> StageResult:
        raise StageFailed(StageName.TRAIN, "NoGPU", "no GPU in this test")

    monkeypatch.setattr(train, "run", no_gpu)
    manifest = tiny_manifest(tmp_path, teacher={"targetExamples": 40})
    outcome = run_manifest(manifest, str(tmp_path / "store"), SilentProgress(), use_ray=False)
    assert outcome.failure is not None
    assert outcome.status.artifacts.report == outcome.store.url(REPORT_KEY)

    html = outcome.store.get_bytes(REPORT_KEY).decode()
    assert 'id="run"' in html and 'id="data"' in html and 'id="money"' in html
    assert 'id="training"' not in html and 'id="quality"' not in html
    assert "The run failed." in html and "no GPU in this test" in html
    assert "Execution accuracy" not in html

    loaded = open_page(tmp_path / "store/default/shop-tiny/local" / REPORT_KEY)
    assert loaded.console == []
    assert ImageStat.Stat(Image.open(loaded.screenshot).convert("L")).stddev[0] > 20


def _trim_to_generating(store: Store) -> None:
    """Leaves the store as a run would be while generating: the spec, one committed shard and
    a status saying generate is running."""
    for key in store.list_keys():
        keep = key == "spec.json" or key.startswith("generate/shards/")
        if not keep:
            store.delete(key)
    for key in store.list_keys("generate/shards/")[1:]:
        store.delete(key)
    store.put_json(
        "status.json",
        {
            "phase": "Generating",
            "stages": {
                "generate": {"state": "Running", "startTime": "2026-01-02T03:04:05Z", "attempts": 1}
            },
        },
    )


def test_status_and_report_of_a_run_still_generating(
    run_copy: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher = run_copy.get_json("spec.json")["spec"]["teacher"]
    planned = math.ceil(teacher["targetExamples"] / teacher["examplesPerShard"])
    _trim_to_generating(run_copy)
    assert main(["status", run_copy.url()]) == 0
    out = capsys.readouterr().out
    assert "shop-tiny: Generating" in out
    assert "Running" in out and "so far" in out
    assert f"1 of {planned}" in out
    assert "validation not finished" in out
    assert "Training" not in out and "Quality" not in out

    report = read_run(run_copy)
    assert report.data is not None and report.data.accepted is None
    assert report.training is None and report.quality is None
    html = render_page(report)
    assert "not finished yet" in html and 'id="training"' not in html


def _with_schema(store: Store, schema: dict[str, str]) -> None:
    spec = store.get_json("spec.json")
    spec["spec"]["database"]["schema"] = schema
    store.put_json("spec.json", spec)


def test_coverage_says_it_needs_the_schema_rather_than_guess(run_copy: Store) -> None:
    _with_schema(run_copy, {"uri": "shop/schema.sql"})
    report = read_run(run_copy)
    assert report.data is not None and report.data.coverage is not None
    coverage = report.data.coverage
    assert coverage.schema_note is not None and "relative to the manifest" in coverage.schema_note
    assert coverage.unused_tables is None and coverage.columns is None
    assert coverage.tables and coverage.constructs  # what is used is still told
    assert "needs the schema's DDL" in render_page(report)


def test_coverage_with_the_schema_inline_names_what_is_never_used(run_copy: Store) -> None:
    ddl = (EXAMPLES / "shop" / "schema.sql").read_text()
    _with_schema(run_copy, {"ddl": ddl})
    report = read_run(run_copy)
    assert report.data is not None and report.data.coverage is not None
    coverage = report.data.coverage
    assert coverage.schema_note is None and coverage.columns is not None
    assert coverage.unused_columns is not None and coverage.schema_columns == 17
    used = {u.name for u in coverage.columns}
    assert used.isdisjoint(coverage.unused_columns)
    assert len(used) + len(coverage.unused_columns) == coverage.schema_columns
    assert {u.name for u in coverage.tables} | set(coverage.unused_tables or ()) == {
        "customers",
        "products",
        "orders",
        "order_items",
    }


def test_an_unreadable_artifact_is_named_and_the_rest_still_renders(run_copy: Store) -> None:
    run_copy.put_bytes("train/metrics.json", b"{not json")
    report = read_run(run_copy)
    assert report.training is None
    assert report.quality is not None and report.data is not None
    assert any(p.startswith("train/metrics.json") for p in report.problems)
    html = render_page(report)
    assert "Unreadable artifact" in html and 'id="quality"' in html


def test_wrong_predictions_show_both_results_when_the_stage_recorded_them(
    run_copy: Store,
) -> None:
    predictions = run_copy.read_jsonl("evaluate/predictions.jsonl")
    for p in predictions:
        p.update(match=False, gold_result=[["books", 3]], predicted_result=[["toys", 1]])
    run_copy.put_jsonl("evaluate/predictions.jsonl", predictions)
    html = render_page(read_run(run_copy))
    assert "Gold result" in html and "Predicted result" in html
    assert "[[&quot;books&quot;, 3]]" in html and "[[&quot;toys&quot;, 1]]" in html


def test_a_report_that_cannot_be_drawn_never_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_gpu(ctx: StageContext) -> StageResult:
        raise StageFailed(StageName.TRAIN, "NoGPU", "no GPU in this test")

    def broken(store: Store, *, schema: object = None) -> str:
        raise RuntimeError("no ink")

    monkeypatch.setattr(train, "run", no_gpu)
    monkeypatch.setattr(build, "build_report", broken)
    manifest = tiny_manifest(tmp_path, teacher={"targetExamples": 20})
    outcome = run_manifest(manifest, str(tmp_path / "store"), SilentProgress(), use_ray=False)
    assert outcome.failure is not None and outcome.failure.reason == "NoGPU"
    assert outcome.report_problem is not None and "RuntimeError: no ink" in outcome.report_problem
    assert outcome.store.get_json("status.json")["artifacts"]["report"] is None
    assert "no ink" in outcome.store.get_bytes("errors/report.txt").decode()
    assert "report not built: RuntimeError: no ink" in render_summary(outcome)
