"""The local runner: failures end the run with a reason and keep what was committed; bad
manifests and stores end with a message, not a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from distillrun.api.status import StageName
from distillrun.cli import main
from distillrun.jobs import generate, train
from distillrun.jobs.context import SilentProgress, StageContext, StageResult
from distillrun.local import runner
from distillrun.local.runner import prepare, run_manifest
from distillrun.store.lease import LEASE_PREFIX, Holder, acquire
from tests.fakes.openai_server import FakeOpenAI

EXAMPLES = Path(__file__).parents[3] / "examples"


def small_manifest(tmp_path: Path, **teacher: object) -> Path:
    data = yaml.safe_load((EXAMPLES / "shop-tiny.yaml").read_text())
    data["spec"]["database"]["schema"] = {"uri": str(EXAMPLES / "shop" / "schema.sql")}
    data["spec"]["database"]["seedData"] = {"uri": str(EXAMPLES / "shop" / "seed.sql")}
    data["spec"]["evaluation"]["goldSet"] = {"uri": str(EXAMPLES / "shop" / "gold.jsonl")}
    data["spec"]["teacher"].update({"targetExamples": 40, "examplesPerShard": 20, **teacher})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_stage_that_raises_fails_the_run_and_keeps_earlier_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_train(ctx: StageContext) -> StageResult:
        raise RuntimeError("out of disk")

    monkeypatch.setattr(train, "run", broken_train)
    outcome = run_manifest(
        small_manifest(tmp_path), str(tmp_path / "store"), SilentProgress(), use_ray=False
    )
    assert outcome.failure is not None
    assert outcome.failure.reason == "StageCrashed"
    assert "RuntimeError: out of disk" in str(outcome.failure)
    status = outcome.store.get_json("status.json")
    assert status["phase"] == "Failed"
    assert status["stages"]["train"]["state"] == "Failed"
    assert status["stages"]["validate"]["state"] == "Succeeded"
    assert "evaluate" not in status["stages"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "StageCrashed"
    assert "out of disk" in outcome.store.get_bytes("errors/train.txt").decode()
    assert outcome.store.exists("dataset/train.jsonl")
    assert set(outcome.results) == {StageName.GENERATE, StageName.VALIDATE}


def test_run_with_a_bad_manifest_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = small_manifest(tmp_path, targetExamples=0)
    assert main(["run", str(manifest), "--store", str(tmp_path / "store")]) == 1
    err = capsys.readouterr().err
    assert "spec.teacher.targetExamples" in err and "Traceback" not in err
    assert not (tmp_path / "store").exists()


def test_run_with_a_bad_store_uri_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(small_manifest(tmp_path)), "--store", "ftp://host/x", "--no-ray"]) == 1
    err = capsys.readouterr().err
    assert "ftp://host/x" in err and "Traceback" not in err


def _stop_at_train(ctx: StageContext) -> StageResult:
    raise RuntimeError("generate and validate are enough here")


def test_an_openai_compatible_server_without_auth_is_used_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr(train, "run", _stop_at_train)
    with FakeOpenAI() as server:  # a vLLM server without auth
        teacher = {"provider": "openai-compatible", "model": "qwen3-coder", "baseUrl": server.url}
        manifest = small_manifest(tmp_path, **teacher)
        assert main(["run", str(manifest), "--store", str(tmp_path / "store"), "--no-ray"]) == 1
    out = capsys.readouterr().out
    assert len(server.requests) >= 2 and "authorization" not in str(server.requests)
    assert "synthetic" not in out
    manifest_record = json.loads(next((tmp_path / "store").rglob("_manifest.json")).read_text())
    assert manifest_record["teacher"] == "openai-compatible"


def test_a_server_that_wants_a_key_stops_the_run_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAI(api_key="sk-needed") as server:
        teacher = {"provider": "openai-compatible", "model": "qwen3-coder", "baseUrl": server.url}
        outcome = run_manifest(
            small_manifest(tmp_path, **teacher),
            str(tmp_path / "store"),
            SilentProgress(),
            use_ray=False,
        )
    assert outcome.failure is not None and outcome.failure.reason == "TeacherAuthFailed"
    assert "the server wants an API key: set OPENAI_API_KEY" in str(outcome.failure)
    assert server.statuses == [401]


def test_a_teacher_without_its_key_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    manifest = small_manifest(tmp_path, provider="anthropic")
    assert main(["run", str(manifest), "--store", str(tmp_path / "store"), "--no-ray"]) == 1
    captured = capsys.readouterr()
    assert "spec.teacher.provider" in captured.err and "Traceback" not in captured.err
    assert "ANTHROPIC_API_KEY is not set" in captured.err
    assert "fallbackToSynthetic" in captured.err
    assert "synthetic teacher writes" not in captured.out
    assert not (tmp_path / "store").exists()


def test_the_synthetic_fallback_is_asked_for_and_shown_in_the_summary_and_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setattr(train, "run", _stop_at_train)
    manifest = small_manifest(tmp_path, provider="anthropic", fallbackToSynthetic=True)
    assert main(["run", str(manifest), "--store", str(tmp_path / "store"), "--no-ray"]) == 1
    out = capsys.readouterr().out
    assert "ANTHROPIC_API_KEY is not set: the offline synthetic teacher writes" in out
    shown = "synthetic in place of anthropic claude-sonnet-5-5 (fallbackToSynthetic: no API key)"
    assert f"teacher: {shown}" in out
    page = next((tmp_path / "store").rglob("*.html")).read_text()
    assert shown in page


def test_spec_json_is_the_resolved_spec_with_schema_and_seed_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train, "run", lambda ctx: (_ for _ in ()).throw(RuntimeError("stop here")))
    outcome = run_manifest(
        small_manifest(tmp_path), str(tmp_path / "store"), SilentProgress(), use_ray=False
    )
    database = outcome.store.get_json("spec.json")["spec"]["database"]
    assert database["schema"] == {"ddl": (EXAMPLES / "shop" / "schema.sql").read_text()}
    assert database["seedData"] == {"ddl": (EXAMPLES / "shop" / "seed.sql").read_text()}


@pytest.fixture
def generate_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A manifest and a store URI for runs that end after validate."""
    monkeypatch.setattr(train, "run", _stop_at_train)
    return small_manifest(tmp_path), str(tmp_path / "store")


def test_a_second_run_of_the_same_manifest_is_refused_while_the_first_holds_it(
    generate_only: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, store = generate_only
    first = acquire(prepare(manifest, store, SilentProgress()).store)  # a run in progress
    first.store.put_json("spec.json", {"the": "first run's spec"})
    assert main(["run", str(manifest), "--store", store, "--no-ray"]) == 1
    assert first.store.get_json("spec.json") == {"the": "first run's spec"}  # left alone
    captured = capsys.readouterr()
    assert "another distillrun process is running this run" in captured.err
    assert f"process {os.getpid()} on " in captured.err and "Traceback" not in captured.err
    assert not first.store.list_keys(generate.SHARDS_PREFIX)  # nothing asked of the teacher

    first.release()  # the first run ended: the next one runs
    assert main(["run", str(manifest), "--store", store, "--no-ray"]) == 1  # train is stubbed
    assert first.store.list_keys(generate.SHARDS_PREFIX)


def test_the_lease_of_a_run_that_died_is_taken_over(
    generate_only: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, store = generate_only
    killed = subprocess.Popen(["true"])  # the process of a run that was killed
    killed.wait()
    now = time.time()
    dead = Holder(socket.gethostname(), killed.pid, "t0", now - 60, now - 5)
    run_store = prepare(manifest, store, SilentProgress()).store
    run_store.put_json(f"{LEASE_PREFIX}0000000000.json", asdict(dead))
    assert main(["run", str(manifest), "--store", store, "--no-ray"]) == 1  # train is stubbed
    out = capsys.readouterr().out
    assert f"took over the lease of a dead run: process {killed.pid}" in out
    assert run_store.list_keys(generate.SHARDS_PREFIX)


def test_an_unwritable_store_is_found_before_ray_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_ray(num_cpus: int | None) -> None:
        raise AssertionError("the local Ray was started before the store was checked")

    monkeypatch.setattr(runner, "local_ray", no_ray)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main(["run", str(small_manifest(tmp_path)), "--store", str(blocker / "store")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("artifact store: ") and str(blocker) in err
    assert "Traceback" not in err


def test_ctrl_c_before_any_stage_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "prepare", interrupted)
    assert main(["run", str(small_manifest(tmp_path)), "--no-ray"]) == 130
    assert capsys.readouterr().err == (
        "interrupted (Ctrl-C); run the same command again to resume from what was committed\n"
    )
