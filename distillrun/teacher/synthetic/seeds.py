"""What the seed questions say about the examples the user wants.

Each seed question is read with plain word matching (no model): which tables and columns it
names ("customers", "category", "expensive" → a price), which constructs it asks for ("how
many" → aggregate, "per" → group_by, "more than three orders" → having, "five most" → order_by +
limit), and which literals it carries: small numbers become LIMIT and HAVING thresholds, years
become date ranges, quoted strings and country-like codes ("DE") become text filter values.
The generator then steers a share of every shard toward one seed question at a time, giving
paraphrase-style variants of it, and weights tables and columns by how often seeds name them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from distillrun.teacher.synthetic.catalog import Catalog, Entity, Field
from distillrun.teacher.synthetic.naming import WORD_NUMBERS, Role, name_words

_NUMBER = r"\d+|" + "|".join(WORD_NUMBERS)
_CONSTRUCT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (tag, re.compile(pattern))
    for tag, pattern in (
        ("aggregate", r"\bhow many\b|\b(total|sum|average|mean|avg|count|number of)\b"),
        ("aggregate", r"\b(maximum|minimum|max|min)\b"),
        ("group_by", r"\b(each|per|every|breakdown|broken down)\b"),
        ("order_by", r"\b(top|most|least|highest|lowest|largest|smallest|cheapest|latest)\b"),
        ("order_by", r"\b(earliest|oldest|newest|expensive|biggest|best|worst|rank)\b"),
        ("distinct", r"\b(distinct|different|unique)\b"),
        ("subquery", r"\b(never|without)\b|\b(above|below|than) (the )?average\b"),
        ("date_filter", r"\b(19|20)\d\d\b|\b(last|past|this|previous|recent) (day|week|month)"),
        ("date_filter", r"\b(last|past|this|previous) (quarter|year)\b|\b(since|before|after)\b"),
        ("filter", r"\b(more|less|fewer|greater|over|under|above|below|at least|at most)\b"),
        ("filter", r"\b(from|whose|where|only)\b"),
        ("revenue", r"\b(revenue|sales|turnover|spent|spend)\b"),
    )
)
_COMPARISON = re.compile(rf"\b(more|fewer|less|at least|at most) (?:than )?({_NUMBER}) (\w+)")
_QUOTED = re.compile(r"'([^']{1,40})'|\"([^\"]{1,40})\"")
_CODE = re.compile(r"\b[A-Z]{2,3}\b")
_SUPERLATIVE_WORDS: dict[str, Role | None] = {
    "expensive": Role.MONEY,
    "cheapest": Role.MONEY,
    "cheap": Role.MONEY,
    "revenue": Role.MONEY,
    "latest": None,
    "earliest": None,
    "recent": None,
    "newest": None,
    "oldest": None,
}


@dataclass(frozen=True)
class SeedFocus:
    """One seed question, read: what a paraphrase-style variant of it should use."""

    question: str
    tables: frozenset[str]
    columns: frozenset[tuple[str, str]]
    constructs: frozenset[str]


@dataclass(frozen=True)
class SeedHints:
    """Everything read from the seed questions, ready for weighting and literals."""

    foci: tuple[SeedFocus, ...] = ()
    table_mentions: Counter[str] = field(default_factory=Counter)
    column_mentions: Counter[tuple[str, str]] = field(default_factory=Counter)
    counts: tuple[int, ...] = ()
    years: tuple[int, ...] = ()
    text_values: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)


def _contains(text: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text) is not None


def _mentions_entity(text: str, entity: Entity) -> bool:
    return any(_contains(text, p) for p in (entity.noun.one, entity.noun.many, entity.name.lower()))


def _implied(text: str, f: Field) -> bool:
    """A superlative that implies the column: "expensive" → money, "latest" → a date."""
    return any(
        _contains(text, word) and (f.is_date if role is None else f.role == role)
        for word, role in _SUPERLATIVE_WORDS.items()
    )


def _mentioned_fields(text: str, entity: Entity, table_named: bool) -> list[Field]:
    """Columns a question names: by phrase ("signup date"), by their distinctive words, or
    by a superlative that implies them when the table is named too."""
    noun_words = set(name_words(entity.name)) | set(entity.noun.one.split())
    found: list[Field] = []
    for f in (*entity.measures, *entity.categories, *entity.dates, *entity.flags):
        distinctive = [w for w in name_words(f.name) if w not in noun_words and len(w) > 3]
        if (
            _contains(text, f.phrase)
            or (distinctive and all(_contains(text, w) for w in distinctive))
            or (table_named and _implied(text, f))
        ):
            found.append(f)
    return found


def _numbers(text: str) -> list[int]:
    found = re.findall(rf"\b(?:{_NUMBER})\b", text)
    return [int(t) if t.isdigit() else WORD_NUMBERS[t] for t in found]


def read_seed_questions(questions: tuple[str, ...], catalog: Catalog) -> SeedHints:
    """Reads every seed question against the schema; words that name nothing are ignored."""
    foci: list[SeedFocus] = []
    table_mentions: Counter[str] = Counter()
    column_mentions: Counter[tuple[str, str]] = Counter()
    counts: list[int] = []
    years: list[int] = []
    text_values: dict[tuple[str, str], list[str]] = {}
    for question in questions:
        text = question.lower()
        tables = [e for e in catalog.entities if _mentions_entity(text, e)]
        columns = [
            (e.name, f.name)
            for e in catalog.entities
            for f in _mentioned_fields(text, e, e.name in {t.name for t in tables})
        ]
        constructs = {tag for tag, pattern in _CONSTRUCT_PATTERNS if pattern.search(text)}
        for match in _COMPARISON.finditer(text):
            if any(_contains(match.group(3), e.noun.many) for e in catalog.entities):
                constructs.add("having")
        if len(tables) > 1:
            constructs.add("join")
        for number in _numbers(text):
            if 1900 <= number <= 2100:
                years.append(number)
            elif 1 <= number <= 50:
                counts.append(number)
        _collect_text_values(question, tables or list(catalog.entities), columns, text_values)
        table_mentions.update(e.name for e in tables)
        column_mentions.update(columns)
        foci.append(
            SeedFocus(
                question=question,
                tables=frozenset(e.name for e in tables),
                columns=frozenset(columns),
                constructs=frozenset(constructs),
            )
        )
    return SeedHints(
        foci=tuple(foci),
        table_mentions=table_mentions,
        column_mentions=column_mentions,
        counts=tuple(sorted(set(counts))),
        years=tuple(sorted(set(years))),
        text_values={k: tuple(dict.fromkeys(v)) for k, v in text_values.items()},
    )


def _collect_text_values(
    question: str,
    entities: list[Entity],
    mentioned: list[tuple[str, str]],
    into: dict[tuple[str, str], list[str]],
) -> None:
    """Quoted strings go to the categorical columns the question names, else to all those of
    the tables it names; short upper-case codes ("DE", "USD") go to country and currency
    columns."""
    quoted = [a or b for a, b in _QUOTED.findall(question)]
    codes = _CODE.findall(question)
    for entity in entities:
        named = [f for f in entity.categories if (entity.name, f.name) in mentioned]
        for f in named or entity.categories:
            values = list(quoted)
            if f.role in (Role.COUNTRY, Role.CURRENCY):
                values += codes
            if values:
                into.setdefault((entity.name, f.name), []).extend(values)
