"""The README's examples, end to end and offline.

`examples/shop-tiny.yaml` (every stage in about a minute) writes dataset, adapter and metrics,
and a second run on the same store redoes nothing.

`examples/quickstart.yaml`, the main command, exactly as shipped, on a few-step builtin base
(`small_sql_base`: the real base takes minutes to build, and what it scores is measured in
`bench/quickstart_timing.py`, not here): every stage runs, the holdout and the gold set are
scored beside the base model, and the manifest's gate refuses a student that has not learned,
by name, leaving no published adapter; a second run reuses every stage and refuses again.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
GOLD = (ROOT / "examples/shop/gold.jsonl").read_text().splitlines()
STAGES = ("generate", "validate", "train", "evaluate")


def distillrun(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distillrun.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )


def _read(run: Path, key: str) -> Any:
    return json.loads((run / key).read_text())


def _shipped_run(
    manifest: str, store: Path, *, returncode: int
) -> subprocess.CompletedProcess[str]:
    """`distillrun run` of an example as shipped: it ends with `returncode`, with live progress
    for every stage and no traceback."""
    result = distillrun("run", manifest, "--store", f"file://{store}")
    assert result.returncode == returncode, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for stage in STAGES:
        assert f"{stage:<9}" in result.stdout  # live progress for every stage
    return result


@pytest.mark.slow
def test_shop_tiny_runs_offline_and_reuses_its_work(tmp_path: Path) -> None:
    store = tmp_path / "artifacts"
    first = _shipped_run("examples/shop-tiny.yaml", store, returncode=0)
    run = store / "default/shop-tiny/local"
    assert "execution accuracy:" in first.stdout
    assert str(run) in first.stdout

    manifest = _read(run, "generate/_manifest.json")
    # six shards, and top-up rounds if they fall short of the target of 240 accepted examples
    assert manifest["teacher_calls"] == manifest["shards"] >= 6
    assert manifest["screened_accepted"] >= 240
    assert (run / "dataset/train.jsonl").stat().st_size > 0
    assert (run / "dataset/holdout.jsonl").stat().st_size > 0
    assert (run / "adapter/adapter_model.safetensors").stat().st_size > 0
    metrics = _read(run, "evaluate/metrics.json")
    assert 0.0 <= metrics["execution_accuracy"] <= 1.0
    assert metrics["examples"] == len((run / "dataset/holdout.jsonl").read_text().splitlines())
    assert metrics["gold_set"]["examples"] == metrics["gold_set"]["scored"] == len(GOLD)
    status = _read(run, "status.json")
    assert status["phase"] == "Succeeded"
    assert status["evaluation"]["executionAccuracy"] == metrics["execution_accuracy"]
    base = metrics["base"]["holdout"]["execution_accuracy"]
    assert status["evaluation"]["baseExecutionAccuracy"] == base
    assert f"base model before training: {base:.3f}" in first.stdout
    assert status["artifacts"]["adapter"].rstrip("/") == f"file://{run}/adapter"
    assert status["artifacts"]["report"] == f"file://{run}/report.html"
    assert (run / "report.html").stat().st_size > 0

    second = distillrun("run", "examples/shop-tiny.yaml", "--store", f"file://{store}")
    assert second.returncode == 0, second.stdout + second.stderr
    manifest = _read(run, "generate/_manifest.json")
    assert manifest["teacher_calls"] == 0 and manifest["reused_shards"] == manifest["shards"]
    for stage in STAGES:
        assert f"{stage:<9} done (reused)" in second.stdout


@pytest.mark.slow
def test_the_quickstart_runs_as_shipped_and_its_gate_refuses_a_student_that_did_not_learn(
    small_sql_base: Path, tmp_path: Path
) -> None:
    store = tmp_path / "artifacts"
    first = _shipped_run("examples/quickstart.yaml", store, returncode=1)
    run = store / "default/shop-quickstart/local"
    assert "AccuracyBelowThreshold" in first.stdout + first.stderr
    assert "(spec.evaluation.minExecutionAccuracy)" in first.stdout + first.stderr

    assert _read(run, "generate/_manifest.json")["screened_accepted"] >= 800
    metrics = _read(run, "evaluate/metrics.json")
    assert metrics["execution_accuracy"] < 0.5
    assert metrics["base"]["holdout"]["examples"] == metrics["examples"]
    assert metrics["gold_set"]["examples"] == metrics["gold_set"]["scored"] == len(GOLD)
    assert metrics["base"]["gold_set"]["examples"] == len(GOLD)
    assert (run / "train/adapter").is_dir()  # the candidate, kept for inspection
    assert not (run / "adapter").exists()  # nothing published
    status = _read(run, "status.json")
    assert status["phase"] == "Failed"
    assert status["stages"]["evaluate"]["state"] == "Failed"
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "AccuracyBelowThreshold"
    # the refused student's scores are in the status, beside the base model's
    before = metrics["base"]["holdout"]["execution_accuracy"]
    evaluation = status["evaluation"]
    assert evaluation["executionAccuracy"] == metrics["execution_accuracy"]
    assert evaluation["baseExecutionAccuracy"] == before
    assert evaluation["goldExecutionAccuracy"] == metrics["gold_set"]["execution_accuracy"]
    assert evaluation["scored"] == metrics["scored"]
    assert f"execution accuracy: {metrics['execution_accuracy']:.3f}" in first.stdout
    assert f"base model before training: {before:.3f}" in first.stdout
    assert (run / "report.html").stat().st_size > 0
    shown = distillrun("status", f"file://{run}")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "shop-quickstart: Failed" in shown.stdout
    assert f"{metrics['execution_accuracy']:.1%}" in shown.stdout
    assert re.search(rf"base model, before training\W+{re.escape(f'{before:.1%}')}", shown.stdout)

    second = distillrun("run", "examples/quickstart.yaml", "--store", f"file://{store}")
    assert second.returncode == 1, second.stdout + second.stderr
    for stage in ("generate", "validate", "train"):
        assert f"{stage:<9} done (reused)" in second.stdout
    assert _read(run, "evaluate/metrics.json") == metrics  # scores reused, the gate applied again
    assert "AccuracyBelowThreshold" in second.stdout + second.stderr
