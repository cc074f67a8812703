"""`SyntheticTeacher`: writes a shard by drawing builders, tables, columns and phrasings from a
random source seeded by (seed, shard index), rendering each query for the schema's dialect and
dropping any SQL the shard already holds. A top-up shard's focus (under-covered tables and
constructs) steers most of its examples, the way a seed question steers some."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from distillrun.sql.constructs import constructs_of_tree
from distillrun.teacher.accounting import apportion
from distillrun.teacher.base import GeneratedExample, ShardOutput, ShardRequest, Usage
from distillrun.teacher.synthetic import joins, single
from distillrun.teacher.synthetic.catalog import Catalog
from distillrun.teacher.synthetic.context import Builder, Context
from distillrun.teacher.synthetic.seeds import SeedFocus, SeedHints, read_seed_questions
from distillrun.teacher.synthetic.sqlkit import Renderer, tables_of

# Bump whenever templates, builders or weights change: it is part of every shard key, so a
# changed generator never reuses shards the old one wrote.
GENERATOR_VERSION = "synthetic-1"
TEACHER_NAME = "synthetic"

_BUILDERS: tuple[Builder, ...] = (*single.BUILDERS, *joins.BUILDERS)
# Draws per requested example before a shard gives up on a schema with few distinct queries.
_ATTEMPTS_PER_EXAMPLE = 40
# Share of a top-up shard's examples steered toward its focus; the rest draw as usual, so the
# shard still varies.
_REQUEST_FOCUS_SHARE = 0.75


class SyntheticTeacher:
    """The offline teacher: no model, no network, no cost; see the package docstring.

    `seed_focus` is the share of examples steered toward one seed question each (its tables,
    columns and constructs weighted up); the rest draw from the whole schema.
    """

    def __init__(self, seed_focus: float = 0.35) -> None:
        if not 0.0 <= seed_focus <= 1.0:
            raise ValueError(f"seed_focus must be between 0 and 1, got {seed_focus}")
        self._seed_focus = seed_focus

    @property
    def name(self) -> str:
        return TEACHER_NAME

    @property
    def parameters(self) -> dict[str, Any]:
        return {"generator": GENERATOR_VERSION, "seed_focus": self._seed_focus}

    def write_shard(self, request: ShardRequest) -> ShardOutput:
        """`request.count` examples with pairwise different SQL; fewer only when the schema is
        so small that the draws run out of new queries."""
        catalog = Catalog(request.schema)
        hints = read_seed_questions(request.seed_questions, catalog)
        renderer = Renderer(request.schema.dialect)
        material = f"{GENERATOR_VERSION}:{request.seed}:{request.index}".encode()
        rng = random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))
        wanted = _request_focus(request)
        examples: list[GeneratedExample] = []
        seen: set[str] = set()
        for _ in range(request.count * _ATTEMPTS_PER_EXAMPLE):
            if len(examples) == request.count:
                break
            focus = self._focus(rng, hints, wanted)
            draft = _choose(rng, focus).build(Context(rng, catalog, renderer, hints, focus))
            if draft is None:
                continue
            sql = renderer.sql(draft.query)
            if sql in seen:
                continue
            seen.add(sql)
            examples.append(
                GeneratedExample(
                    id=f"{request.key}-{len(examples):03d}",
                    shard=request.key,
                    question=draft.question,
                    sql=sql,
                    explanation=draft.explanation,
                    tables=tables_of(draft.query),
                    constructs=constructs_of_tree(draft.query),
                    teacher=TEACHER_NAME,
                )
            )
        # free: every share is zero, but the shard is accounted like any teacher's
        return apportion(ShardOutput(key=request.key, examples=examples, usage=Usage()))

    def _focus(
        self, rng: random.Random, hints: SeedHints, wanted: SeedFocus | None
    ) -> SeedFocus | None:
        # no draw without a request focus, so unfocused shards come out as they always did
        if wanted is not None and rng.random() < _REQUEST_FOCUS_SHARE:
            return wanted
        if hints.foci and rng.random() < self._seed_focus:
            return hints.foci[rng.randrange(len(hints.foci))]
        return None


def _request_focus(request: ShardRequest) -> SeedFocus | None:
    """The request's focus in the form seed questions steer by (tables and construct tags;
    tags the builders do not show, such as window functions, simply match none)."""
    if not (request.focus_tables or request.focus_constructs):
        return None
    return SeedFocus(
        question="",
        tables=frozenset(request.focus_tables),
        columns=frozenset(),
        constructs=frozenset(request.focus_constructs),
    )


def _choose(rng: random.Random, focus: SeedFocus | None) -> Builder:
    def weight(builder: Builder) -> float:
        matched = len(builder.tags & focus.constructs) if focus is not None else 0
        return builder.weight * (1 + 2 * matched)

    return rng.choices(_BUILDERS, weights=[weight(b) for b in _BUILDERS])[0]
