"""Judging one gold/predicted pair: the rule behind `distillrun sql compare` and every
execution-accuracy number (the evaluate stage's scores, the training sample).

The outcome of a pair is one of:

- `correct` or `wrong_result`: both queries ran and their results match, or differ;
- the predicted query's own rejection reason (parse, unknown_column, timeout, ...), or `no_sql`
  when the answer held no SQL: wrong;
- counted apart (`UNSCORED`): never correct, and not in the accuracy's denominator:
  - `gold_failed`: the gold SQL did not run;
  - `gold_empty` (strict mode only): the gold result has no rows, so a query that returns
    nothing (`... WHERE 1 = 0`) would match it whatever it asks;
  - `unjudgeable`: both results were cut at the comparison's row cap and have the same number
    of rows (or could not be counted), so whether they match is unknown.

Results are fetched up to `ComparisonSpec.max_rows`, and a cut result is never judged equal.
What is known may still prove a pair wrong: a different number of columns; a cut result against
a whole one (their row counts differ); two cut ones whose rows, counted with `SELECT COUNT(*)`
around each query, number differently; or, when row order counts, first rows that differ.
Otherwise the pair is unjudgeable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from distillrun.api.spec import ComparisonMode, ComparisonSpec, SandboxSpec
from distillrun.sql import spider
from distillrun.sql.checks import CheckedQuery
from distillrun.sql.compare import results_match
from distillrun.sql.errors import QueryFailed, QueryTimeout
from distillrun.sql.judge import judge
from distillrun.sql.sandbox import ResultSet, Sandbox
from distillrun.sql.schema import SchemaInfo
from distillrun.sql.verdict import Verdict

CORRECT = "correct"
WRONG_RESULT = "wrong_result"
NO_SQL = "no_sql"
GOLD_FAILED = "gold_failed"
GOLD_EMPTY = "gold_empty"
UNJUDGEABLE = "unjudgeable"
UNSCORED = frozenset({GOLD_FAILED, GOLD_EMPTY, UNJUDGEABLE})
"""Outcomes counted apart from the execution accuracy (neither correct nor wrong)."""


@dataclass(frozen=True)
class PairVerdict:
    """How one pair was judged. `predicted` and `predicted_result` are None when the
    prediction was not run (no SQL, or the gold failed); `gold_result` when the gold failed."""

    outcome: str
    message: str
    gold: Verdict
    gold_result: ResultSet | None
    predicted: Verdict | None
    predicted_result: ResultSet | None

    @property
    def match(self) -> bool:
        return self.outcome == CORRECT

    @property
    def scored(self) -> bool:
        return self.outcome not in UNSCORED


def comparison_limits(limits: SandboxSpec, comparison: ComparisonSpec) -> SandboxSpec:
    """The sandbox limits to score under: the run's, with the comparison's row cap."""
    return limits.model_copy(update={"max_rows": comparison.max_rows})


def judge_pair(
    gold_sql: str,
    predicted_sql: str | None,
    schema: SchemaInfo,
    sandbox: Sandbox,
    comparison: ComparisonSpec,
) -> PairVerdict:
    """Runs the gold and the predicted query in `sandbox` and compares their results under
    `comparison` (see the module docstring). `sandbox` should fetch `comparison.max_rows`
    rows (`comparison_limits`). Only a broken sandbox raises (`SandboxError`)."""
    is_spider = comparison.mode == ComparisonMode.SPIDER
    if is_spider:
        gold_sql = spider.rewrite(gold_sql, schema.dialect, keep_distinct=comparison.keep_distinct)
    gold, gold_checked, gold_result = judge(gold_sql, schema, sandbox)
    if not gold.ok or gold_checked is None or gold_result is None:
        return PairVerdict(
            GOLD_FAILED, f"the gold SQL failed: {gold.message}", gold, None, None, None
        )
    gold_empty = not is_spider and not gold_result.rows
    empty_message = (
        "the gold result is empty, so any query returning no rows would match it: "
        "scored apart from the accuracy"
    )
    if predicted_sql is None:
        if gold_empty:
            return PairVerdict(GOLD_EMPTY, empty_message, gold, gold_result, None, None)
        return PairVerdict(NO_SQL, "no SQL found in the answer", gold, gold_result, None, None)
    if is_spider:
        predicted_sql = spider.rewrite(
            predicted_sql, schema.dialect, keep_distinct=comparison.keep_distinct
        )
    predicted, predicted_checked, predicted_result = judge(predicted_sql, schema, sandbox)

    def verdict(outcome: str, message: str) -> PairVerdict:
        return PairVerdict(outcome, message, gold, gold_result, predicted, predicted_result)

    if gold_empty:
        return verdict(GOLD_EMPTY, empty_message)
    if not predicted.ok or predicted_checked is None or predicted_result is None:
        reason = str(predicted.reason) if predicted.reason else WRONG_RESULT
        return verdict(reason, predicted.message or "the query returned no result")
    ordered = spider.order_matters(gold_sql) if is_spider else gold_checked.ordered

    def equal(gold_rows: ResultSet, predicted_rows: ResultSet) -> bool:
        if is_spider:
            return spider.results_equal(gold_rows.rows, predicted_rows.rows, ordered=ordered)
        return results_match(gold_rows, predicted_rows, ordered=ordered)

    if gold_result.truncated or predicted_result.truncated:
        outcome, message = _cut_results(
            (gold_checked, gold_result),
            (predicted_checked, predicted_result),
            sandbox,
            equal if ordered else None,
        )
        return verdict(outcome, message)
    if equal(gold_result, predicted_result):
        return verdict(CORRECT, "")
    return verdict(WRONG_RESULT, "runs, but its result differs from the gold result")


def _cut_results(
    gold: tuple[CheckedQuery, ResultSet],
    predicted: tuple[CheckedQuery, ResultSet],
    sandbox: Sandbox,
    equal_in_order: Callable[[ResultSet, ResultSet], bool] | None,
) -> tuple[str, str]:
    """The outcome when at least one result was cut at the row cap: wrong when what is known
    already differs (widths, row counts, or, when order counts, the first rows), else
    unjudgeable. `equal_in_order` is the mode's equality when row order counts, else None."""
    (gold_checked, gold_result), (predicted_checked, predicted_result) = gold, predicted
    kept = (len(gold_result.rows), len(predicted_result.rows))
    widths = (len(gold_result.columns), len(predicted_result.columns))
    if widths[0] != widths[1]:
        return (
            WRONG_RESULT,
            f"the gold result has {widths[0]} columns and the predicted {widths[1]}",
        )
    if not (gold_result.truncated and predicted_result.truncated):
        longer = "gold" if gold_result.truncated else "predicted"
        return (
            WRONG_RESULT,
            f"the {longer} result has more than {max(kept):,} rows and the other {min(kept):,}",
        )
    counts = (_row_count(gold_checked, sandbox), _row_count(predicted_checked, sandbox))
    if None not in counts and counts[0] != counts[1]:
        return (
            WRONG_RESULT,
            f"the gold result has {counts[0]:,} rows and the predicted {counts[1]:,}",
        )
    if equal_in_order is not None and not equal_in_order(
        replace(gold_result, truncated=False), replace(predicted_result, truncated=False)
    ):
        return WRONG_RESULT, f"row order counts, and the first {kept[0]:,} rows already differ"
    counted = f" ({counts[0]:,} each)" if counts[0] is not None and None not in counts else ""
    return (
        UNJUDGEABLE,
        f"both results have more than {kept[0]:,} rows{counted}, the most fetched to compare: "
        "raise spec.evaluation.comparison.maxRows (sql compare --max-rows) to judge it",
    )


def _row_count(checked: CheckedQuery, sandbox: Sandbox) -> int | None:
    """The number of rows `checked` returns, counted by the engine; None when the count
    query fails (a subquery the engine refuses, such as MySQL's duplicate column names)."""
    body = checked.sql.rstrip().rstrip(";")
    try:
        result = sandbox.execute(f"SELECT COUNT(*) FROM (\n{body}\n) AS distillrun_rows")
    except (QueryFailed, QueryTimeout):
        return None
    value = result.rows[0][0] if result.rows and result.rows[0] else None
    return value if isinstance(value, int) else None
