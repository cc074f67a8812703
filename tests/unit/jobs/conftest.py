"""Fixtures for the train and evaluate stage tests (test_student, test_train_evaluate): the shop
schema and seed rows from examples/shop, a file store in tmp_path, template-written dataset
records (what the validate stage would have accepted) and a StageContext tying them together.
Nothing here is autouse, so other tests in this folder are unaffected."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from distillrun.api.resource import DistillRun, parse_run
from distillrun.api.spec import Dialect
from distillrun.api.status import StageName
from distillrun.jobs.context import StageContext
from distillrun.sql.schema import SchemaInfo, parse_schema
from distillrun.store import Store, open_store

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"

Record = dict[str, Any]

_COUNTRIES = ("JP", "FR", "US", "DE", "BR", "IN")
_CATEGORIES = ("books", "games", "garden", "kitchen", "toys")
_STATUSES = ("placed", "shipped", "delivered", "cancelled")


def _templates(rng: random.Random) -> list[tuple[str, str, str, list[str], list[str]]]:
    """(question, sql, explanation, tables, constructs) for one random draw of each template."""
    country = rng.choice(_COUNTRIES)
    category = rng.choice(_CATEGORIES)
    status = rng.choice(_STATUSES)
    n = rng.randint(2, 9)
    customer = rng.randint(1, 40)
    price = rng.randrange(20, 200, 10)
    month = rng.randint(1, 12)
    return [
        (
            f"How many orders did customer {customer} place?",
            f"SELECT COUNT(*) FROM orders WHERE customer_id = {customer}",
            f"Count the orders whose customer_id is {customer}.",
            ["orders"],
            ["count", "filter"],
        ),
        (
            f"What is the email of customer {customer}?",
            f"SELECT email FROM customers WHERE id = {customer}",
            f"Look up the email of the customer with id {customer}.",
            ["customers"],
            ["filter"],
        ),
        (
            f"Which products cost more than {price} dollars?",
            f"SELECT name FROM products WHERE price > {price}",
            f"Select products whose price is above {price}.",
            ["products"],
            ["filter"],
        ),
        (
            f"How many customers signed up since 2025-{month:02d}-01?",
            f"SELECT COUNT(*) FROM customers WHERE signup_date >= '2025-{month:02d}-01'",
            f"Count customers with a signup date on or after 2025-{month:02d}-01.",
            ["customers"],
            ["count", "filter"],
        ),
        (
            f"How many customers are from {country}?",
            f"SELECT COUNT(*) FROM customers WHERE country = '{country}'",
            f"Count the customers whose country is {country}.",
            ["customers"],
            ["count", "filter"],
        ),
        (
            f"List the names of products in the {category} category.",
            f"SELECT name FROM products WHERE category = '{category}'",
            f"Select product names filtered by category {category}.",
            ["products"],
            ["filter"],
        ),
        (
            f"How many orders have the status {status}?",
            f"SELECT COUNT(*) FROM orders WHERE status = '{status}'",
            f"Count orders with status {status}.",
            ["orders"],
            ["count", "filter"],
        ),
        (
            f"What are the {n} most expensive products?",
            f"SELECT name, price FROM products ORDER BY price DESC LIMIT {n}",
            f"Sort products by price, highest first, and keep {n}.",
            ["products"],
            ["order", "limit"],
        ),
        (
            f"What is the average price of {category} products?",
            f"SELECT AVG(price) FROM products WHERE category = '{category}'",
            f"Average the price of products in category {category}.",
            ["products"],
            ["aggregate", "filter"],
        ),
        (
            f"How many orders did customers from {country} place?",
            "SELECT COUNT(*) FROM orders JOIN customers ON orders.customer_id = customers.id "
            f"WHERE customers.country = '{country}'",
            f"Join orders to customers and count those from {country}.",
            ["orders", "customers"],
            ["join", "count", "filter"],
        ),
    ]


def make_records(
    count: int, *, seed: int = 0, conn: sqlite3.Connection | None = None
) -> list[Record]:
    """`count` distinct template-written records in the validate stage's output format."""
    rng = random.Random(seed)
    seen: set[str] = set()
    records: list[Record] = []
    attempts = 0
    while len(records) < count and attempts < count * 50:
        attempts += 1
        for question, sql, explanation, tables, constructs in _templates(rng):
            if sql in seen or len(records) >= count:
                continue
            seen.add(sql)
            rows = conn.execute(sql).fetchall() if conn is not None else []
            records.append(
                {
                    "id": f"ex-{len(records):04d}",
                    "question": question,
                    "sql": sql,
                    "explanation": explanation,
                    "tables": tables,
                    "constructs": constructs,
                    "result_hash": hashlib.sha256(
                        json.dumps(rows, default=str).encode()
                    ).hexdigest(),
                    "rows": len(rows),
                }
            )
    rng.shuffle(records)
    return records


class RecordingProgress:
    """A ProgressSink that keeps what it is told."""

    def __init__(self) -> None:
        self.counts_seen: list[tuple[StageName, dict[str, float | int], int | None]] = []
        self.notes: list[tuple[StageName, str]] = []

    def counts(
        self, stage: StageName, values: dict[str, float | int], total: int | None = None
    ) -> None:
        self.counts_seen.append((stage, dict(values), total))

    def note(self, stage: StageName, message: str) -> None:
        self.notes.append((stage, message))


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


TINY_STUDENT: dict[str, Any] = {"student": {"model": "builtin:tiny-qwen3"}}
"""The student these tests train unless they say otherwise: built in seconds, where the
quickstart's builtin:sql-qwen3 is pretrained for minutes (tests that want it ask for the
`small_sql_base` fixture)."""


def make_run(spec_changes: dict[str, Any] | None = None) -> DistillRun:
    """examples/shop-tiny.yaml without its gold set (a test that wants one sets it), with
    `spec_changes` merged into its spec (camelCase keys)."""
    manifest = yaml.safe_load((SHOP.parent / "shop-tiny.yaml").read_text(encoding="utf-8"))
    manifest["spec"]["evaluation"].pop("goldSet", None)
    manifest["spec"] = _merge(_merge(manifest["spec"], TINY_STUDENT), spec_changes or {})
    return parse_run(manifest)


@pytest.fixture(scope="session")
def shop_schema() -> SchemaInfo:
    return parse_schema((SHOP / "schema.sql").read_text(encoding="utf-8"), Dialect.SQLITE)


@pytest.fixture(scope="session")
def shop_seed() -> str:
    return (SHOP / "seed.sql").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def shop_records(shop_seed: str) -> list[Record]:
    """144 distinct records whose SQL runs on the shop seed rows."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript((SHOP / "schema.sql").read_text(encoding="utf-8"))
        conn.executescript(shop_seed)
        return make_records(144, seed=1, conn=conn)
    finally:
        conn.close()


@pytest.fixture
def recorded_progress() -> RecordingProgress:
    return RecordingProgress()


ContextFactory = Callable[..., StageContext]


@pytest.fixture(scope="session")
def context_at(
    shop_schema: SchemaInfo, shop_seed: str
) -> Callable[[Path, dict[str, Any]], StageContext]:
    """Builds a StageContext on a file store at a given directory (for module-scoped runs);
    `spec` changes merge into shop-tiny's spec."""

    def make(store_dir: Path, spec: dict[str, Any]) -> StageContext:
        return StageContext(
            run=make_run(spec),
            store=open_store(str(store_dir)),
            schema=shop_schema,
            seed_sql=shop_seed,
            progress=RecordingProgress(),
        )

    return make


@pytest.fixture(scope="session")
def progress_of() -> Callable[[StageContext], RecordingProgress]:
    """The RecordingProgress of a context built by `context_at` or `jobs_context`."""

    def recorded(ctx: StageContext) -> RecordingProgress:
        assert isinstance(ctx.progress, RecordingProgress)
        return ctx.progress

    return recorded


@pytest.fixture
def jobs_context(
    tmp_path: Path, shop_schema: SchemaInfo, shop_seed: str, recorded_progress: RecordingProgress
) -> ContextFactory:
    """Builds a StageContext on a file store in tmp_path; `spec` changes merge into the
    shop-tiny spec."""
    store = open_store(str(tmp_path / "store"))

    def make(spec: dict[str, Any] | None = None) -> StageContext:
        return StageContext(
            run=make_run(spec),
            store=store,
            schema=shop_schema,
            seed_sql=shop_seed,
            progress=recorded_progress,
        )

    return make


def _write_dataset(store: Store, train: list[Record], holdout: list[Record]) -> None:
    store.put_jsonl("dataset/train.jsonl", train)
    store.put_jsonl("dataset/holdout.jsonl", holdout)


@pytest.fixture
def write_dataset() -> Callable[[Store, list[Record], list[Record]], None]:
    """Writes what the validate stage leaves behind: dataset/train.jsonl and holdout.jsonl."""
    return _write_dataset


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Nothing in these tests may reach a model hub; caches go to tmp_path."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("DISTILLRUN_CACHE_DIR", str(tmp_path / "cache"))
    yield
