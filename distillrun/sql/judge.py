"""The one verdict path shared by the validate stage (teacher SQL) and the evaluate stage
(student SQL): static checks, then execution in the sandbox when one is given.

Keeping it in one place means a query is accepted for training under exactly the rules by
which a student's query is later scored.
"""

from __future__ import annotations

from distillrun.sql.checks import CheckedQuery, check_query
from distillrun.sql.compare import result_hash
from distillrun.sql.errors import QueryFailed, QueryRejected, QueryTimeout
from distillrun.sql.sandbox import ResultSet, Sandbox
from distillrun.sql.schema import SchemaInfo
from distillrun.sql.verdict import Reason, Verdict


def judge(
    sql: str, schema: SchemaInfo, sandbox: Sandbox | None, *, reject_empty: bool = False
) -> tuple[Verdict, CheckedQuery | None, ResultSet | None]:
    """Checks `sql` and, given a sandbox, runs it; never raises for a bad query.

    Returns the verdict, the checked query (None when a static check refused it) and the
    result (None unless it ran). With `reject_empty`, a query that runs but returns no rows
    is refused as EMPTY_RESULT (its result is still returned). Only a broken sandbox raises
    (`SandboxError`), because that is not the query's fault and must not be counted as such.
    """
    try:
        checked = check_query(sql, schema)
    except QueryRejected as rejected:
        return Verdict(ok=False, reason=rejected.reason, message=rejected.message), None, None
    if sandbox is None:
        return Verdict(ok=True), checked, None
    verdict, result = execute_checked(checked, sandbox, reject_empty=reject_empty)
    return verdict, checked, result


def execute_checked(
    checked: CheckedQuery, sandbox: Sandbox, *, reject_empty: bool = False
) -> tuple[Verdict, ResultSet | None]:
    """The execution half of `judge`, for a query that passed the static checks."""
    try:
        result = sandbox.execute(checked.sql)
    except QueryTimeout as timeout:
        return Verdict(ok=False, reason=Reason.TIMEOUT, message=timeout.message), None
    except QueryFailed as failed:
        return Verdict(ok=False, reason=failed.reason, message=failed.message), None
    receipt = {
        "rows": len(result.rows),
        "ms": result.ms,
        "result_hash": result_hash(result, ordered=checked.ordered),
    }
    if reject_empty and not result.rows:
        empty = Verdict(
            ok=False, reason=Reason.EMPTY_RESULT, message="the query returned no rows", **receipt
        )
        return empty, result
    return Verdict(ok=True, **receipt), result
