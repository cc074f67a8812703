"""results_match and result_hash, table-driven: the Spider test-suite rules."""

from __future__ import annotations

from typing import Any

import pytest

from distillrun.sql.compare import result_hash, results_match, values_equal
from distillrun.sql.sandbox import ResultSet


def rs(rows: list[tuple[Any, ...]], columns: tuple[str, ...] | None = None) -> ResultSet:
    width = len(rows[0]) if rows else len(columns or ())
    names = columns or tuple(f"c{i}" for i in range(width))
    return ResultSet(columns=names, rows=tuple(rows), truncated=False, ms=0.0)


CASES = [
    # (id, gold rows, predicted rows, ordered, match)
    ("identical", [(1, "a"), (2, "b")], [(1, "a"), (2, "b")], False, True),
    ("row order ignored when unordered", [(1, "a"), (2, "b")], [(2, "b"), (1, "a")], False, True),
    ("row order counts when ordered", [(1, "a"), (2, "b")], [(2, "b"), (1, "a")], True, False),
    ("ordered and same order", [(1,), (2,), (3,)], [(1,), (2,), (3,)], True, True),
    ("bag, not set: duplicates count", [(1,), (1,), (2,)], [(1,), (2,), (2,)], False, False),
    ("bag: missing duplicate", [(1,), (1,)], [(1,)], False, False),
    ("column permutation", [(1, "a"), (2, "b")], [("a", 1), ("b", 2)], False, True),
    ("column permutation, ordered", [(1, "a"), (2, "b")], [("a", 1), ("b", 2)], True, True),
    (
        "permutation must keep rows together",
        [(1, "a"), (2, "b")],
        [("b", 1), ("a", 2)],
        False,
        False,
    ),
    (
        "same column bags, different pairing",
        [(1, 2), (2, 1), (3, 3)],
        [(1, 1), (2, 2), (3, 3)],
        False,
        False,
    ),
    ("interchangeable identical columns", [(1, 1), (2, 2)], [(2, 2), (1, 1)], False, True),
    ("int equals float", [(3,)], [(3.0,)], False, True),
    ("float within tolerance", [(0.1 + 0.2,)], [(0.3,)], False, True),
    ("relative tolerance", [(1_000_000.0,)], [(1_000_000.5,)], False, True),
    ("beyond tolerance", [(1.0,)], [(1.001,)], False, False),
    ("tiny absolute difference", [(0.0,)], [(1e-12,)], False, True),
    ("bool is a number", [(True,)], [(1,)], False, True),
    ("NULL equals NULL", [(None, 1)], [(None, 1)], False, True),
    ("NULL is not zero", [(None,)], [(0,)], False, False),
    ("NULL is not the empty string", [(None,)], [("",)], False, False),
    ("string is not number", [("3",)], [(3,)], False, False),
    ("strings are case sensitive", [("US",)], [("us",)], False, False),
    ("bytes", [(b"\x00",)], [(b"\x00",)], False, True),
    ("bytes are not their hex", [(b"\x00",)], [("00",)], False, False),
    ("lists", [((1, 2),)], [((1.0, 2),)], False, True),
    ("mismatched column count", [(1, 2)], [(1,)], False, False),
    ("mismatched row count", [(1,)], [(1,), (1,)], False, False),
    (
        "float rows paired across groups",
        [(1.0000001, "b"), (1.0, "a")],
        [(1.0, "b"), (1.0000001, "a")],
        False,
        True,
    ),
    (
        "floats in unordered bags",
        [(0.1 + 0.2, "x"), (2.5, "y")],
        [(2.5, "y"), (0.3, "x")],
        False,
        True,
    ),
]


@pytest.mark.parametrize(
    ("gold", "predicted", "ordered", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_results_match(
    gold: list[tuple[Any, ...]], predicted: list[tuple[Any, ...]], ordered: bool, match: bool
) -> None:
    assert results_match(rs(gold), rs(predicted), ordered=ordered) is match
    if match:
        assert results_match(rs(predicted), rs(gold), ordered=ordered), "match is symmetric"


def test_empty_results_match_only_with_the_same_width() -> None:
    assert results_match(rs([], ("a",)), rs([], ("b",)), ordered=False)
    assert not results_match(rs([], ("a",)), rs([], ("a", "b")), ordered=False)


def test_column_names_do_not_matter() -> None:
    assert results_match(rs([(1,)], ("n",)), rs([(1,)], ("count",)), ordered=True)


def test_nan_equals_nan() -> None:
    assert values_equal(float("nan"), float("nan"))
    assert not values_equal(float("nan"), 1.0)


@pytest.mark.parametrize(
    ("gold", "predicted", "ordered", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_equal_hashes_imply_match(
    gold: list[tuple[Any, ...]], predicted: list[tuple[Any, ...]], ordered: bool, match: bool
) -> None:
    if result_hash(rs(gold), ordered=ordered) == result_hash(rs(predicted), ordered=ordered):
        assert match


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
