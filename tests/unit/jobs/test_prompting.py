"""The chat format shared by train and evaluate: what a prompt carries, and that `extract_sql`
takes back exactly the SQL `format_answer` put in, and something sensible out of answers that
are cut off, unfenced or empty."""

from __future__ import annotations

import pytest

from distillrun.api.spec import Dialect
from distillrun.jobs import prompting
from distillrun.jobs.student import TinyQwen3Shape, train_bpe_tokenizer
from distillrun.sql.schema import SchemaInfo, parse_schema

SCHEMA = parse_schema(
    """
    -- a comment that the prompt does not need
    CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT);
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY,
        customer_id INTEGER NOT NULL REFERENCES customers (id),
        total NUMERIC(10, 2)
    );
    """,
    Dialect.SQLITE,
)

SQLS = [
    "SELECT COUNT(*) FROM customers",
    "SELECT name FROM customers WHERE country = 'FR' ORDER BY name",
    "SELECT c.name, SUM(o.total) AS spent\nFROM customers AS c\n"
    "JOIN orders AS o ON o.customer_id = c.id\nGROUP BY c.name\nHAVING SUM(o.total) > 100",
    "WITH big AS (SELECT * FROM orders WHERE total > 50) SELECT COUNT(*) FROM big",
    "SELECT `name` FROM customers WHERE name LIKE '%a%'",
]


@pytest.mark.parametrize("sql", SQLS)
@pytest.mark.parametrize("reasoning", [True, False])
def test_format_then_extract_round_trips(sql: str, reasoning: bool) -> None:
    explanation = "Join orders to customers;\nthen sum ```totals``` per name."
    answer = prompting.format_answer(sql, explanation, reasoning=reasoning)
    assert prompting.extract_sql(answer) == sql
    assert answer.rstrip().endswith("```")
    if reasoning:
        assert answer.startswith("Join orders to customers; then sum")
    else:
        assert answer.startswith("```sql\n")
        assert "Join" not in answer


def test_a_trailing_semicolon_and_surrounding_space_are_dropped() -> None:
    answer = prompting.format_answer("  SELECT 1 ;  ", reasoning=False)
    assert prompting.extract_sql(answer) == "SELECT 1"


def test_reasoning_without_an_explanation_is_just_the_sql() -> None:
    assert prompting.format_answer("SELECT 1", "  ", reasoning=True) == "```sql\nSELECT 1\n```"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # cut off by max_new_tokens inside the block
        (
            "Count them.\n```sql\nSELECT COUNT(*) FROM orders WHERE",
            "SELECT COUNT(*) FROM orders WHERE",
        ),
        # no fence at all: from the first SELECT on
        ("The answer is SELECT name FROM customers", "SELECT name FROM customers"),
        ("with x as (select 1) select * from x", "with x as (select 1) select * from x"),
        # other fence spellings
        ("```SQL\nSELECT 1\n```", "SELECT 1"),
        ("```sqlite\nSELECT 2\n```", "SELECT 2"),
        ("```\nSELECT 3\n```", "SELECT 3"),
        # the first block wins; a second statement is dropped
        ("```sql\nSELECT 1\n```\nor\n```sql\nSELECT 2\n```", "SELECT 1"),
        ("```sql\nSELECT 1; DROP TABLE orders\n```", "SELECT 1"),
        # a thinking block is skipped, even when it mentions SQL
        ("<think>maybe SELECT 9</think>\n```sql\nSELECT 4\n```", "SELECT 4"),
        # nothing usable
        ("", None),
        ("I do not know.", None),
        ("```sql\n```", None),
        ("```sql\n   \n", None),
        ("```sql\n;\n```", None),
    ],
)
def test_extract_sql_from_malformed_generations(text: str, expected: str | None) -> None:
    assert prompting.extract_sql(text) == expected


def test_prompt_carries_dialect_schema_and_question() -> None:
    messages = prompting.prompt_messages(SCHEMA, "  How many customers?  ", reasoning=True)
    assert [m["role"] for m in messages] == ["system", "user"]
    system = messages[0]["content"]
    assert "sqlite" in system
    assert "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, country TEXT);" in system
    assert "customer_id INTEGER REFERENCES customers(id)" in system
    assert "comment" not in system
    assert messages[1]["content"] == "How many customers?"
    assert "Explain" in system
    assert "Explain" not in prompting.system_message(SCHEMA, reasoning=False)


def test_schema_ddl_is_one_parseable_statement_per_table() -> None:
    ddl = prompting.schema_ddl(SCHEMA)
    assert len(ddl.splitlines()) == len(SCHEMA.tables)
    again = parse_schema(ddl, Dialect.SQLITE)
    assert [t.name for t in again.tables] == [t.name for t in SCHEMA.tables]
    assert again.foreign_keys == SCHEMA.foreign_keys


def test_training_example_is_conversational_prompt_completion() -> None:
    record = {
        "question": "How many orders?",
        "sql": "SELECT COUNT(*) FROM orders",
        "explanation": "Count.",
    }
    example = prompting.training_example(record, SCHEMA, reasoning=True)
    assert set(example) == {"prompt", "completion", "chat_template_kwargs"}
    assert example["prompt"] == prompting.prompt_messages(
        SCHEMA, "How many orders?", reasoning=True
    )
    assert example["completion"] == [
        {"role": "assistant", "content": "Count.\n```sql\nSELECT COUNT(*) FROM orders\n```"}
    ]
    assert example["chat_template_kwargs"] == {"enable_thinking": False}
    without = prompting.training_example(record, SCHEMA, reasoning=False)
    assert without["completion"][0]["content"] == "```sql\nSELECT COUNT(*) FROM orders\n```"


def _tokenizer(schema: SchemaInfo) -> object:
    corpus = prompting.builtin_tokenizer_corpus(
        [{"question": "How many orders?", "sql": "SELECT COUNT(*) FROM orders", "explanation": ""}],
        schema,
        reasoning=True,
    )
    return train_bpe_tokenizer(corpus, TinyQwen3Shape(vocab_size=400))


def test_the_evaluation_prompt_is_the_start_of_the_training_text() -> None:
    tokenizer = _tokenizer(SCHEMA)
    record = {
        "question": "How many orders?",
        "sql": "SELECT COUNT(*) FROM orders",
        "explanation": "Count.",
    }
    prompt = prompting.render_prompt(tokenizer, SCHEMA, record["question"], reasoning=True)  # type: ignore[arg-type]
    full = prompting.render_example(tokenizer, SCHEMA, record, reasoning=True)  # type: ignore[arg-type]
    assert full.startswith(prompt)
    answer = full[len(prompt) :]
    assert prompting.extract_sql(answer) == record["sql"]
    assert prompt.endswith("<|im_start|>assistant\n")


def test_a_student_specialised_to_its_schema_gets_prompts_without_it() -> None:
    record = {"question": "How many customers?", "sql": "SELECT COUNT(*) FROM customers"}
    full = prompting.prompt_messages(SCHEMA, record["question"], reasoning=False)
    short = prompting.prompt_messages(
        SCHEMA, record["question"], reasoning=False, with_schema=False
    )
    assert "CREATE TABLE customers" in full[0]["content"]
    assert "CREATE TABLE" not in short[0]["content"]
    assert "sqlite" in short[0]["content"] and short[1] == full[1]
    # training and evaluation render the same prompt
    example = prompting.training_example(record, SCHEMA, reasoning=False, with_schema=False)
    assert example["prompt"] == short
    tokenizer = train_bpe_tokenizer(
        prompting.builtin_tokenizer_corpus([record], SCHEMA, reasoning=False, with_schema=False),
        TinyQwen3Shape(vocab_size=300),
    )
    prompt = prompting.render_prompt(
        tokenizer, SCHEMA, record["question"], reasoning=False, with_schema=False
    )
    whole = prompting.render_example(tokenizer, SCHEMA, record, reasoning=False, with_schema=False)
    assert whole.startswith(prompt) and "CREATE TABLE" not in whole
