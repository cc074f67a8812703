"""What the fake teachers write: deterministic, schema-aware examples and a crude tokenizer.

The fakes read the tables out of the DDL in the prompt and write one distinct, valid SELECT per
example, so a run against them produces data the validate stage accepts. Token counts are
`ceil(chars / 4)`: close to a real tokenizer on English and SQL, and exact to reason about.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

_TABLE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[\"`]?(\w+)", re.IGNORECASE)
_COUNT = re.compile(r"\b(\d+)\s+(?:new\s+)?examples?\b", re.IGNORECASE)
_SHARD = re.compile(r"\bshard\s+(\d+)\b", re.IGNORECASE)

_TEMPLATES = (
    ("How many {t} rows have an id above {n}?", "SELECT COUNT(*) FROM {t} WHERE id > {n}"),
    ("List the first {n} {t} by id.", "SELECT * FROM {t} ORDER BY id LIMIT {n}"),
    ("Which {t} ids are below {n}?", "SELECT id FROM {t} WHERE id < {n}"),
    ("What is the largest {t} id under {n}?", "SELECT MAX(id) FROM {t} WHERE id < {n}"),
    ("Show every {t} record numbered {n} or more.", "SELECT * FROM {t} WHERE id >= {n}"),
)


def tokens(text: str) -> int:
    """The fake tokenizer: one token per four characters, rounded up."""
    return math.ceil(len(text) / 4)


def tables_in(prompt: str) -> list[str]:
    """Table names declared by CREATE TABLE statements in `prompt`, in order."""
    seen: list[str] = []
    for name in _TABLE.findall(prompt):
        if name not in seen:
            seen.append(name)
    return seen


def requested_count(prompt: str, default: int = 5) -> int:
    match = _COUNT.search(prompt)
    return int(match.group(1)) if match else default


def shard_of(prompt: str) -> int | None:
    """The shard number a request names (the prompt says `shard N`), if any."""
    match = _SHARD.search(prompt)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Example:
    question: str
    sql: str
    explanation: str
    tables: list[str]
    constructs: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "sql": self.sql,
            "explanation": self.explanation,
            "tables": self.tables,
            "constructs": self.constructs,
        }


def write_examples(system: str, user: str, *, bogus_tables: bool = False) -> list[Example]:
    """The examples a request asks for: as many as it names, distinct across shards (the shard
    number goes into every literal). `bogus_tables` writes SQL against tables that do not
    exist, as a confused teacher would."""
    tables = tables_in(system) or ["items"]
    if bogus_tables:
        tables = [f"ghost_{t}" for t in tables]
    count = requested_count(user)
    shard = shard_of(user) or 0
    examples = []
    for i in range(count):
        table = tables[i % len(tables)]
        question, sql = _TEMPLATES[(i // len(tables)) % len(_TEMPLATES)]
        n = 1000 * (shard + 1) + i
        examples.append(
            Example(
                question=question.format(t=table, n=n),
                sql=sql.format(t=table, n=n),
                explanation=f"Reads {table} and applies the condition on id with {n}.",
                tables=[table],
                constructs=["filter"],
            )
        )
    return examples


def serialized(examples: list[Example]) -> str:
    return json.dumps({"examples": [e.as_dict() for e in examples]})


def fit(examples: list[Example], max_tokens: int) -> tuple[list[Example], bool]:
    """The longest prefix of `examples` whose serialized form fits `max_tokens`, and whether
    anything was cut (what a real model hitting `max_tokens` leaves behind)."""
    if tokens(serialized(examples)) <= max_tokens:
        return examples, False
    kept: list[Example] = []
    for example in examples:
        if tokens(serialized([*kept, example])) > max_tokens:
            break
        kept.append(example)
    return kept, True
