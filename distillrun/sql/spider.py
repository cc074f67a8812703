"""The official Spider test-suite evaluator's rules, for scores comparable with published ones.

`distillrun sql compare --spider` and `evaluation.comparison.mode: spider` follow the documented
semantics of the official evaluator (taoyds/test-suite-sql-eval, `evaluation.py --etype exec`,
on one database), which are looser than distillrun's default rules (`sql.compare`):

- Before running, both queries are rewritten as plain text: `> =`, `< =` and `! =` lose their
  inner space (also inside string literals, as the evaluator does); unless `keep_distinct`,
  every DISTINCT keyword is removed, also inside aggregates (`COUNT(DISTINCT x)` counts every
  row); and `YEAR(CURDATE())` becomes 2020.
- Row order counts when the rewritten gold text contains `order by` anywhere (a subquery's
  ORDER BY included), not only at the top level.
- Two empty results are equal whatever their columns; otherwise the results must have the same
  number of rows and of columns (read off their first rows).
- Values are compared with Python's `==` as the sandbox returns them: 3 equals 3.0 and True
  equals 1, but there is no tolerance at all (0.1 + 0.2 differs from 0.3).
- A necessary condition first: each row's values, sorted by their text followed by their type
  name, must give the same rows in order (ordered) or the same set of rows (unordered). This
  sorting can separate rows that are equal under `==`, such as (1, 1.5) and (1.0, 1.5): the
  evaluator then calls them different, and so does this module.
- Then the results are equal when some assignment of the predicted columns to the gold columns
  makes the rows equal in order (ordered) or as bags (unordered).

What distillrun keeps in this mode: both queries still pass the static checks and run in the
sandbox under its limits, a query whose gold SQL fails is counted apart (the evaluator stops
with an assertion), and a result cut at the row cap is never judged equal (`sql.pairs`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlglot.dialects.dialect import Dialect as SqlglotDialect
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import TokenType

from distillrun.api.spec import Dialect
from distillrun.sql.compare import MAX_COLUMN_MAPPINGS, column_mappings

Row = tuple[Any, ...]

_SPACED_OPERATORS = (("> =", ">="), ("< =", "<="), ("! =", "!="))
_CURRENT_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)
CURRENT_YEAR = "2020"
"""What the evaluator puts in place of YEAR(CURDATE())."""


def rewrite(sql: str, dialect: Dialect, *, keep_distinct: bool) -> str:
    """`sql` as the evaluator runs it: spaced operators joined, DISTINCT removed (unless
    `keep_distinct`), YEAR(CURDATE()) replaced by 2020."""
    for spaced, joined in _SPACED_OPERATORS:
        sql = sql.replace(spaced, joined)
    if not keep_distinct:
        sql = _without_distinct(sql, dialect)
    return _CURRENT_YEAR.sub(CURRENT_YEAR, sql)


def order_matters(gold_sql: str) -> bool:
    """Whether row order counts: the rewritten gold text contains `order by` (any case)."""
    return "order by" in gold_sql.lower()


def _without_distinct(sql: str, dialect: Dialect) -> str:
    """`sql` with every DISTINCT keyword cut out, as tokens (so a string or a quoted name
    'distinct' stays). Text that does not tokenize is left as it is: it fails to run anyway."""
    try:
        tokens = SqlglotDialect.get_or_raise(str(dialect)).tokenize(sql)
    except SqlglotError:
        return sql
    kept: list[str] = []
    position = 0
    for token in tokens:
        if token.token_type == TokenType.DISTINCT:
            kept.append(sql[position : token.start])
            position = token.end + 1
    kept.append(sql[position:])
    return "".join(kept)


def results_equal(gold: Sequence[Row], predicted: Sequence[Row], *, ordered: bool) -> bool:
    """The evaluator's equality of two whole results (see the module docstring)."""
    if not gold and not predicted:
        return True
    if len(gold) != len(predicted) or len(gold[0]) != len(predicted[0]):
        return False
    if not _same_sorted_rows(gold, predicted, ordered=ordered):
        return False
    width = len(gold[0])
    gold_columns = [[row[i] for row in gold] for i in range(width)]
    predicted_columns = [[row[i] for row in predicted] for i in range(width)]
    bags = [Counter(column) for column in predicted_columns]
    candidates = [
        [j for j in range(width) if Counter(gold_columns[i]) == bags[j]] for i in range(width)
    ]
    gold_rows = list(gold)
    for tried, mapping in enumerate(column_mappings(candidates, predicted_columns)):
        if tried >= MAX_COLUMN_MAPPINGS:
            return False
        permuted = [tuple(row[j] for j in mapping) for row in predicted]
        if ordered and gold_rows == permuted:
            return True
        if not ordered and Counter(gold_rows) == Counter(permuted):
            return True
    return False


def _same_sorted_rows(gold: Sequence[Row], predicted: Sequence[Row], *, ordered: bool) -> bool:
    """The evaluator's quick test: rows with their values sorted by text and type name."""
    gold_sorted = [_sorted_values(row) for row in gold]
    predicted_sorted = [_sorted_values(row) for row in predicted]
    if ordered:
        return gold_sorted == predicted_sorted
    return set(gold_sorted) == set(predicted_sorted)


def _sorted_values(row: Row) -> Row:
    return tuple(sorted(row, key=lambda value: str(value) + str(type(value))))
