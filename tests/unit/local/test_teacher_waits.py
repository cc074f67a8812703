"""A teacher that does not answer: how long a request may take and how often it is tried are
the run's settings, and the terminal says that the run is waiting."""

from __future__ import annotations

import io
import time
from pathlib import Path

import yaml
from rich.console import Console

from distillrun.api.status import StageName
from distillrun.jobs.context import SilentProgress
from distillrun.local.progress import TerminalProgress
from distillrun.local.runner import run_manifest
from tests.fakes.anthropic_server import FakeAnthropic

EXAMPLES = Path(__file__).parents[3] / "examples"


class Notes(SilentProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, stage: StageName, message: str) -> None:
        self.notes.append(message)


def test_request_timeout_and_attempts_come_from_the_spec(
    tmp_path: Path, anthropic_env: FakeAnthropic
) -> None:
    anthropic_env.latency_s = 3.0  # never within the 1 s the spec allows
    data = yaml.safe_load((EXAMPLES / "shop-tiny.yaml").read_text())
    data["spec"]["database"]["schema"] = {"uri": str(EXAMPLES / "shop" / "schema.sql")}
    data["spec"]["database"]["seedData"] = {"uri": str(EXAMPLES / "shop" / "seed.sql")}
    data["spec"]["evaluation"]["goldSet"] = {"uri": str(EXAMPLES / "shop" / "gold.jsonl")}
    data["spec"]["teacher"] = {
        "provider": "anthropic",
        "baseUrl": anthropic_env.url,
        "mode": "realtime",
        "targetExamples": 20,
        "examplesPerShard": 20,
        "maxTopUpRounds": 0,
        "requestTimeoutSeconds": 1,
        "maxAttempts": 2,
    }
    manifest = tmp_path / "run.yaml"
    manifest.write_text(yaml.safe_dump(data))
    progress = Notes()
    started = time.monotonic()
    outcome = run_manifest(manifest, str(tmp_path / "store"), progress, use_ray=False)
    assert outcome.failure is not None and outcome.failure.reason == "TeacherFailed"
    assert "after 2 attempts" in str(outcome.failure)
    assert time.monotonic() - started < 120  # not 5 x 600 s
    assert any("may take 1 s and is tried 2 times" in n for n in progress.notes)


def test_a_quiet_stage_is_shown_waiting() -> None:
    output = io.StringIO()
    with TerminalProgress(Console(file=output, width=200), quiet_after_s=0.1) as progress:
        progress.note(StageName.GENERATE, "asking the teacher")
        deadline = time.monotonic() + 10
        while "waiting" not in output.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "generate  waiting: nothing new for " in output.getvalue()


def test_nothing_waits_before_any_stage_reported() -> None:
    output = io.StringIO()
    with TerminalProgress(Console(file=output, width=200), quiet_after_s=0.05):
        time.sleep(0.3)
    assert output.getvalue() == ""
