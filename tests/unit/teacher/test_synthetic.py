"""The synthetic teacher: deterministic shards of valid, varied, executable examples.

Execution runs on real engines: stdlib sqlite3 and DuckDB, each loaded with
examples/shop/schema.sql + seed.sql. Postgres and MySQL output is checked by parsing it back
with sqlglot in that dialect.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from distillrun.api.spec import Dialect
from distillrun.sql.constructs import CONSTRUCTS
from distillrun.sql.schema import ColumnKind, SchemaInfo, parse_schema
from distillrun.teacher.base import ShardOutput, ShardRequest, Teacher, shard_key
from distillrun.teacher.diversity import QuestionIndex
from distillrun.teacher.synthetic import (
    GENERATOR_VERSION,
    SyntheticTeacher,
    analytic,
    joins,
    logic,
    phrasings,
    single,
)
from distillrun.teacher.synthetic.catalog import Catalog
from distillrun.teacher.synthetic.context import TOPICS
from distillrun.teacher.synthetic.naming import (
    Role,
    column_phrase,
    plural,
    role_of,
    singular,
    superlatives,
    table_noun,
)
from distillrun.teacher.synthetic.seeds import read_seed_questions
from distillrun.teacher.synthetic.sqlkit import Renderer, column, year_of

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"
SHOP_DDL = (SHOP / "schema.sql").read_text()
SHOP_SEED = (SHOP / "seed.sql").read_text()
QUESTIONS = (
    "How many customers signed up in each country?",
    "What are the five most expensive products?",
    "Which customers placed more than three orders?",
    "What is the total revenue per product category?",
)
SHARDS = range(10)


def _request(
    schema: SchemaInfo,
    index: int,
    *,
    teacher: Teacher | None = None,
    count: int = 40,
    seed: int = 7,
    questions: tuple[str, ...] = QUESTIONS,
    reasoning: bool = True,
) -> ShardRequest:
    key = shard_key(schema, questions, teacher or SyntheticTeacher(), seed, count, index)
    return ShardRequest(
        key=key,
        index=index,
        count=count,
        seed=seed,
        schema=schema,
        seed_questions=questions,
        reasoning=reasoning,
    )


def _shards(dialect: Dialect, questions: tuple[str, ...] = QUESTIONS) -> list[ShardOutput]:
    schema = parse_schema(SHOP_DDL, dialect)
    teacher = SyntheticTeacher()
    return [teacher.write_shard(_request(schema, i, questions=questions)) for i in SHARDS]


@pytest.fixture(scope="module")
def sqlite_shards() -> list[ShardOutput]:
    return _shards(Dialect.SQLITE)


@pytest.fixture(scope="module")
def shop_sqlite() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.executescript(SHOP_DDL)
    db.executescript(SHOP_SEED)
    return db


def _row_share(outputs: list[ShardOutput], run: Callable[[str], list[Any]]) -> float:
    examples = [ex for out in outputs for ex in out.examples]
    with_rows = 0
    for ex in examples:
        try:
            rows = run(ex.sql)
        except Exception as error:  # the message names the failing SQL
            raise AssertionError(f"{ex.sql!r} failed: {error}") from error
        with_rows += bool(rows)
    return with_rows / len(examples)


# -- the Teacher contract ----------------------------------------------------------------------


def test_same_request_gives_byte_identical_output() -> None:
    schema = parse_schema(SHOP_DDL, Dialect.SQLITE)
    first = SyntheticTeacher().write_shard(_request(schema, 3))
    second = SyntheticTeacher().write_shard(_request(schema, 3))
    assert first.model_dump_json() == second.model_dump_json()


_SHARD_DIGEST = """
import hashlib, sys
from pathlib import Path
from distillrun.api.spec import Dialect
from distillrun.sql.schema import parse_schema
from distillrun.teacher.base import ShardRequest
from distillrun.teacher.synthetic import SyntheticTeacher
schema = parse_schema(Path(sys.argv[1]).read_text(), Dialect.POSTGRES)
request = ShardRequest("k", 5, 40, 11, schema, tuple(sys.argv[2:]), True)
print(hashlib.sha256(SyntheticTeacher().write_shard(request).model_dump_json().encode()).hexdigest())
"""


def test_output_does_not_depend_on_the_process_hash_seed() -> None:
    """Shard keys promise resumable, byte-identical shards: no set or hash order may leak."""
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _SHARD_DIGEST, str(SHOP / "schema.sql"), *QUESTIONS],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        digests.add(done.stdout.strip())
    assert len(digests) == 1


def test_different_shard_indexes_give_different_examples() -> None:
    schema = parse_schema(SHOP_DDL, Dialect.SQLITE)
    teacher = SyntheticTeacher()
    one = {ex.sql for ex in teacher.write_shard(_request(schema, 0)).examples}
    two = {ex.sql for ex in teacher.write_shard(_request(schema, 1)).examples}
    assert len(one & two) < len(one) / 2


def test_different_seeds_give_different_examples() -> None:
    schema = parse_schema(SHOP_DDL, Dialect.SQLITE)
    teacher = SyntheticTeacher()
    one = teacher.write_shard(_request(schema, 0, seed=1))
    two = teacher.write_shard(_request(schema, 0, seed=2))
    assert [ex.sql for ex in one.examples] != [ex.sql for ex in two.examples]


def test_examples_are_complete_and_free(sqlite_shards: list[ShardOutput]) -> None:
    schema = parse_schema(SHOP_DDL, Dialect.SQLITE)
    for out in sqlite_shards:
        assert len(out.examples) == 40
        assert out.usage.input_tokens == out.usage.output_tokens == out.usage.requests == 0
        assert out.usage.usd == 0.0
        assert out.malformed == []
        for i, ex in enumerate(out.examples):
            assert ex.id == f"{out.key}-{i:03d}"
            assert ex.shard == out.key
            assert ex.teacher == "synthetic"
            assert ex.explanation.strip()
            assert ex.constructs == sorted(set(ex.constructs))
            assert ex.tables
            assert all(schema.table(t) is not None for t in ex.tables)


def test_explanation_is_written_whatever_reasoning_says() -> None:
    schema = parse_schema(SHOP_DDL, Dialect.SQLITE)
    teacher = SyntheticTeacher()
    with_reasoning = teacher.write_shard(_request(schema, 2, reasoning=True))
    without = teacher.write_shard(_request(schema, 2, reasoning=False))
    assert [e.explanation for e in with_reasoning.examples] == [
        e.explanation for e in without.examples
    ]


def test_name_and_parameters_decide_shard_keys() -> None:
    schema = parse_schema(SHOP_DDL, Dialect.SQLITE)
    default, focused = SyntheticTeacher(), SyntheticTeacher(seed_focus=0.9)
    assert default.name == "synthetic"
    assert default.parameters == {"generator": GENERATOR_VERSION, "seed_focus": 0.35}
    assert _request(schema, 0, teacher=default).key != _request(schema, 0, teacher=focused).key


def test_seed_focus_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="seed_focus"):
        SyntheticTeacher(seed_focus=1.5)


# -- SQL: parses everywhere, executes on real engines ------------------------------------------


@pytest.mark.parametrize("dialect", list(Dialect))
def test_sql_parses_back_in_its_dialect(dialect: Dialect) -> None:
    for out in _shards(dialect):
        for ex in out.examples:
            tree = sqlglot.parse_one(ex.sql, read=str(dialect))
            assert isinstance(tree, exp.Query), ex.sql


def test_dialect_changes_only_the_sql_text() -> None:
    sqlite, postgres = _shards(Dialect.SQLITE)[0], _shards(Dialect.POSTGRES)[0]
    assert [e.question for e in sqlite.examples] == [e.question for e in postgres.examples]
    assert any(a.sql != b.sql for a, b in zip(sqlite.examples, postgres.examples, strict=True))


def test_sql_executes_on_sqlite_and_mostly_returns_rows(
    sqlite_shards: list[ShardOutput], shop_sqlite: sqlite3.Connection
) -> None:
    share = _row_share(sqlite_shards, lambda sql: shop_sqlite.execute(sql).fetchall())
    print(f"sqlite: {share:.1%} of examples return rows")
    assert share > 0.5


def test_sql_executes_on_duckdb_and_mostly_returns_rows() -> None:
    duckdb = pytest.importorskip("duckdb")
    db = duckdb.connect()
    db.execute(SHOP_DDL)
    db.execute(SHOP_SEED)
    share = _row_share(_shards(Dialect.DUCKDB), lambda sql: db.execute(sql).fetchall())
    print(f"duckdb: {share:.1%} of examples return rows")
    assert share > 0.5


def test_ten_shards_cover_every_construct(sqlite_shards: list[ShardOutput]) -> None:
    seen = {c for out in sqlite_shards for ex in out.examples for c in ex.constructs}
    assert not set(CONSTRUCTS) - seen, f"never produced: {set(CONSTRUCTS) - seen}"
    assert seen <= set(CONSTRUCTS), f"not in the vocabulary: {seen - set(CONSTRUCTS)}"
    three_table_joins = [ex for out in sqlite_shards for ex in out.examples if len(ex.tables) >= 3]
    assert three_table_joins


def test_builders_steer_by_constructs_of_the_vocabulary_and_topics_only() -> None:
    for builder in (*single.BUILDERS, *joins.BUILDERS, *analytic.BUILDERS, *logic.BUILDERS):
        assert builder.tags <= set(CONSTRUCTS) | TOPICS, builder.name
    assert not TOPICS & set(CONSTRUCTS)


def test_every_builder_has_phrasings_and_every_phrasing_a_builder() -> None:
    """questions.yaml is keyed by builder name: a renamed builder or a leftover entry fails
    here, not with a KeyError halfway through a shard."""
    builders = {
        b.name for b in (*single.BUILDERS, *joins.BUILDERS, *analytic.BUILDERS, *logic.BUILDERS)
    }
    assert set(phrasings.catalogue()) == builders
    for name, variants in phrasings.catalogue().items():
        assert all(variants.values()), f"{name} has a variant without phrasings"


def test_constructs_cover_every_aggregate_function(sqlite_shards: list[ShardOutput]) -> None:
    sql = " ".join(ex.sql for out in sqlite_shards for ex in out.examples)
    for function in ("COUNT(", "SUM(", "AVG(", "MIN(", "MAX(", "COUNT(DISTINCT", " IN ("):
        assert function in sql


def test_no_sql_repeats_within_a_shard(sqlite_shards: list[ShardOutput]) -> None:
    for out in sqlite_shards:
        sqls = [ex.sql for ex in out.examples]
        assert len(sqls) == len(set(sqls))


def test_shards_of_a_run_repeat_no_sql_and_no_question(
    sqlite_shards: list[ShardOutput],
) -> None:
    """Each shard skips what the shards before it hold, so validation drops nothing as a
    repeat: no SQL twice, no near-duplicate question, across all ten shards."""
    sqls: set[str] = set()
    questions = QuestionIndex()
    for out in sqlite_shards:
        for ex in out.examples:
            assert ex.sql not in sqls, ex.sql
            assert questions.find(ex.question) is None, ex.question
            sqls.add(ex.sql)
            questions.add(ex.question, ex.id)


def test_a_shard_is_the_same_whatever_order_shards_are_asked_in(
    sqlite_shards: list[ShardOutput],
) -> None:
    schema = parse_schema(SHOP_DDL, Dialect.SQLITE)
    teacher = SyntheticTeacher()
    for index in (7, 3, 3, 9):  # backwards replays the earlier shards, forwards reuses them
        assert teacher.write_shard(_request(schema, index)) == sqlite_shards[index]


def _resolve(tree: exp.Query, col: exp.Column, schema: SchemaInfo) -> list[tuple[str, str]]:
    """(table, column) pairs a column reference can mean within the query."""
    aliases = {t.alias_or_name: t.name for t in tree.find_all(exp.Table)}
    tables = [aliases[col.table]] if col.table else list(aliases.values())
    found = []
    for name in tables:
        table = schema.table(name)
        if table is not None and table.column(col.name) is not None:
            found.append((table.name, col.name))
    return found


def test_no_degenerate_aggregates_or_groups(sqlite_shards: list[ShardOutput]) -> None:
    schema = parse_schema(SHOP_DDL, Dialect.SQLITE)
    references = {(fk.table, c) for fk in schema.foreign_keys for c in fk.columns}
    for ex in (ex for out in sqlite_shards for ex in out.examples):
        tree = sqlglot.parse_one(ex.sql, read="sqlite")
        assert isinstance(tree, exp.Query)
        for aggregate in tree.find_all(exp.Sum, exp.Avg):
            # a CASE inside SUM(CASE WHEN ... THEN 1 ELSE 0 END) tests columns, it sums none
            summed = (c for c in aggregate.find_all(exp.Column) if not c.find_ancestor(exp.Case))
            for col in summed:
                for table_name, column_name in _resolve(tree, col, schema):
                    table = schema.table(table_name)
                    assert table is not None
                    c = table.column(column_name)
                    assert c is not None
                    assert not c.primary_key, ex.sql
                    assert (table_name, column_name) not in references, ex.sql
                    assert c.kind in (ColumnKind.INTEGER, ColumnKind.NUMBER), ex.sql
        group = tree.args.get("group")
        if group is not None and tree.args.get("having") is not None and not tree.args.get("joins"):
            grouped = {c.name for c in group.find_all(exp.Column)}
            source = tree.find(exp.Table)
            table = schema.table(source.name) if source is not None else None
            assert table is not None
            assert not grouped <= {c.name for c in table.primary_key}, ex.sql


# -- questions -----------------------------------------------------------------------------------


def test_questions_read_like_questions(sqlite_shards: list[ShardOutput]) -> None:
    questions = [ex.question for out in sqlite_shards for ex in out.examples]
    for q in questions:
        assert q[0].isupper() and q[-1] in "?.", q
        assert "_" not in q, q  # human-readable names: "signup date", "order items"
        assert not re.search(r"\s[?.,]|\s\s|[{}]", q), q
    assert len(set(questions)) > 0.75 * len(questions)
    text = " ".join(questions)
    assert re.search(r"\border items\b", text) and re.search(r"\border item\b(?!s)", text)


def test_seed_questions_steer_tables_and_literals() -> None:
    schema = parse_schema(SHOP_DDL, Dialect.SQLITE)
    teacher = SyntheticTeacher(seed_focus=0.6)
    asked = ("How many products in 'garden' cost more than 100?", "How many orders in 2026?")
    outputs = [teacher.write_shard(_request(schema, i, questions=asked)) for i in range(4)]
    plain = [teacher.write_shard(_request(schema, i, questions=("Hi",))) for i in range(4)]

    def product_share(outs: list[ShardOutput]) -> float:
        examples = [ex for out in outs for ex in out.examples]
        return sum("products" in ex.tables for ex in examples) / len(examples)

    assert product_share(outputs) > product_share(plain)
    sql = " ".join(ex.sql for out in outputs for ex in out.examples)
    assert "'garden'" in sql
    assert "'2026-01-01'" in sql


def test_seed_questions_are_read_for_tables_constructs_and_numbers() -> None:
    catalog = Catalog(parse_schema(SHOP_DDL, Dialect.SQLITE))
    hints = read_seed_questions(QUESTIONS, catalog)
    by_question = {f.question: f for f in hints.foci}
    having = by_question["Which customers placed more than three orders?"]
    assert having.tables == {"customers", "orders"}
    assert {"having", "join"} <= having.constructs
    top = by_question["What are the five most expensive products?"]
    assert ("products", "price") in top.columns
    assert "order_by" in top.constructs
    revenue = by_question["What is the total revenue per product category?"]
    assert {"aggregate", "group_by", "revenue"} <= revenue.constructs
    assert {3, 5} <= set(hints.counts)
    # Number words count only as whole words: not the "one" in "money" or the "ten" in "often".
    assert read_seed_questions(("Which customers spend money often?",), catalog).counts == ()


# -- other schemas ---------------------------------------------------------------------------------

TEXT_ONLY = """
CREATE TABLE notes (title TEXT NOT NULL, body TEXT, tag TEXT NOT NULL, author TEXT);
"""
RESERVED_NAMES = """
CREATE TABLE "order" (
    id INTEGER PRIMARY KEY,
    "group" TEXT NOT NULL,
    "desc" TEXT,
    amount REAL NOT NULL,
    happened_on DATE NOT NULL,
    is_paid BOOLEAN NOT NULL
);
"""
RESERVED_ROWS = """
INSERT INTO "order" VALUES (1, 'a', 'x', 10.5, '2024-01-05', TRUE);
INSERT INTO "order" VALUES (2, 'b', NULL, 99.0, '2024-03-01', FALSE);
INSERT INTO "order" VALUES (3, 'a', 'y', 250.0, '2024-03-20', TRUE);
"""


@pytest.mark.parametrize(
    ("ddl", "rows"),
    [
        (TEXT_ONLY, "INSERT INTO notes VALUES ('t', 'b', 'x', 'me');"),
        (RESERVED_NAMES, RESERVED_ROWS),
    ],
    ids=["text-only-no-keys", "reserved-names-no-foreign-keys"],
)
def test_other_schemas_execute_on_sqlite_and_duckdb(ddl: str, rows: str) -> None:
    duckdb = pytest.importorskip("duckdb")
    for dialect in (Dialect.SQLITE, Dialect.DUCKDB):
        schema = parse_schema(ddl, dialect)
        out = SyntheticTeacher().write_shard(_request(schema, 0, count=30))
        assert out.examples
        assert not any("join" in ex.constructs for ex in out.examples)
        if dialect == Dialect.SQLITE:
            db = sqlite3.connect(":memory:")
            db.executescript(ddl + rows)
            run = db.execute
        else:
            duck = duckdb.connect()
            duck.execute(ddl + rows)
            run = duck.execute
        for ex in out.examples:
            run(ex.sql).fetchall()


def test_a_schema_with_few_possible_queries_gives_fewer_examples_never_repeats() -> None:
    schema = parse_schema("CREATE TABLE ticks (id INTEGER PRIMARY KEY);", Dialect.SQLITE)
    out = SyntheticTeacher().write_shard(_request(schema, 0, count=20))
    assert [ex.sql for ex in out.examples] == ["SELECT COUNT(*) FROM ticks"]


# -- building blocks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "one"),
    [("customers", "customer"), ("categories", "category"), ("boxes", "box"), ("status", "status")],
)
def test_singular_and_plural_round_trip(word: str, one: str) -> None:
    assert singular(word) == one
    assert plural(one) == (word if word != "status" else "statuses")


def test_names_become_words() -> None:
    assert table_noun("order_items").one == "order item"
    assert table_noun("OrderItems").many == "order items"
    assert column_phrase("signup_date") == "signup date"
    assert role_of("unit_price") == Role.MONEY
    assert role_of("country_code") == Role.COUNTRY
    assert role_of("email") == Role.IDENTIFYING
    assert superlatives("price", Role.MONEY, is_date=False) == ("most expensive", "cheapest")
    assert superlatives("created_at", Role.GENERIC, is_date=True)[0] == "most recent"


def test_reserved_words_are_quoted_and_order_by_has_no_null_noise() -> None:
    for dialect in Dialect:
        renderer = Renderer(dialect)
        query = (
            exp.select(column("group"), column("name"))
            .from_("t")
            .order_by(renderer.ordered(column("name"), descending=True))
        )
        sql = renderer.sql(query)
        assert "NULLS" not in sql and "CASE" not in sql, sql
        assert re.search(r"[`\"]group[`\"]", sql), sql
        assert "name" in sql and '"name"' not in sql and "`name`" not in sql


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (Dialect.SQLITE, "STRFTIME('%Y', d)"),
        (Dialect.DUCKDB, "STRFTIME(d, '%Y')"),
        (Dialect.POSTGRES, "TO_CHAR(d, 'YYYY')"),
        (Dialect.MYSQL, "DATE_FORMAT(d, '%Y')"),
    ],
)
def test_date_parts_render_per_dialect(dialect: Dialect, expected: str) -> None:
    assert Renderer(dialect).sql(year_of(column("d"))) == expected


def test_a_focus_steers_shards_without_changing_unfocused_ones() -> None:
    schema = parse_schema(SHOP_DDL, Dialect.SQLITE)
    teacher = SyntheticTeacher()
    focus = {"focus_tables": ("order_items",), "focus_constructs": ("having",)}
    plain = [_request(schema, i) for i in range(12, 17)]
    focused = [
        dataclasses.replace(
            r, key=shard_key(schema, QUESTIONS, teacher, 7, 40, r.index, *focus.values()), **focus
        )
        for r in plain
    ]
    assert not {r.key for r in focused} & {r.key for r in plain}
    assert plain[0].key == shard_key(schema, QUESTIONS, teacher, 7, 40, 12)
    before = [e for r in plain for e in teacher.write_shard(r).examples]
    after = [e for r in focused for e in teacher.write_shard(r).examples]
    assert teacher.write_shard(plain[0]).examples == before[:40]  # unfocused: as always

    def share(examples: list[Any], wanted: Callable[[Any], bool]) -> float:
        return sum(1 for e in examples if wanted(e)) / len(examples)

    def reads_items(e: Any) -> bool:
        return "order_items" in e.tables

    def has_having(e: Any) -> bool:
        return "having" in e.constructs

    # a preference, not a rule: the rest of each shard still draws from the whole schema
    assert share(after, reads_items) > share(before, reads_items) + 0.05
    assert share(after, has_having) > share(before, has_having) + 0.05
