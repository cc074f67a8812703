"""The local runner: failures end the run with a reason and keep what was committed; bad
manifests and stores end with a message, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distillrun.api.status import StageName
from distillrun.cli import main
from distillrun.jobs import train
from distillrun.jobs.context import SilentProgress, StageContext, StageResult
from distillrun.local import runner
from distillrun.local.runner import run_manifest

EXAMPLES = Path(__file__).parents[3] / "examples"


def small_manifest(tmp_path: Path, **teacher: object) -> Path:
    data = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    data["spec"]["database"]["schema"] = {"uri": str(EXAMPLES / "shop" / "schema.sql")}
    data["spec"]["database"]["seedData"] = {"uri": str(EXAMPLES / "shop" / "seed.sql")}
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


def test_llm_teacher_without_a_key_falls_back_to_synthetic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setattr(train, "run", lambda ctx: (_ for _ in ()).throw(RuntimeError("stop here")))
    manifest = small_manifest(tmp_path, provider="anthropic")
    assert main(["run", str(manifest), "--store", str(tmp_path / "store"), "--no-ray"]) == 1
    out = capsys.readouterr().out
    assert "ANTHROPIC_API_KEY is not set: using the offline synthetic teacher" in out


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
