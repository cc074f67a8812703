"""The synthetic teacher's SQL on all four engines: every example of ten shop shards passes the
validate stage's checks and runs in SQLite, DuckDB, PostgreSQL and MariaDB (real servers,
`tests/fakes/sql_servers.py`), and the same question gets the same answer on every engine, so
the dialect renderings of window functions, CTEs, CASE, EXISTS, set operations and date parts
all mean what the question says."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.compare import results_match
from distillrun.sql.judge import judge
from distillrun.sql.sandbox import ResultSet, Sandbox, open_sandbox
from distillrun.sql.schema import parse_schema
from distillrun.teacher.base import GeneratedExample, ShardRequest
from distillrun.teacher.synthetic import SyntheticTeacher
from tests.fakes.sql_servers import ServersMissing, check_installed, sql_servers

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"
QUESTIONS = (
    "How many customers signed up in each country?",
    "What are the five most expensive products?",
    "Which customers placed more than three orders?",
    "What is the total revenue per product category?",
)
SHARDS = 10

Answers = dict[Dialect, list[tuple[GeneratedExample, ResultSet]]]


def _examples(dialect: Dialect) -> list[GeneratedExample]:
    schema = parse_schema((SHOP / "schema.sql").read_text(), dialect)
    teacher = SyntheticTeacher()
    return [
        example
        for index in range(SHARDS)
        for example in teacher.write_shard(
            ShardRequest(f"k{index}", index, 40, 7, schema, QUESTIONS, True)
        ).examples
    ]


@pytest.fixture(scope="module")
def answers() -> Iterator[Answers]:
    """Every example of every dialect, judged and run in that dialect's sandbox."""
    try:
        check_installed()
    except ServersMissing as missing:
        pytest.fail(str(missing), pytrace=False)
    seed = (SHOP / "seed.sql").read_text()
    limits = SandboxSpec(statement_timeout_ms=5000, max_rows=1000)
    with ExitStack() as stack:
        servers = stack.enter_context(sql_servers())
        found: Answers = {}
        for dialect in Dialect:
            schema = parse_schema((SHOP / "schema.sql").read_text(), dialect)
            server = servers.get(dialect)
            box: Sandbox = stack.enter_context(
                open_sandbox(schema, seed, limits, server.target if server else None)
            )
            found[dialect] = []
            for example in _examples(dialect):
                verdict, _, result = judge(example.sql, schema, box)
                assert verdict.ok and result is not None, f"{dialect}: {example.sql}: {verdict}"
                found[dialect].append((example, result))
        yield found


def test_every_example_passes_the_checks_and_runs_on_every_engine(answers: Answers) -> None:
    assert {len(examples) for examples in answers.values()} == {SHARDS * 40}


def _deterministic(sql: str) -> bool:
    """Whether the result is fixed by the data: a LIMIT or ROW_NUMBER after an ORDER BY that
    ties may leave to the engine's choice is not."""
    return "LIMIT" not in sql and "ROW_NUMBER()" not in sql


def _rounded(result: ResultSet) -> ResultSet:
    """Numbers to 3 decimals: MySQL's AVG of integers keeps 4, the others a float's 15."""

    def plain(value: object) -> object:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return round(float(value), 3) if is_number else value  # type: ignore[arg-type]

    rows = tuple(tuple(plain(v) for v in row) for row in result.rows)
    return dataclasses.replace(result, rows=rows)


def test_the_same_question_gets_the_same_answer_on_every_engine(answers: Answers) -> None:
    reference = answers[Dialect.SQLITE]
    compared = 0
    differing: list[str] = []
    for dialect in (Dialect.DUCKDB, Dialect.POSTGRES, Dialect.MYSQL):
        for (gold, gold_result), (other, result) in zip(reference, answers[dialect], strict=True):
            assert other.question == gold.question
            if not _deterministic(gold.sql):
                continue
            # as bags: ORDER BY is the same text everywhere, and ties may come in any order
            if not results_match(_rounded(gold_result), _rounded(result), ordered=False):
                differing.append(
                    f"{dialect}: {gold.question}\n  {other.sql}\n  {result.rows[:4]}\n"
                    f"  sqlite: {gold_result.rows[:4]}"
                )
            compared += 1
    assert not differing, "\n".join(differing)
    assert compared > 0.6 * 3 * len(reference)
