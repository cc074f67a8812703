"""The builtin base's pretraining examples: the synthetic teacher's questions and SQL over the
bundled schemas, in every dialect, with and without the schema in the prompt.

Pure and deterministic: the same recipe gives the same examples in the same order, so the
base's fingerprint can name them by the recipe and the synthetic generator's version.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from importlib import resources

from distillrun.api.spec import Dialect
from distillrun.sql.schema import SchemaInfo, parse_schema
from distillrun.teacher.base import ShardRequest
from distillrun.teacher.synthetic.teacher import GENERATOR_VERSION, SyntheticTeacher

EXAMPLES_PER_SHARD = 40


@dataclass(frozen=True)
class PretrainingExample:
    """One question and its SQL over one bundled schema, and how its prompt is rendered."""

    schema: SchemaInfo
    question: str
    sql: str
    with_schema: bool

    def record(self) -> dict[str, str]:
        return {"question": self.question, "sql": self.sql}


def bundled_schema_texts() -> dict[str, str]:
    """The bundled schemas' DDL by name (`schemas/<name>.sql`), sorted by name."""
    folder = resources.files(__package__).joinpath("schemas")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return {f.name.removesuffix(".sql"): f.read_text(encoding="utf-8") for f in files}


def corpus_identity(shards_per_schema: int, schema_share: float, seed: int) -> str:
    """What the corpus depends on, as one digest: the schemas' text, the synthetic generator's
    version and the recipe's corpus settings."""
    digest = hashlib.sha256(
        f"{GENERATOR_VERSION}|{shards_per_schema}|{schema_share}|{seed}".encode()
    )
    for name, ddl in bundled_schema_texts().items():
        digest.update(f"\0{name}\0{ddl}".encode())
    return digest.hexdigest()


def pretraining_examples(
    shards_per_schema: int, schema_share: float, seed: int
) -> list[PretrainingExample]:
    """Every bundled schema in every dialect (shards take turns), distinct SQL per schema and
    dialect; `schema_share` of the examples carry the schema in their prompt. Shuffled."""
    teacher = SyntheticTeacher()
    rng = random.Random(seed)
    dialects = list(Dialect)
    examples: list[PretrainingExample] = []
    for name, ddl in bundled_schema_texts().items():
        schemas = {dialect: parse_schema(ddl, dialect) for dialect in dialects}
        seen: set[tuple[Dialect, str]] = set()
        for index in range(shards_per_schema):
            dialect = dialects[index % len(dialects)]
            request = ShardRequest(
                key=f"builtin-{name}-{index:04d}",
                index=index,
                count=EXAMPLES_PER_SHARD,
                seed=seed,
                schema=schemas[dialect],
                seed_questions=(),
                reasoning=False,
            )
            for example in teacher.write_shard(request).examples:
                if (dialect, example.sql) in seen:
                    continue
                seen.add((dialect, example.sql))
                examples.append(
                    PretrainingExample(
                        schemas[dialect],
                        example.question,
                        example.sql,
                        with_schema=rng.random() < schema_share,
                    )
                )
    rng.shuffle(examples)
    return examples
