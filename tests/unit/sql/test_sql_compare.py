"""results_match and result_hash: the golden cases of data/compare_cases.yaml, one block per
rule of the default (strict) comparison."""

from __future__ import annotations

from typing import Any

import pytest

from distillrun.sql.compare import result_hash, results_match, values_equal
from distillrun.sql.sandbox import ResultSet
from tests.unit.sql.cases import load_cases


def rs(
    rows: list[tuple[Any, ...]], columns: tuple[str, ...] | None = None, *, truncated: bool = False
) -> ResultSet:
    width = len(rows[0]) if rows else len(columns or ())
    names = columns or tuple(f"c{i}" for i in range(width))
    return ResultSet(columns=names, rows=tuple(rows), truncated=truncated, ms=0.0)


def _plain(value: Any) -> Any:
    """A YAML value as the sandbox gives it: lists (engine arrays) as tuples."""
    return tuple(_plain(v) for v in value) if isinstance(value, list) else value


def _side(case: dict[str, Any], side: str, index: int) -> ResultSet:
    rows = [tuple(_plain(v) for v in row) for row in case[side]]
    width = case.get("width", [0, 0])[index]
    columns = None if rows else tuple(f"c{i}" for i in range(width))
    return rs(rows, columns, truncated=side in case.get("truncated", []))


def _orderings(case: dict[str, Any]) -> list[bool]:
    return [case["ordered"]] if "ordered" in case else [False, True]


GOLDEN = load_cases("compare_cases.yaml")
GOLDEN_IDS = [case["id"] for case in GOLDEN]


@pytest.mark.parametrize("case", GOLDEN, ids=GOLDEN_IDS)
def test_golden_cases(case: dict[str, Any]) -> None:
    gold, predicted = _side(case, "gold", 0), _side(case, "pred", 1)
    for ordered in _orderings(case):
        assert results_match(gold, predicted, ordered=ordered) is case["match"], ordered
        assert results_match(predicted, gold, ordered=ordered) is case["match"], "symmetric"


def test_column_names_do_not_matter() -> None:
    assert results_match(rs([(1,)], ("n",)), rs([(1,)], ("count",)), ordered=True)


def test_bytes_compare_exactly() -> None:
    assert results_match(rs([(b"\x00",)]), rs([(b"\x00",)]), ordered=False)
    assert not results_match(rs([(b"\x00",)]), rs([("00",)]), ordered=False)


def test_the_numeric_rule() -> None:
    assert values_equal(10**15 + 0.1, 10**15 + 0.2)
    assert not values_equal(10**15 + 1, 10**15)
    assert values_equal(float("nan"), float("nan"))
    assert not values_equal(float("nan"), 1.0)


@pytest.mark.parametrize("case", GOLDEN, ids=GOLDEN_IDS)
def test_equal_hashes_of_whole_results_imply_match(case: dict[str, Any]) -> None:
    gold, predicted = _side(case, "gold", 0), _side(case, "pred", 1)
    if gold.truncated or predicted.truncated:
        return
    for ordered in _orderings(case):
        if result_hash(gold, ordered=ordered) == result_hash(predicted, ordered=ordered):
            assert case["match"]


HASH_EQUAL = [
    ([(1, "a"), (2, "b")], [(2, "b"), (1, "a")], False),
    ([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], False),
    ([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], True),
    ([(3,)], [(3.0,)], False),
    ([(0.1 + 0.2,)], [(0.3,)], False),
    ([(True,)], [(1,)], False),
]


@pytest.mark.parametrize(("a", "b", "ordered"), HASH_EQUAL)
def test_hash_ignores_what_matching_ignores(
    a: list[tuple[Any, ...]], b: list[tuple[Any, ...]], ordered: bool
) -> None:
    assert result_hash(rs(a), ordered=ordered) == result_hash(rs(b), ordered=ordered)


def test_hash_separates_orderings_only_when_ordered() -> None:
    a, b = rs([(1,), (2,)]), rs([(2,), (1,)])
    assert result_hash(a, ordered=True) != result_hash(b, ordered=True)
    assert result_hash(a, ordered=False) == result_hash(b, ordered=False)
    assert result_hash(a, ordered=False) != result_hash(a, ordered=True)
