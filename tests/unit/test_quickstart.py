"""The README's main command, end to end and offline: `distillrun run examples/quickstart.yaml`
writes dataset, adapter and metrics, and a second run on the same store redoes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
RUN_PREFIX = Path("default/shop-quickstart/local")


def distillrun(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distillrun.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )


@pytest.mark.slow
def test_quickstart_runs_offline_and_reuses_its_work(tmp_path: Path) -> None:
    store = tmp_path / "artifacts"
    first = distillrun("run", "examples/quickstart.yaml", "--store", f"file://{store}")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stderr
    run = store / RUN_PREFIX
    for stage in ("generate", "validate", "train", "evaluate"):
        assert f"{stage:<9}" in first.stdout  # live progress for every stage
    assert "execution accuracy:" in first.stdout
    assert str(run) in first.stdout

    manifest = json.loads((run / "generate/_manifest.json").read_text())
    # six shards, and top-up rounds if they fall short of the target of 240 accepted examples
    assert manifest["teacher_calls"] == manifest["shards"] >= 6
    assert manifest["screened_accepted"] >= 240
    assert (run / "dataset/train.jsonl").stat().st_size > 0
    assert (run / "dataset/holdout.jsonl").stat().st_size > 0
    assert (run / "adapter/adapter_model.safetensors").stat().st_size > 0
    metrics = json.loads((run / "evaluate/metrics.json").read_text())
    assert 0.0 <= metrics["execution_accuracy"] <= 1.0
    assert metrics["examples"] == len((run / "dataset/holdout.jsonl").read_text().splitlines())
    gold = (ROOT / "examples/shop/gold.jsonl").read_text().splitlines()
    assert metrics["gold_set"]["examples"] == metrics["gold_set"]["scored"] == len(gold)
    status = json.loads((run / "status.json").read_text())
    assert status["phase"] == "Succeeded"
    assert status["evaluation"]["executionAccuracy"] == metrics["execution_accuracy"]
    assert status["artifacts"]["adapter"].rstrip("/") == f"file://{run}/adapter"
    assert status["artifacts"]["report"] == f"file://{run}/report.html"
    assert (run / "report.html").stat().st_size > 0

    second = distillrun("run", "examples/quickstart.yaml", "--store", f"file://{store}")
    assert second.returncode == 0, second.stdout + second.stderr
    manifest = json.loads((run / "generate/_manifest.json").read_text())
    assert manifest["teacher_calls"] == 0 and manifest["reused_shards"] == manifest["shards"]
    for stage in ("generate", "validate", "train", "evaluate"):
        assert f"{stage:<9} done (reused)" in second.stdout
