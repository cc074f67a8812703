"""The teacher interface: a teacher writes one shard of examples at a time.

A shard is the unit of resume and of payment: its key is a hash of everything that decides its
content (schema, dialect, seed questions, teacher name and parameters, seed, shard index), so a
restarted stage finds finished shards by key and never asks (or pays) for them again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field

from distillrun.sql.schema import SchemaInfo


class Usage(BaseModel):
    """Tokens and dollars: what one shard cost, or one record's share of it
    (`teacher.accounting`)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    usd: float = 0.0
    requests: int = 0


class GeneratedExample(BaseModel):
    """One teacher-written example; `id` is deterministic (`<shard key>-<index>`)."""

    id: str
    shard: str
    question: str
    sql: str
    explanation: str = ""
    tables: list[str] = Field(default_factory=list)
    constructs: list[str] = Field(default_factory=list)
    teacher: str
    usage: Usage = Field(default_factory=Usage)
    """This example's share of the call that wrote it (zero in shards stored before shares
    were recorded; `teacher.accounting.apportion` derives them)."""


@dataclass(frozen=True)
class ShardRequest:
    """What one shard asks the teacher for."""

    key: str
    index: int
    count: int
    seed: int
    schema: SchemaInfo
    seed_questions: tuple[str, ...]
    reasoning: bool
    focus_tables: tuple[str, ...] = ()
    """Tables most of the shard should use: those the accepted examples so far under-cover
    (set on top-up shards; empty on the first round)."""
    focus_constructs: tuple[str, ...] = ()
    """Construct tags (`sql.constructs.CONSTRUCTS`) most of the shard should show."""


class ShardOutput(BaseModel):
    """What the teacher wrote for one shard, with its cost and any records it could not parse.

    Once apportioned (`teacher.accounting.apportion`), the examples' usage plus `unattributed`
    add up to `usage` exactly."""

    key: str
    examples: list[GeneratedExample]
    usage: Usage = Field(default_factory=Usage)
    malformed: list[dict[str, Any]] = Field(default_factory=list)
    unattributed: Usage = Field(default_factory=Usage)
    """The part of `usage` no example carries: the shares of the `malformed` entries, or all of
    it when it cannot be split (a reply with no entry at all)."""


class Teacher(Protocol):
    """A writer of shards. `parameters` are what shard keys hash besides the schema and seed."""

    @property
    def name(self) -> str: ...

    @property
    def parameters(self) -> dict[str, Any]: ...

    def write_shard(self, request: ShardRequest) -> ShardOutput: ...


def shard_key(
    schema: SchemaInfo,
    seed_questions: tuple[str, ...],
    teacher: Teacher,
    seed: int,
    examples_per_shard: int,
    index: int,
    focus_tables: tuple[str, ...] = (),
    focus_constructs: tuple[str, ...] = (),
) -> str:
    """A deterministic key for shard `index`: independent of concurrency and of how many shards
    the run ends up needing, so adding shards never renames finished ones. A focus is hashed
    only when there is one, so shards without one keep the keys they always had."""
    fields: dict[str, Any] = {
        "schema": schema.fingerprint,
        "seed_questions": list(seed_questions),
        "teacher": teacher.name,
        "parameters": teacher.parameters,
        "seed": seed,
        "examples_per_shard": examples_per_shard,
        "index": index,
    }
    if focus_tables or focus_constructs:
        fields["focus"] = {"tables": list(focus_tables), "constructs": list(focus_constructs)}
    material = json.dumps(fields, sort_keys=True)
    return f"{index:05d}-{hashlib.sha256(material.encode()).hexdigest()[:16]}"
