"""`SyntheticTeacher`: writes a shard by drawing builders, tables, columns and phrasings from a
random source seeded by (seed, shard index), rendering each query for the schema's dialect and
dropping any draft another example of the run already holds. A top-up shard's focus
(under-covered tables and constructs) steers most of its examples, the way a seed question
steers some.

Why shards look back: shards are written independently (in parallel, resumable), but the
validate stage rejects SQL that repeats an earlier shard's and questions that near-duplicate an
earlier one, so independent shards of a small schema waste more and more of their examples as
the target grows (about half of them at 1,000 examples on the shop schema). So the unfocused
shards of a run form one stream: shard `i` skips every SQL and every near-duplicate question
(`teacher.diversity`, the rule screening applies) of the unfocused shards `0 .. i-1`, which it
replays from the same inputs. A shard is still a pure function of its request. Replays are
cached per process (`_STREAMS`), so a worker asked for shards in index order draws each
unfocused shard once.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from distillrun.sql.constructs import constructs_of_tree
from distillrun.teacher.accounting import apportion
from distillrun.teacher.base import GeneratedExample, ShardOutput, ShardRequest, Usage
from distillrun.teacher.diversity import QuestionIndex
from distillrun.teacher.synthetic import analytic, joins, logic, single
from distillrun.teacher.synthetic.catalog import Catalog
from distillrun.teacher.synthetic.context import Builder, Context, Draft
from distillrun.teacher.synthetic.seeds import SeedFocus, SeedHints, read_seed_questions
from distillrun.teacher.synthetic.sqlkit import Renderer, tables_of

# Bump whenever templates, builders or weights change: it is part of every shard key, so a
# changed generator never reuses shards the old one wrote.
GENERATOR_VERSION = "synthetic-3"
TEACHER_NAME = "synthetic"

_BUILDERS: tuple[Builder, ...] = (
    *single.BUILDERS,
    *joins.BUILDERS,
    *analytic.BUILDERS,
    *logic.BUILDERS,
)
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
        """`request.count` examples whose SQL and questions no earlier unfocused shard of the
        run holds (see the module docstring); fewer only when the draws run out of new ones."""
        catalog = Catalog(request.schema)
        hints = read_seed_questions(request.seed_questions, catalog)
        renderer = Renderer(request.schema.dialect)
        drafting = _Drafting(catalog, hints, renderer)
        with _STREAMS_LOCK:
            stream = _stream_before(self._stream_key(request), request.index)
            while stream.position < request.index:
                stream.take(self._draw(drafting, request, stream.position, None, stream))
            wanted = _request_focus(request)
            drawn = self._draw(drafting, request, request.index, wanted, stream)
            if wanted is None:
                stream.take(drawn)
        examples = [
            GeneratedExample(
                id=f"{request.key}-{n:03d}",
                shard=request.key,
                question=draft.question,
                sql=sql,
                explanation=draft.explanation,
                tables=tables_of(draft.query),
                constructs=constructs_of_tree(draft.query),
                teacher=TEACHER_NAME,
            )
            for n, (sql, draft) in enumerate(drawn)
        ]
        # free: every share is zero, but the shard is accounted like any teacher's
        return apportion(ShardOutput(key=request.key, examples=examples, usage=Usage()))

    def _stream_key(self, request: ShardRequest) -> tuple[object, ...]:
        return (
            GENERATOR_VERSION,
            self._seed_focus,
            request.schema.fingerprint,
            request.seed_questions,
            request.seed,
            request.count,
        )

    def _draw(
        self,
        drafting: _Drafting,
        request: ShardRequest,
        index: int,
        wanted: SeedFocus | None,
        stream: _Stream,
    ) -> list[tuple[str, Draft]]:
        """Shard `index`'s drafts: up to `request.count`, none repeating the SQL or the
        question of another draft of the shard or of the stream."""
        material = f"{GENERATOR_VERSION}:{request.seed}:{index}".encode()
        rng = random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))
        drawn: list[tuple[str, Draft]] = []
        sqls: set[str] = set()
        questions = QuestionIndex()
        for _ in range(request.count * _ATTEMPTS_PER_EXAMPLE):
            if len(drawn) == request.count:
                break
            focus = self._focus(rng, drafting.hints, wanted)
            context = Context(rng, drafting.catalog, drafting.renderer, drafting.hints, focus)
            draft = _choose(rng, focus).build(context)
            if draft is None:
                continue
            sql = drafting.renderer.sql(draft.query)
            if sql in sqls or sql in stream.sqls:
                continue
            if questions.find(draft.question) or stream.questions.find(draft.question):
                continue
            sqls.add(sql)
            questions.add(draft.question, sql)
            drawn.append((sql, draft))
        return drawn

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
    """The request's focus in the form seed questions steer by (tables and construct tags)."""
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


@dataclass(frozen=True)
class _Drafting:
    """What every draw of one request reads: the schema's catalog, the seed hints, the
    dialect's renderer."""

    catalog: Catalog
    hints: SeedHints
    renderer: Renderer


@dataclass
class _Stream:
    """The unfocused shards `0 .. position-1` of one run: the SQL and questions they hold."""

    position: int = 0
    sqls: set[str] = field(default_factory=set)
    questions: QuestionIndex = field(default_factory=QuestionIndex)

    def take(self, drawn: list[tuple[str, Draft]]) -> None:
        """Adds the next unfocused shard's drafts."""
        for sql, draft in drawn:
            self.sqls.add(sql)
            self.questions.add(draft.question, sql)
        self.position += 1


_STREAMS: OrderedDict[tuple[object, ...], _Stream] = OrderedDict()
_STREAMS_LOCK = threading.Lock()
_STREAMS_KEPT = 4
"""Runs whose streams a process keeps; a fifth evicts the least recently used."""


def _stream_before(key: tuple[object, ...], index: int) -> _Stream:
    """The cached stream of `key` if it has not gone past shard `index`, else a new one (a
    shard asked for out of order replays its prefix from the start)."""
    stream = _STREAMS.get(key)
    if stream is None or stream.position > index:
        stream = _Stream()
        _STREAMS[key] = stream
    _STREAMS.move_to_end(key)
    while len(_STREAMS) > _STREAMS_KEPT:
        _STREAMS.popitem(last=False)
    return stream
