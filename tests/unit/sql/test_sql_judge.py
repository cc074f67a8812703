"""judge(): every Reason produced by a real query, with the execution receipt."""

from __future__ import annotations

import pytest

from distillrun.api.spec import Dialect
from distillrun.sql.checks import check_query
from distillrun.sql.errors import QueryFailed
from distillrun.sql.judge import judge
from distillrun.sql.sandbox import Sandbox
from distillrun.sql.schema import SchemaInfo
from distillrun.sql.verdict import Reason, Verdict

RUNAWAY = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r"

REASONS = {
    Reason.PARSE: "SELEC name FROM customers",
    Reason.NOT_SELECT: "DELETE FROM orders",
    Reason.MULTIPLE_STATEMENTS: "SELECT 1; DROP TABLE customers",
    Reason.UNKNOWN_TABLE: "SELECT * FROM customer",
    Reason.UNKNOWN_COLUMN: "SELECT nme FROM customers",
    Reason.FORBIDDEN: "SELECT * FROM read_csv('/etc/passwd')",
    Reason.EXECUTION_ERROR: "SELECT name FROM customers WHERE MAX(id) > 1",
    Reason.TIMEOUT: RUNAWAY,
}


CROSS_JOIN = (
    "SELECT SUM(a.quantity * b.quantity * c.quantity * d.quantity) "
    "FROM order_items a, order_items b, order_items c, order_items d"
)
"""A timeout for MariaDB, which stops a runaway recursive CTE after 1000 rounds by itself."""


@pytest.mark.parametrize("reason", list(REASONS), ids=str)
def test_each_reason_from_a_real_query(
    reason: Reason, dialect: Dialect, schema: SchemaInfo, sandbox: Sandbox
) -> None:
    sql = CROSS_JOIN if (reason, dialect) == (Reason.TIMEOUT, Dialect.MYSQL) else REASONS[reason]
    verdict, checked, result = judge(sql, schema, sandbox)
    assert (verdict.ok, verdict.reason) == (False, reason), verdict.message
    assert verdict.message
    assert result is None and verdict.rows is None and verdict.result_hash is None
    static = reason not in (Reason.EXECUTION_ERROR, Reason.TIMEOUT)
    assert (checked is None) is static


def test_empty_result_is_refused_only_when_asked(schema: SchemaInfo, sandbox: Sandbox) -> None:
    sql = "SELECT name FROM customers WHERE country = 'Atlantis'"
    accepted, _, _ = judge(sql, schema, sandbox)
    assert accepted.ok and accepted.rows == 0
    refused, checked, result = judge(sql, schema, sandbox, reject_empty=True)
    assert (refused.ok, refused.reason) == (False, Reason.EMPTY_RESULT)
    assert checked is not None and result is not None and result.rows == ()
    assert refused.rows == 0 and refused.result_hash == accepted.result_hash


def test_duplicates_are_found_through_the_normalized_form(schema: SchemaInfo) -> None:
    """DUPLICATE is the validate stage's verdict; it rests on equal normalized forms."""
    first = check_query("SELECT c.name FROM customers c WHERE c.country = 'US'", schema)
    second = check_query("select x.NAME from customers as x where x.country='US'", schema)
    assert first.normalized == second.normalized
    duplicate = Verdict(ok=False, reason=Reason.DUPLICATE, message="same as example 1")
    assert Verdict.model_validate_json(duplicate.model_dump_json()) == duplicate


def test_accepted_verdict_carries_an_execution_receipt(
    schema: SchemaInfo, sandbox: Sandbox
) -> None:
    verdict, checked, result = judge(
        "SELECT country, COUNT(*) FROM customers GROUP BY country ORDER BY 2 DESC, 1",
        schema,
        sandbox,
    )
    assert verdict.ok and verdict.reason is None and verdict.message == ""
    assert checked is not None and checked.ordered and checked.tables == ("customers",)
    assert result is not None and verdict.rows == len(result.rows) > 0
    assert verdict.ms is not None and verdict.ms >= 0
    assert verdict.result_hash is not None and len(verdict.result_hash) == 64


def test_without_a_sandbox_only_static_checks_run(schemas: dict[Dialect, SchemaInfo]) -> None:
    verdict, checked, result = judge(RUNAWAY, schemas[Dialect.SQLITE], None)
    assert verdict == Verdict(ok=True) and checked is not None and result is None


GUARDED = {
    Dialect.SQLITE: "DROP TABLE customers",
    Dialect.DUCKDB: "DROP TABLE customers",
    Dialect.POSTGRES: "SELECT pg_read_file('/etc/passwd')",
    Dialect.MYSQL: "DROP TABLE customers",
}


def test_engine_guard_reason_reaches_the_verdict(
    dialect: Dialect, schema: SchemaInfo, sandbox: Sandbox
) -> None:
    """What the engine itself refuses keeps its class even if it slipped past the checks."""
    with pytest.raises(QueryFailed) as caught:
        sandbox.execute(GUARDED[dialect])
    assert caught.value.reason in (Reason.FORBIDDEN, Reason.NOT_SELECT)
