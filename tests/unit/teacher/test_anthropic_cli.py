"""`distillrun run` with the anthropic teacher against the fake API: the pre-flight estimate is
printed before any call and refuses a run over budget unless told to proceed, and a canary API
key appears in nothing the run writes or prints."""

from __future__ import annotations

import pickle
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from distillrun.cli import main
from distillrun.jobs import train
from distillrun.jobs.context import StageContext, StageResult
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.fixtures import fast_teacher, list_usd, manifest_data, shop_context

CANARY = "sk-ant-canary-7f3e9d2c41b8a6"


def _manifest(tmp_path: Path, **teacher: object) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(manifest_data(**teacher)))
    return path


def _stop_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_training(ctx: StageContext) -> StageResult:
        raise RuntimeError("training is not part of this test")

    monkeypatch.setattr(train, "run", no_training)


def test_the_estimate_is_shown_first_and_a_run_over_budget_is_refused(
    tmp_path: Path, anthropic_env: FakeAnthropic, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = anthropic_env
    manifest = _manifest(tmp_path, baseUrl=fake.url, targetExamples=200, budget={"maxUSD": 0.05})
    store = str(tmp_path / "store")
    assert main(["run", str(manifest), "--store", store, "--no-ray"]) == 1

    captured = capsys.readouterr()
    assert "pre-flight estimate: 20 realtime request(s)" in captured.out
    assert "spec.teacher.budget.maxUSD" in captured.err and "--accept-estimate" in captured.err
    assert fake.requests == [] and not (tmp_path / "store").exists()


def test_the_estimate_warns_when_realtime_cannot_meet_the_deadline(
    tmp_path: Path, anthropic_env: FakeAnthropic, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = anthropic_env
    manifest = _manifest(
        tmp_path,
        baseUrl=fake.url,
        mode="auto",
        deadlineHours=0.01,
        targetExamples=200,
        rateLimits={"requestsPerMinute": 1},
        budget={"maxUSD": 0.05},
    )
    assert main(["run", str(manifest), "--store", str(tmp_path / "store"), "--no-ray"]) == 1

    out = capsys.readouterr().out
    assert "pre-flight estimate: 20 realtime request(s)" in out
    assert "realtime needs at least 20 min, beyond deadlineHours 0.01" in out
    assert fake.requests == []


def test_accepting_the_estimate_runs_until_the_budget_is_spent(
    tmp_path: Path,
    anthropic_env: FakeAnthropic,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = anthropic_env
    manifest = _manifest(tmp_path, baseUrl=fake.url, targetExamples=200, budget={"maxUSD": 0.05})
    store = str(tmp_path / "store")
    assert main(["run", str(manifest), "--store", store, "--no-ray", "--accept-estimate"]) == 1

    err = capsys.readouterr().err
    assert "generate failed (BudgetExhausted)" in err
    assert 0 < fake.billed.messages < 20 and list_usd(fake.billed) <= Decimal("0.05")


def test_a_canary_key_appears_in_nothing_the_run_writes_or_prints(
    tmp_path: Path,
    anthropic_env: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = anthropic_env
    fake.api_key = CANARY
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY)
    _stop_before_training(monkeypatch)
    manifest = _manifest(tmp_path, baseUrl=fake.url)
    good = tmp_path / "good"
    assert main(["run", str(manifest), "--store", str(good), "--no-ray"]) == 1
    assert fake.billed.messages == 4  # the run really used the key

    fake.api_key = "another-key"  # the canary is now refused: the failure path must not leak it
    refused = tmp_path / "refused"
    assert main(["run", str(manifest), "--store", str(refused), "--no-ray"]) == 1

    captured = capsys.readouterr()
    assert "TeacherAuthFailed" in captured.err
    written = [p for root in (good, refused) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "spec.json" for p in written) and any("shards" in str(p) for p in written)
    hits = [p for p in written if CANARY.encode() in p.read_bytes()]
    assert hits == []
    assert CANARY not in captured.out + captured.err
    # the teacher shipped to Ray tasks carries the variable's name, never the key
    ctx = shop_context(tmp_path, baseUrl=fake.url)
    assert CANARY.encode() not in pickle.dumps(fast_teacher(ctx))
