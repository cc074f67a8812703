"""judge_pair(): data/pair_cases.yaml under both comparison modes, on a real SQLite sandbox,
then the Spider mode's text rewriting and its result equality alone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import yaml

from distillrun.api.spec import ComparisonMode, ComparisonSpec, Dialect, SandboxSpec
from distillrun.sql import spider
from distillrun.sql.pairs import GOLD_EMPTY, UNJUDGEABLE, comparison_limits, judge_pair
from distillrun.sql.sandbox import Sandbox, ServerTarget, open_sandbox
from distillrun.sql.schema import SchemaInfo, parse_schema
from tests.unit.sql.cases import DATA, open_box

FIXTURE = yaml.safe_load((DATA / "pair_cases.yaml").read_text())
PAIRS: list[dict[str, Any]] = FIXTURE["pairs"]
ROOMY = 1000
"""The row cap of cases that set none."""


def _modes(case: dict[str, Any]) -> list[tuple[str, ComparisonSpec, str]]:
    rows = case.get("max_rows", ROOMY)
    modes = [
        ("strict", ComparisonSpec(max_rows=rows), case["strict"]),
        ("spider", ComparisonSpec(mode=ComparisonMode.SPIDER, max_rows=rows), case["spider"]),
    ]
    if "spider_keep_distinct" in case:
        keep = ComparisonSpec(mode=ComparisonMode.SPIDER, keep_distinct=True, max_rows=rows)
        modes.append(("spider --keep-distinct", keep, case["spider_keep_distinct"]))
    return modes


CASES = [
    pytest.param(case, comparison, expected, id=f"{name}: {case['gold']} | {case['pred']}")
    for case in PAIRS
    for name, comparison, expected in _modes(case)
]


@pytest.fixture(scope="module")
def singers() -> SchemaInfo:
    return parse_schema(FIXTURE["schema"], Dialect.SQLITE)


@pytest.fixture(scope="module")
def sandbox_with_cap(singers: SchemaInfo) -> Iterator[Callable[[ComparisonSpec], Sandbox]]:
    """One sandbox per row cap, opened as scoring opens it (`comparison_limits`)."""
    boxes: dict[int, Sandbox] = {}
    with ExitStack() as stack:

        def get(comparison: ComparisonSpec) -> Sandbox:
            if comparison.max_rows not in boxes:
                limits = comparison_limits(SandboxSpec(), comparison)
                boxes[comparison.max_rows] = stack.enter_context(
                    open_sandbox(singers, FIXTURE["seed"], limits)
                )
            return boxes[comparison.max_rows]

        yield get


@pytest.mark.parametrize(("case", "comparison", "expected"), CASES)
def test_pair_verdicts(
    case: dict[str, Any],
    comparison: ComparisonSpec,
    expected: str,
    singers: SchemaInfo,
    sandbox_with_cap: Callable[[ComparisonSpec], Sandbox],
) -> None:
    sandbox = sandbox_with_cap(comparison)
    pair = judge_pair(case["gold"], case["pred"], singers, sandbox, comparison)
    assert pair.outcome == expected, f"{case['why']}: {pair.message}"
    assert pair.match is (expected == "correct")
    assert pair.scored is (expected not in ("gold_failed", GOLD_EMPTY, UNJUDGEABLE))


def test_unjudgeable_and_cut_pairs_say_why(
    singers: SchemaInfo, sandbox_with_cap: Callable[[ComparisonSpec], Sandbox]
) -> None:
    comparison = ComparisonSpec(max_rows=2)
    sandbox = sandbox_with_cap(comparison)
    same = judge_pair(
        "SELECT id FROM concert", "SELECT id FROM concert", singers, sandbox, comparison
    )
    assert "more than 2 rows (4 each)" in same.message and "maxRows" in same.message
    fewer = "SELECT id FROM concert WHERE id < 4"
    counted = judge_pair("SELECT id FROM concert", fewer, singers, sandbox, comparison)
    assert "4 rows and the predicted 3" in counted.message


def test_no_sql_is_wrong_unless_the_gold_is_empty(
    singers: SchemaInfo, sandbox_with_cap: Callable[[ComparisonSpec], Sandbox]
) -> None:
    comparison = ComparisonSpec(max_rows=ROOMY)
    sandbox = sandbox_with_cap(comparison)
    wrong = judge_pair("SELECT name FROM singer", None, singers, sandbox, comparison)
    assert (wrong.outcome, wrong.scored, wrong.predicted) == ("no_sql", True, None)
    empty = judge_pair("SELECT name FROM singer WHERE 1 = 0", None, singers, sandbox, comparison)
    assert (empty.outcome, empty.scored) == (GOLD_EMPTY, False)


CUT = [
    # (predicted query against the gold "SELECT id FROM orders", cut at 2 rows; outcome)
    ("SELECT id FROM orders ORDER BY id DESC", UNJUDGEABLE),
    ("SELECT id FROM orders WHERE id > 1", "wrong_result"),
    ("SELECT id FROM orders WHERE id < 3", "wrong_result"),
    ("SELECT id, id FROM orders", "wrong_result"),
]


@pytest.mark.parametrize(("predicted", "expected"), CUT)
def test_cut_results_are_counted_on_every_engine(
    predicted: str,
    expected: str,
    schema: SchemaInfo,
    shop_seed: str,
    targets: dict[Dialect, ServerTarget],
) -> None:
    """The `SELECT COUNT(*) FROM (...)` around a cut result runs on each engine (MySQL needs
    the derived table's alias); a count it cannot take leaves the pair unjudgeable."""
    comparison = ComparisonSpec(max_rows=2)
    with open_box(schema, shop_seed, comparison_limits(SandboxSpec(), comparison), targets) as box:
        pair = judge_pair("SELECT id FROM orders", predicted, schema, box, comparison)
    assert pair.outcome == expected, pair.message


REWRITES = [
    ("SELECT DISTINCT a FROM t", "SELECT  a FROM t"),
    ("select count(distinct a) from t", "select count( a) from t"),
    ("SELECT a FROM t WHERE b = 'distinct' AND \"distinct\" = 1", None),
    ("SELECT a FROM t -- distinct\n", None),
    (
        "SELECT a FROM t WHERE b ! = 1 AND c > = 2 AND d < = 3",
        "SELECT a FROM t WHERE b != 1 AND c >= 2 AND d <= 3",
    ),
    ("SELECT a FROM t WHERE y = year ( curdate ( ) ) - 1", "SELECT a FROM t WHERE y = 2020- 1"),
    ("SELECT 'it''s DISTINCT", None),
]


@pytest.mark.parametrize("dialect", list(Dialect), ids=str)
@pytest.mark.parametrize(("sql", "rewritten"), REWRITES)
def test_spider_rewrites_text_as_the_evaluator_does(
    sql: str, rewritten: str | None, dialect: Dialect
) -> None:
    assert spider.rewrite(sql, dialect, keep_distinct=False) == (rewritten or sql)


def test_keep_distinct_keeps_it() -> None:
    sql = "SELECT DISTINCT a FROM t"
    assert spider.rewrite(sql, Dialect.SQLITE, keep_distinct=True) == sql


def test_spider_order_is_any_order_by_in_the_gold_text() -> None:
    assert spider.order_matters("SELECT a FROM (SELECT a FROM t ORDER BY a)")
    assert spider.order_matters("select a from t order by a")
    assert not spider.order_matters("SELECT a FROM t ORDER  BY a")
    assert not spider.order_matters("SELECT border FROM t")


SPIDER_EQUALITY = [
    # (gold rows, predicted rows, ordered, equal): the evaluator's result_eq semantics
    ([], [], False, True),
    ([], [(1,)], False, False),
    ([(1, "a")], [("a", 1)], True, True),
    ([(1, "a"), (2, "b")], [("b", 1), ("a", 2)], False, False),
    ([(1,), (1,), (2,)], [(1,), (2,), (2,)], False, False),
    ([(1,), (2,)], [(2,), (1,)], True, False),
    ([(3,)], [(3.0,)], False, True),
    ([(True,)], [(1,)], False, True),
    ([(0.1 + 0.2,)], [(0.3,)], False, False),
    ([(None,)], [(None,)], False, True),
    ([(1, 1.5)], [(1.0, 1.5)], False, False),
    ([(1, 2)], [(1,)], False, False),
    ([(1, 2, 3, 4, 5)], [(5, 4, 3, 2, 1)], False, True),
]


@pytest.mark.parametrize(("gold", "predicted", "ordered", "equal"), SPIDER_EQUALITY)
def test_spider_result_equality(
    gold: list[tuple[Any, ...]], predicted: list[tuple[Any, ...]], ordered: bool, equal: bool
) -> None:
    assert spider.results_equal(gold, predicted, ordered=ordered) is equal


def test_keep_distinct_needs_spider_mode() -> None:
    with pytest.raises(ValueError, match="keepDistinct applies to mode spider only"):
        ComparisonSpec(keep_distinct=True)
