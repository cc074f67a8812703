"""The chat format the student learns and answers in, shared by the train and evaluate stages.

Training and evaluation must render a question exactly the same way, or the adapter is scored on
prompts it never saw; so both build their messages here. A prompt is two messages: a system
message with the dialect and a compact rendering of the schema's DDL, and a user message with
the question. A student specialised to one schema may leave the DDL out
(`spec.student.schemaInPrompt: false`): every prompt is then several times shorter, which is
what makes the offline quickstart train in minutes on a CPU; the student then knows the schema
from its training examples alone, so it answers only about that schema.

The assistant's answer is the SQL in a ```sql fenced block, preceded by the teacher's
explanation when `spec.teacher.reasoning` is on. `extract_sql` takes the SQL back out
of whatever a model generated, including answers cut off by `max_new_tokens`.

Pure text: no torch or transformers import here, only a tokenizer object passed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from distillrun.sql.ddl_render import render_ddl
from distillrun.sql.schema import SchemaInfo

# Passed to every chat template: templates with a thinking switch (Qwen3) render the answer
# without a thinking block both at training and at inference; other templates ignore it.
CHAT_TEMPLATE_KWARGS: dict[str, Any] = {"enable_thinking": False}

SQL_FENCE_OPEN = "```sql"
FENCE = "```"

Message = dict[str, str]


class ChatTokenizer(Protocol):
    """The part of a transformers tokenizer this module uses."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def schema_ddl(schema: SchemaInfo) -> str:
    """The schema as compact DDL in the run's dialect, one statement per line.

    Rebuilt from the parsed schema rather than copied verbatim, so comments, indentation and
    NOT NULL noise do not eat the student's context; it stays DDL the engine loads (quoted
    names, composite keys, enum values and views kept), see `distillrun.sql.ddl_render`.
    """
    return render_ddl(schema)


def system_message(schema: SchemaInfo, *, reasoning: bool, with_schema: bool = True) -> str:
    """Instructions plus (`with_schema`) the schema: identical for every example of a run."""
    answer = (
        "Explain briefly, then give one SQL query in a ```sql block."
        if reasoning
        else "Give one SQL query in a ```sql block."
    )
    if not with_schema:
        return f"Write {schema.dialect} SQL. {answer}"
    return f"Write {schema.dialect} SQL for this database. {answer}\n{schema_ddl(schema)}"


def prompt_messages(
    schema: SchemaInfo, question: str, *, reasoning: bool, with_schema: bool = True
) -> list[Message]:
    """The messages before the answer: system (dialect, schema) and user (the question)."""
    system = system_message(schema, reasoning=reasoning, with_schema=with_schema)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": question.strip()},
    ]


def format_answer(sql: str, explanation: str = "", *, reasoning: bool) -> str:
    """The assistant's target text: `[explanation\\n]```sql\\n<sql>\\n````."""
    body = f"{SQL_FENCE_OPEN}\n{sql.strip()}\n{FENCE}"
    # One line, and no fence of its own that `extract_sql` could take for the answer.
    explanation = " ".join(explanation.replace(FENCE, "`").split())
    if reasoning and explanation:
        return f"{explanation}\n{body}"
    return body


def training_example(
    record: Mapping[str, Any], schema: SchemaInfo, *, reasoning: bool, with_schema: bool = True
) -> dict[str, Any]:
    """One dataset record as a conversational prompt-completion example for trl's SFTTrainer
    (loss on the completion only)."""
    answer = format_answer(
        str(record["sql"]), str(record.get("explanation") or ""), reasoning=reasoning
    )
    return {
        "prompt": prompt_messages(
            schema, str(record["question"]), reasoning=reasoning, with_schema=with_schema
        ),
        "completion": [{"role": "assistant", "content": answer}],
        "chat_template_kwargs": dict(CHAT_TEMPLATE_KWARGS),
    }


def render_prompt(
    tokenizer: ChatTokenizer,
    schema: SchemaInfo,
    question: str,
    *,
    reasoning: bool,
    with_schema: bool = True,
) -> str:
    """The prompt as text, ending where the assistant's answer starts (what `generate` gets)."""
    text = tokenizer.apply_chat_template(
        prompt_messages(schema, question, reasoning=reasoning, with_schema=with_schema),
        tokenize=False,
        add_generation_prompt=True,
        **CHAT_TEMPLATE_KWARGS,
    )
    if not isinstance(text, str):
        raise TypeError(f"chat template rendered {type(text).__name__}, expected str")
    return text


def render_example(
    tokenizer: ChatTokenizer,
    schema: SchemaInfo,
    record: Mapping[str, Any],
    *,
    reasoning: bool,
    with_schema: bool = True,
) -> str:
    """A whole example (prompt and answer) as text: what the builtin tokenizer is trained on."""
    example = training_example(record, schema, reasoning=reasoning, with_schema=with_schema)
    text = tokenizer.apply_chat_template(
        example["prompt"] + example["completion"], tokenize=False, **CHAT_TEMPLATE_KWARGS
    )
    if not isinstance(text, str):
        raise TypeError(f"chat template rendered {type(text).__name__}, expected str")
    return text


_THINK_END = "</think>"
_SQL_FENCE_RE = re.compile(
    r"```[ \t]*(?:sqlite|sql|postgresql|postgres|mysql|duckdb)\b[ \t]*\n?", re.IGNORECASE
)
_BARE_FENCE_RE = re.compile(r"```[ \t]*\n?")
_STATEMENT_START_RE = re.compile(r"\b(?:SELECT|WITH)\b", re.I)


def _clean(sql: str) -> str | None:
    sql = sql.replace(FENCE, " ").strip()
    # One statement: drop anything after the first semicolon (a model rambling on).
    head, _, _ = sql.partition(";")
    head = head.strip()
    return head or None


def extract_sql(text: str) -> str | None:
    """The SQL in a model's answer, or None when there is none.

    Takes the first ```sql block (```sqlite, ```postgres... too), else the first bare ```
    block; a block cut off by the token limit runs to the end of the text. Without a fence,
    the text from the first SELECT/WITH on is taken. A thinking block (`...</think>`) is
    skipped. Only the first statement is kept, without its trailing semicolon.
    """
    if _THINK_END in text:
        text = text.rsplit(_THINK_END, 1)[1]
    opening = _SQL_FENCE_RE.search(text) or _BARE_FENCE_RE.search(text)
    if opening is not None:
        rest = text[opening.end() :]
        body, _, _ = rest.partition(FENCE)
        return _clean(body)
    start = _STATEMENT_START_RE.search(text)
    if start is None:
        return None
    return _clean(text[start.start() :])


def builtin_tokenizer_corpus(
    records: Sequence[Mapping[str, Any]],
    schema: SchemaInfo,
    *,
    reasoning: bool,
    with_schema: bool = True,
) -> list[str]:
    """Texts a builtin student's tokenizer is trained on: every question and answer, and the
    system message as often as the examples carry it, without chat-template markup (its
    markers are special tokens)."""
    system = system_message(schema, reasoning=reasoning, with_schema=with_schema)
    texts = [system] * max(len(records), 1)
    for record in records:
        texts.append(str(record["question"]))
        texts.append(
            format_answer(
                str(record["sql"]), str(record.get("explanation") or ""), reasoning=reasoning
            )
        )
    return texts
