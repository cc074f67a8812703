"""scoring.score and scoring.accuracy without a model: answers written by hand, scored as the
evaluate stage scores a student's. What must not carry the accuracy (an empty gold result, a
pair too long to compare whole) is counted apart and named in the warnings."""

from __future__ import annotations

from typing import Any

import pytest

from distillrun.api.spec import ComparisonMode, ComparisonSpec, Dialect, SandboxSpec
from distillrun.jobs.training import scoring
from distillrun.sql.schema import SchemaInfo, parse_schema
from tests.unit.sql.cases import SHOP

EMPTY = "SELECT name FROM customers WHERE country = 'Atlantis'"
NOTHING = "SELECT name FROM customers WHERE 1 = 0"
RECORDS = [
    {"id": "right", "question": "q", "sql": "SELECT COUNT(*) FROM orders"},
    {"id": "wrong", "question": "q", "sql": "SELECT COUNT(*) FROM customers"},
    {"id": "empty", "question": "q", "sql": EMPTY},
    {"id": "long", "question": "q", "sql": "SELECT id FROM orders"},
    {"id": "silent", "question": "q", "sql": "SELECT name FROM products"},
]
ANSWERS = [
    "SELECT COUNT(*) FROM orders",
    "```sql\nSELECT COUNT(*) FROM products\n```",
    NOTHING,
    "SELECT id FROM orders ORDER BY id DESC",
    "I do not know.",
]


@pytest.fixture(scope="module")
def shop() -> SchemaInfo:
    return parse_schema((SHOP / "schema.sql").read_text(), Dialect.SQLITE)


def _score(shop: SchemaInfo, comparison: ComparisonSpec, seed: str | None) -> list[dict[str, Any]]:
    return scoring.score(RECORDS, ANSWERS, shop, seed, SandboxSpec(), comparison=comparison)


def test_empty_and_unjudgeable_pairs_are_counted_apart(shop: SchemaInfo) -> None:
    seed = (SHOP / "seed.sql").read_text()
    predictions = _score(shop, ComparisonSpec(max_rows=5), seed)
    assert [(p["id"], p["reason"], p["match"]) for p in predictions] == [
        ("right", "correct", True),
        ("wrong", "wrong_result", False),
        ("empty", "gold_empty", False),
        ("long", "unjudgeable", False),
        ("silent", "no_sql", False),
    ]
    assert predictions[4]["predicted_sql"] is None
    assert predictions[2]["predicted_result"]["row_count"] == 0
    metrics = scoring.accuracy(predictions)
    assert metrics["scored"] == 3 and metrics["correct"] == 1
    assert metrics["execution_accuracy"] == pytest.approx(1 / 3)
    assert (metrics["unjudgeable"], metrics["gold_empty"]) == (1, 1)
    warnings = scoring.warnings(predictions, seed)
    assert not any("gold results are empty" in w for w in warnings)  # 1 of 5 is not above 20%
    assert any("1 pairs are unjudgeable" in w for w in warnings)


def test_a_constant_empty_query_scores_nothing_on_empty_seed_data(shop: SchemaInfo) -> None:
    """Without seed rows every gold SELECT of rows is empty: `... WHERE 1 = 0` must not pass."""
    records = [{"id": i, "question": "q", "sql": r["sql"]} for i, r in enumerate(RECORDS[1:])]
    predictions = scoring.score(
        records, [NOTHING] * len(records), shop, None, SandboxSpec(), comparison=ComparisonSpec()
    )
    metrics = scoring.accuracy(predictions)
    assert metrics["correct"] == 0 and metrics["execution_accuracy"] == 0.0
    warnings = scoring.warnings(predictions, None)
    assert any("the seed data is empty" in w for w in warnings)
    assert any("3 of 4 gold results are empty (75%)" in w for w in warnings)


def test_spider_mode_lets_two_empty_results_match(shop: SchemaInfo) -> None:
    spider = ComparisonSpec(mode=ComparisonMode.SPIDER)
    predictions = _score(shop, spider, (SHOP / "seed.sql").read_text())
    assert predictions[2]["reason"] == "correct"


def test_spider_mode_warns_of_empty_gold_results_it_scores() -> None:
    """Spider counts two empty results equal, so empty gold results do carry its accuracy."""
    shop = parse_schema((SHOP / "schema.sql").read_text(), Dialect.SQLITE)
    records = [{"id": i, "question": "q", "sql": r["sql"]} for i, r in enumerate(RECORDS[1:])]
    spider = ComparisonSpec(mode=ComparisonMode.SPIDER)
    predictions = scoring.score(
        records, [NOTHING] * len(records), shop, None, SandboxSpec(), comparison=spider
    )
    assert scoring.accuracy(predictions)["correct"] == 3
    assert any(
        "3 of 4 gold results are empty (75%)" in w for w in scoring.warnings(predictions, None)
    )
