"""Execution-accuracy comparison of two whole results: distillrun's default (strict) rules.

A predicted query is right when its result matches the gold query's result: the same number
of rows and columns, the same rows as a bag (duplicates count, order only when the gold query
orders them), columns matched by content whatever their order or names, NULL equal to NULL,
and numbers equal under one rule, the same with or without ORDER BY (`values_equal`):

- two integers (booleans count as 0 and 1) are equal only when they are the same number;
- when either is a float, they are equal when |a - b| <= 1e-9 * max(|a|, |b|): floating-point
  noise (0.1 + 0.2 against 0.3, a sum added up in another order) but never a missing row of a
  sum; 3 equals 3.0, and NaN equals NaN.

A cut result (`ResultSet.truncated`) never matches anything: its missing rows are unknown.
Deciding what such a pair means (wrong, or unjudgeable) is `sql.pairs`' job. The official
Spider evaluator's looser rules live in `sql.spider`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from distillrun.sql.sandbox.base import ResultSet

REL_TOL = 1e-9
"""Relative tolerance between two numbers when either is a float (see the module docstring)."""
MAX_COLUMN_MAPPINGS = 10_000
"""Column assignments tried at most; reached only by results with many interchangeable
columns that are not identical, where giving up (no match) beats running for minutes."""

Row = tuple[Any, ...]


def values_equal(a: Any, b: Any) -> bool:
    """Equality of two plain values: integers exactly, floats within `REL_TOL`, NULL == NULL,
    anything else exactly and of the same type."""
    if a is None or b is None:
        return a is None and b is None
    if _is_number(a) and _is_number(b):
        if not (isinstance(a, float) or isinstance(b, float)):
            return bool(a == b)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def results_match(gold: ResultSet, predicted: ResultSet, *, ordered: bool) -> bool:
    """Whether `predicted` is the same result as `gold` (see the module docstring).

    `ordered` should be the gold query's `CheckedQuery.ordered`. A truncated result (on either
    side) never matches.
    """
    if gold.truncated or predicted.truncated:
        return False
    width = len(gold.columns)
    if width != len(predicted.columns) or len(gold.rows) != len(predicted.rows):
        return False
    if not gold.rows:
        return True
    gold_columns = _columns(gold.rows, width)
    predicted_columns = _columns(predicted.rows, width)
    candidates = [
        [j for j in range(width) if _same_bag(gold_columns[i], predicted_columns[j])]
        for i in range(width)
    ]
    for tried, mapping in enumerate(column_mappings(candidates, predicted_columns)):
        if tried >= MAX_COLUMN_MAPPINGS:
            return False
        permuted = [tuple(row[j] for j in mapping) for row in predicted.rows]
        if ordered and all(_rows_equal(g, p) for g, p in zip(gold.rows, permuted, strict=True)):
            return True
        if not ordered and _same_row_bag(list(gold.rows), permuted):
            return True
    return False


def result_hash(result: ResultSet, *, ordered: bool) -> str:
    """sha256 fingerprint of a result, blind to column names and, unless `ordered`, row order.

    Numbers are rounded to 10 significant digits and integral floats count as integers, so
    equal hashes of whole (untruncated) results imply `results_match`. Columns are put in a
    canonical order by their contents, so most column permutations hash alike too; only
    columns with the same values in a different row pairing can make matching results hash
    differently.
    """
    width = len(result.columns)
    rows = [tuple(_canonical(v) for v in row) for row in result.rows]
    columns = _columns(rows, width)
    order = sorted(range(width), key=lambda i: _bag_key(columns[i]))
    canonical = [[row[i] for i in order] for row in rows]
    lines = [_json(row) for row in canonical]
    if not ordered:
        lines.sort()
    payload = json.dumps({"width": width, "ordered": ordered, "rows": lines})
    return hashlib.sha256(payload.encode()).hexdigest()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


def _columns(rows: Sequence[Row], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


def _sort_key(value: Any) -> tuple[int, Any]:
    """A total order over plain values: NULL, numbers, strings, bytes, then anything else.
    Numbers keep their type (Python orders int against float exactly), so integers too large
    for a float still sort apart."""
    if value is None:
        return (0, 0)
    if _is_number(value):
        return (1, -math.inf if isinstance(value, float) and math.isnan(value) else value)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, bytes):
        return (3, value)
    return (4, repr(value))


def _same_bag(a: list[Any], b: list[Any]) -> bool:
    """Multiset equality of one column's values, tolerant for numbers.

    Sorting both sides pairs up values that are within tolerance of each other, which is
    exact for a single dimension.
    """
    return all(
        values_equal(x, y)
        for x, y in zip(sorted(a, key=_sort_key), sorted(b, key=_sort_key), strict=True)
    )


def column_mappings(candidates: list[list[int]], columns: list[list[Any]]) -> Iterator[list[int]]:
    """Assignments of predicted columns to gold columns, each gold column to a candidate.

    Predicted columns with identical contents are interchangeable, so only the first unused
    one of each such group is tried.
    """
    width = len(candidates)
    used = [False] * width

    def extend(mapping: list[int]) -> Iterator[list[int]]:
        if len(mapping) == width:
            yield list(mapping)
            return
        tried: list[list[Any]] = []
        for j in candidates[len(mapping)]:
            if used[j] or columns[j] in tried:
                continue
            tried.append(columns[j])
            used[j] = True
            mapping.append(j)
            yield from extend(mapping)
            mapping.pop()
            used[j] = False

    yield from extend([])


def _rows_equal(a: Row, b: Row) -> bool:
    return all(values_equal(x, y) for x, y in zip(a, b, strict=True))


def _same_row_bag(gold: list[Row], predicted: list[Row]) -> bool:
    """Multiset equality of rows, tolerant for numbers.

    Exact comparison of canonical rows settles almost every case; only when it fails and
    either side holds floats (the only values with a tolerance) are rows paired greedily
    within groups that agree on everything but their numbers.
    """
    if Counter(_exact(r) for r in gold) == Counter(_exact(r) for r in predicted):
        return True
    if not any(isinstance(v, float) for row in (*gold, *predicted) for v in row):
        return False
    groups: dict[Row, list[Row]] = {}
    for row in predicted:
        groups.setdefault(_without_numbers(row), []).append(row)
    for row in gold:
        group = groups.get(_without_numbers(row), [])
        match = next((i for i, other in enumerate(group) if _rows_equal(row, other)), None)
        if match is None:
            return False
        group.pop(match)
    return True


def _exact(row: Row) -> Row:
    return tuple(_canonical(v) for v in row)


def _without_numbers(row: Row) -> Row:
    return tuple(None if _is_number(v) else v for v in row)


def _canonical(value: Any) -> Any:
    """Hashable exact form: integral numbers as int, other floats to 10 significant digits."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == math.floor(value) and abs(value) < 2**53:
            return int(value)
        return float(f"{value:.10g}")
    if isinstance(value, tuple):
        return tuple(_canonical(v) for v in value)
    return value


def _json(value: Any) -> str:
    return json.dumps(value, default=_bytes_as_json)


def _bytes_as_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    raise TypeError(f"{type(value).__name__} is not a plain value")


def _bag_key(column: list[Any]) -> str:
    return _json(sorted(_json(v) for v in column))
