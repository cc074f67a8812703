"""Pytest fixtures and helpers around the fake teacher servers: a run context on the example
shop schema, a teacher pointed at a fake with fast retries, and a thread-pool executor for
concurrency without Ray."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from distillrun.api import parse_run
from distillrun.api.spec import Dialect
from distillrun.jobs.context import StageContext
from distillrun.sql.schema import parse_schema
from distillrun.store import open_store
from distillrun.teacher.anthropic import AnthropicTeacher
from distillrun.teacher.base import Usage
from distillrun.teacher.calls import RetryPolicy
from distillrun.teacher.factory import make_teacher
from distillrun.teacher.pricing import load_prices
from tests.fakes.anthropic_server import Billed, FakeAnthropic

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODEL = "claude-sonnet-5-5"
"""The model `manifest_data` asks the fake API for."""
FAST_RETRIES = RetryPolicy(backoff_s=0.01, max_backoff_s=0.05)

T = TypeVar("T")
R = TypeVar("R")


def manifest_data(**teacher: Any) -> dict[str, Any]:
    """examples/shop-tiny.yaml with an anthropic teacher (schema and seed as absolute paths)."""
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "shop-tiny.yaml").read_text())
    data["spec"]["database"]["schema"] = {"uri": str(EXAMPLES / "shop" / "schema.sql")}
    data["spec"]["database"]["seedData"] = {"uri": str(EXAMPLES / "shop" / "seed.sql")}
    data["spec"]["evaluation"]["goldSet"] = {"uri": str(EXAMPLES / "shop" / "gold.jsonl")}
    data["spec"]["teacher"] = {
        "provider": "anthropic",
        "model": MODEL,
        "mode": "realtime",
        "targetExamples": 40,
        "examplesPerShard": 10,
        "seed": 3,
        # these tests count the calls of one plan; top-up rounds have their own tests
        "maxTopUpRounds": 0,
        **teacher,
    }
    return data


def list_usd(billed: Billed) -> Decimal:
    """What `billed` costs at `MODEL`'s list price in realtime, to the digit (a batch costs
    `batch_discount` of it)."""
    price = load_prices().price(MODEL)
    return (
        billed.input_tokens * price.input
        + billed.output_tokens * price.output
        + billed.cache_creation_input_tokens * price.cache_write
        + billed.cache_read_input_tokens * price.cache_read
    ) / Decimal(1_000_000)


def billed_usage(billed: Billed) -> Usage:
    """The tokens and messages of `billed` as a `Usage` without dollars, to compare with what a
    run recorded: `recorded.model_copy(update={"usd": 0.0}) == billed_usage(billed)`."""
    return Usage(
        input_tokens=billed.input_tokens,
        output_tokens=billed.output_tokens,
        cache_write_tokens=billed.cache_creation_input_tokens,
        cache_read_tokens=billed.cache_read_input_tokens,
        requests=billed.messages,
    )


def shop_context(tmp_path: Path, **teacher: Any) -> StageContext:
    run = parse_run(manifest_data(**teacher))
    schema = parse_schema((EXAMPLES / "shop" / "schema.sql").read_text(), Dialect.SQLITE)
    store = open_store(str(tmp_path / "store")).sub("default/shop-tiny/local")
    return StageContext(run=run, store=store, schema=schema, seed_sql=None)


def fast_teacher(ctx: StageContext) -> AnthropicTeacher:
    """The run's teacher as `make_teacher` builds it, with test-speed backoff."""
    teacher = make_teacher(ctx.run.spec.teacher)
    assert isinstance(teacher, AnthropicTeacher)
    return dataclasses.replace(teacher, retry=FAST_RETRIES)


class ThreadExecutor:
    """An Executor running items on `workers` threads: concurrency without Ray."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        with ThreadPoolExecutor(self.workers) as pool:
            pending: dict[Future[R], int] = {
                pool.submit(fn, item): i for i, item in enumerate(items)
            }
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    """A fake Anthropic API; caching starts at 256 fake tokens so the shop schema caches."""
    with FakeAnthropic(min_cache_tokens=256) as server:
        yield server


@pytest.fixture
def anthropic_env(fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> FakeAnthropic:
    """The environment a run against `fake` sees: its key, no other Anthropic settings."""
    for name in ("ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", fake.api_key)
    monkeypatch.delenv("DISTILLRUN_PRICES", raising=False)
    return fake
