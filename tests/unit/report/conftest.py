"""Fixtures for the report tests: one finished shop-tiny run per session (inline, no Ray, a
few training steps), a fresh copy of it per test for tests that damage or trim it, and headless
Chromium to open pages in.

The run is examples/shop-tiny.yaml with its schema and seed given as absolute paths (so the
artifacts alone name the schema), half the examples and training cut to a few steps to keep
the session short.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from distillrun.jobs.context import SilentProgress
from distillrun.local.runner import RunOutcome, run_manifest
from distillrun.store import Store, open_store

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
RUN_PREFIX = "default/shop-tiny/local"
GOLD_SET = (
    ("How many customers are there?", "SELECT COUNT(*) FROM customers"),
    ("Which products cost more than 100?", "SELECT name FROM products WHERE price > 100"),
    (
        "How many orders has each customer placed?",
        "SELECT c.name, COUNT(*) FROM customers AS c JOIN orders AS o ON o.customer_id = c.id "
        "GROUP BY c.id, c.name",
    ),
)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
    "--window-size=1280,2000",
)


def tiny_manifest(
    directory: Path,
    *,
    teacher: dict[str, object] | None = None,
    evaluation: dict[str, object] | None = None,
    **student: object,
) -> Path:
    """examples/shop-tiny.yaml with absolute input paths, the tiny student, and `teacher`,
    `evaluation` and `student` fields overridden."""
    data = yaml.safe_load((EXAMPLES / "shop-tiny.yaml").read_text())
    data["spec"]["database"]["schema"] = {"uri": str(EXAMPLES / "shop" / "schema.sql")}
    data["spec"]["database"]["seedData"] = {"uri": str(EXAMPLES / "shop" / "seed.sql")}
    data["spec"]["evaluation"]["goldSet"] = {"uri": str(EXAMPLES / "shop" / "gold.jsonl")}
    data["spec"]["teacher"].update(teacher or {})
    data["spec"]["student"].update({"model": "builtin:tiny-qwen3", **student})  # built in seconds
    # the tiny student learns nothing in a few steps: no gate, so the run finishes
    data["spec"]["evaluation"].update(
        {"maxNewTokens": 24, "minExecutionAccuracy": 0.0, **(evaluation or {})}
    )
    path = directory / "shop-tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass(frozen=True)
class FinishedRun:
    outcome: RunOutcome
    root: Path
    """The local directory of the run's store prefix."""

    @property
    def store(self) -> Store:
        return self.outcome.store


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """shop-tiny, run once for the session, with a small gold set and accuracy sampled
    during training; tests must not change its store."""
    directory = tmp_path_factory.mktemp("shop-tiny")
    gold = directory / "gold.jsonl"
    gold.write_text(
        "".join(json.dumps({"question": question, "sql": sql}) + "\n" for question, sql in GOLD_SET)
    )
    evaluation = {"goldSet": {"uri": str(gold)}, "duringTraining": {"everySteps": 2, "examples": 2}}
    manifest = tiny_manifest(
        directory, teacher={"targetExamples": 120}, evaluation=evaluation, maxSteps=4
    )
    outcome = run_manifest(manifest, str(directory / "store"), SilentProgress(), use_ray=False)
    assert outcome.failure is None, outcome.failure
    return FinishedRun(outcome, directory / "store" / RUN_PREFIX)


@pytest.fixture
def run_copy(finished_run: FinishedRun, tmp_path: Path) -> Store:
    """A private copy of the finished run's store prefix (checksum sidecars included)."""
    target = tmp_path / "copy"
    shutil.copytree(finished_run.root, target)
    return open_store(str(target))


@dataclass(frozen=True)
class PageLoad:
    console: list[str]
    """Every console message the page produced (the report has no script: any is a fault)."""
    screenshot: Path


@pytest.fixture
def open_page(tmp_path: Path) -> Callable[[Path], PageLoad]:
    """Opens a local HTML file in headless Chromium: its console messages and a screenshot."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the report tests open the page in headless Chromium; "
            "install it with scripts/test-deps (Debian's chromium package)"
        )

    def load(page: Path) -> PageLoad:
        screenshot = tmp_path / f"{page.stem}.png"
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            done = subprocess.run(
                [
                    str(CHROMIUM),
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    f"--screenshot={screenshot}",
                    page.as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        assert screenshot.exists(), f"chromium took no screenshot:\n{done.stderr[-3000:]}"
        console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
        return PageLoad(console, screenshot)

    return load
