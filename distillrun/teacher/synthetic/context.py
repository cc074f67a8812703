"""The state one example is built from: the seeded random source, the schema, the seed hints.

Every random choice an example makes goes through `Context`, so a shard is a pure function of
its (seed, index) and the schema. Choices are weighted toward what the seed questions name,
and toward the one seed question in focus when there is one. `Context.condition` writes the
WHERE conditions all constructs share (numeric thresholds, text values, date ranges, flags,
missing values), each with the words for the question. `over_table` and `over_link` declare
what a builder is built over; the context picks it, and nothing is built where there is none.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlglot import exp

from distillrun.sql.schema import ColumnKind
from distillrun.teacher.synthetic import sqlkit
from distillrun.teacher.synthetic.catalog import Catalog, Entity, Field, Link, Path
from distillrun.teacher.synthetic.naming import (
    DEFAULT_INTEGER_THRESHOLDS,
    DEFAULT_NUMBER_THRESHOLDS,
    TEXT_VALUES,
    THRESHOLDS,
    Noun,
    Role,
    name_words,
    output_name,
    spell,
)
from distillrun.teacher.synthetic.seeds import SeedFocus, SeedHints

T = TypeVar("T")

_LIMITS = (3, 5, 10)
_HAVING_COUNTS = (1, 2, 3, 5)
_WINDOW_DAYS = (7, 30, 90, 365)
_VOWEL_SOUND_EXCEPTIONS = ("uni", "use", "usu", "eu", "one")

AGGREGATES: dict[str, tuple[type[exp.AggFunc], str, str]] = {
    # name: (function, words in a question, output name prefix)
    "SUM": (exp.Sum, "total", "total"),
    "AVG": (exp.Avg, "average", "avg"),
    "MIN": (exp.Min, "lowest", "min"),
    "MAX": (exp.Max, "highest", "max"),
}
"""The aggregates builders apply to a measure, by name, in the order they are drawn from."""

SUMS = ("SUM", "AVG")
"""The aggregates of AGGREGATES that sum up a measure (a total or an average, not an extreme)."""


@dataclass(frozen=True)
class Draft:
    """One example before it gets its id: the builder's question, query (a SELECT, or a set
    operation of two) and explanation."""

    question: str
    query: exp.Query
    explanation: str


@dataclass(frozen=True)
class Condition:
    """A WHERE condition, with the words that follow a plural noun ("orders *with a total
    above 100*")."""

    expression: exp.Expr
    phrase: str


def phrase_of(condition: Condition | None) -> str:
    return condition.phrase if condition is not None else ""


def link_words(link: Link) -> dict[str, str]:
    """The nouns of a question about a link: `cone`, `cmany` (the child table's rows) and
    `pone`, `pmany` (the parent's)."""
    child, parent = link.child.noun, link.parent.noun
    return {"cone": child.one, "cmany": child.many, "pone": parent.one, "pmany": parent.many}


def filtered(query: exp.Select, condition: Condition | None) -> exp.Select:
    """`query` with `condition` as its WHERE, or as it is without one."""
    return query if condition is None else query.where(condition.expression)


TOPICS = frozenset({"date_filter", "revenue"})
"""Tags for what a question is about rather than a construct its SQL shows: seed questions are
read for them (`seeds`) and builders carry them, but examples never do."""


@dataclass(frozen=True)
class Builder:
    """One kind of example. `tags` are the constructs it shows (`sql.constructs.CONSTRUCTS`)
    and the `TOPICS` it is about: a seed question or a top-up focus asking for them makes the
    builder likelier while in focus. An example's stored tags are read off its SQL instead."""

    name: str
    tags: frozenset[str]
    build: Callable[[Context], Draft | None]
    weight: float = 1.0


def article(phrase: str) -> str:
    """The phrase with its indefinite article: "a price", "an order date"."""
    starts_vowel = phrase[:1] in "aeiou" and not phrase.startswith(_VOWEL_SOUND_EXCEPTIONS)
    return f"an {phrase}" if starts_vowel else f"a {phrase}"


def thresholds(f: Field) -> tuple[int, ...]:
    if f.role in THRESHOLDS:
        return THRESHOLDS[f.role]
    if f.column.kind == ColumnKind.INTEGER:
        return DEFAULT_INTEGER_THRESHOLDS
    return DEFAULT_NUMBER_THRESHOLDS


class Context:
    """Seeded choices for one example."""

    def __init__(
        self,
        rng: random.Random,
        catalog: Catalog,
        renderer: sqlkit.Renderer,
        hints: SeedHints,
        focus: SeedFocus | None,
    ) -> None:
        self.rng = rng
        self.catalog = catalog
        self.renderer = renderer
        self.hints = hints
        self.focus = focus

    # -- choices -------------------------------------------------------------------------

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def _weighted(self, options: Sequence[T], weight: Callable[[T], float]) -> T | None:
        if not options:
            return None
        return self.rng.choices(options, weights=[weight(o) for o in options])[0]

    def _table_weight(self, name: str) -> float:
        focused = self.focus is not None and name in self.focus.tables
        return 1.0 + 2.0 * self.hints.table_mentions[name] + (8.0 if focused else 0.0)

    def entity(self, candidates: Sequence[Entity]) -> Entity | None:
        return self._weighted(candidates, lambda e: self._table_weight(e.name))

    def field(self, entity: Entity, candidates: Sequence[Field]) -> Field | None:
        def weight(f: Field) -> float:
            key = (entity.name, f.name)
            focused = self.focus is not None and key in self.focus.columns
            return 1.0 + 2.0 * self.hints.column_mentions[key] + (8.0 if focused else 0.0)

        return self._weighted(candidates, weight)

    def table_with(
        self, *kinds: Callable[[Entity], Sequence[Field]]
    ) -> tuple[Entity, list[Field]] | None:
        """A table with columns of every kind asked for (`catalog.categories`, `measures`, ...)
        and one column of each kind, chosen as `entity` and `field` choose; None when no table
        has them all."""
        e = self.entity([e for e in self.catalog.entities if all(kind(e) for kind in kinds)])
        if e is None:
            return None
        chosen = [f for kind in kinds if (f := self.field(e, kind(e))) is not None]
        return (e, chosen) if len(chosen) == len(kinds) else None

    def link(self, candidates: Sequence[Link]) -> Link | None:
        return self._weighted(
            candidates,
            lambda k: self._table_weight(k.child.name) + self._table_weight(k.parent.name),
        )

    def path(self, candidates: Sequence[Path]) -> Path | None:
        return self._weighted(
            candidates,
            lambda p: sum(self._table_weight(e.name) for e in (p.first, p.middle, p.last)),
        )

    # -- words ---------------------------------------------------------------------------

    def where_note(self, condition: Condition | None, many: str) -> str:
        """The explanation's sentence for a condition (empty without one)."""
        if condition is None:
            return ""
        where = self.renderer.sql(condition.expression)
        return f" WHERE {where} keeps only the {many} {condition.phrase}."

    def say(self, templates: Sequence[str], **values: str) -> str:
        """One of `templates`, filled in, with a capital first letter and single spaces."""
        text = " ".join(self.pick(templates).format(**values).split())
        text = re.sub(r" ([?.,])", r"\1", text)
        return text[:1].upper() + text[1:]

    def spell(self, number: int) -> str:
        return spell(number, in_words=self.chance(0.5))

    def top_count(self) -> int:
        """N of a top-N question: the seed questions' small numbers, or 3, 5, 10."""
        return self.pick(tuple(sorted({*_LIMITS, *(n for n in self.hints.counts if n <= 20)})))

    def having_count(self) -> int:
        return self.pick(
            tuple(sorted({*_HAVING_COUNTS, *(n for n in self.hints.counts if n <= 10)}))
        )

    def count_having(self, noun: Noun) -> tuple[exp.Binary, str, dict[str, str]]:
        """`COUNT(*) > k` (or `>= k`) for groups with more than (at least) k rows of `noun`:
        the condition, its phrasing variant ("more_than", "at_least") and the words `k` and
        `noun` (singular in "more than one")."""
        k = self.having_count()
        at_least = self.chance(0.3)
        op: type[exp.Binary] = exp.GTE if at_least else exp.GT
        having = op(this=sqlkit.count_star(), expression=sqlkit.number(k))
        words = {"k": self.spell(k), "noun": noun.one if k == 1 and not at_least else noun.many}
        return having, "at_least" if at_least else "more_than", words

    def threshold(self, f: Field, above: bool) -> int:
        """A plausible threshold: from the lower two thirds of the role's range for "above"
        questions and the upper two thirds for "below", so most of them match rows."""
        values = thresholds(f)
        third = len(values) // 3
        return self.pick(values[: len(values) - third] if above else values[third:])

    def period(self, d: Field) -> tuple[str, exp.Expr, str]:
        """A year or a month of the date column `d`: the word, the expression (text such as
        `2025` or `2025-03`) and an output name (`order_month` for `order_date`)."""
        period, of = self.pick((("year", sqlkit.year_of), ("month", sqlkit.month_of)))
        stem = [w for w in name_words(d.name) if w not in ("date", "at", "on", "time", "day")]
        return period, of(sqlkit.column(d.name)), output_name(*stem, period)

    def text_values(self, entity: Entity, f: Field) -> tuple[str, ...]:
        return self.hints.text_values.get((entity.name, f.name)) or TEXT_VALUES.get(f.role, ())

    # -- conditions ----------------------------------------------------------------------

    def condition(
        self, entity: Entity, alias: str | None = None, avoid: Field | None = None
    ) -> Condition | None:
        """A WHERE condition on one of `entity`'s columns other than `avoid`, qualified by
        `alias` when given; None when the table has no such column to filter on."""

        def usable(fields: Sequence[Field]) -> list[Field]:
            return [f for f in fields if avoid is None or f.name != avoid.name]

        texts = [f for f in usable(entity.categories) if self.text_values(entity, f)]
        makers: list[tuple[float, Callable[[], Condition | None]]] = []
        if measures := usable(entity.measures):
            makers.append((3.0, lambda: self._numeric_condition(entity, measures, alias)))
        if texts:
            makers.append((3.0, lambda: self._text_condition(entity, texts, alias)))
        if dates := usable(entity.dates):
            makers.append((2.5, lambda: self._date_condition(entity, dates, alias)))
        if flags := usable(entity.flags):
            makers.append((1.0, lambda: self._flag_condition(entity, flags, alias)))
        if nullable := usable(entity.nullable):
            makers.append((0.3, lambda: self._null_condition(entity, nullable, alias)))
        if not makers:
            return None
        make = self.rng.choices([m for _, m in makers], weights=[w for w, _ in makers])[0]
        return make()

    def _numeric_condition(
        self, entity: Entity, fields: Sequence[Field], alias: str | None
    ) -> Condition | None:
        f = self.field(entity, fields)
        if f is None:
            return None
        col = sqlkit.column(f.name, alias)
        a_col = article(f.phrase)
        op = self.pick(("gt", "gt", "gte", "lt", "lte", "between"))
        if op == "between":
            low, high = sorted(self.rng.sample(thresholds(f), 2))
            return Condition(
                exp.Between(this=col, low=sqlkit.number(low), high=sqlkit.number(high)),
                self.pick(
                    (
                        f"with {a_col} between {low} and {high}",
                        f"whose {f.phrase} is between {low} and {high}",
                        f"with {a_col} from {low} to {high}",
                    )
                ),
            )
        value = self.threshold(f, above=op in ("gt", "gte"))
        literal = sqlkit.number(value)
        comparisons: dict[str, tuple[exp.Expr, tuple[str, ...]]] = {
            "gt": (
                exp.GT(this=col, expression=literal),
                (
                    f"with {a_col} above {value}",
                    f"with {a_col} greater than {value}",
                    f"whose {f.phrase} is over {value}",
                    f"with {a_col} of more than {value}",
                ),
            ),
            "gte": (
                exp.GTE(this=col, expression=literal),
                (f"with {a_col} of at least {value}", f"whose {f.phrase} is {value} or more"),
            ),
            "lt": (
                exp.LT(this=col, expression=literal),
                (
                    f"with {a_col} below {value}",
                    f"whose {f.phrase} is less than {value}",
                    f"with {a_col} under {value}",
                ),
            ),
            "lte": (
                exp.LTE(this=col, expression=literal),
                (f"with {a_col} of at most {value}", f"whose {f.phrase} is {value} or less"),
            ),
        }
        expression, phrases = comparisons[op]
        return Condition(expression, self.pick(phrases))

    def _text_condition(
        self, entity: Entity, fields: Sequence[Field], alias: str | None
    ) -> Condition | None:
        f = self.field(entity, fields)
        if f is None:
            return None
        value = self.pick(self.text_values(entity, f))
        phrases = [f"whose {f.phrase} is '{value}'", f"with {f.phrase} '{value}'"]
        if f.role in (Role.COUNTRY, Role.CITY):
            phrases += [f"from {value}", f"in {value}"]
        elif f.role == Role.STATUS:
            phrases += [f"that are {value}", f"with status {value}"]
        elif f.phrase == "category":
            phrases += [f"in the {value} category", f"in category '{value}'"]
        return Condition(sqlkit.column(f.name, alias).eq(sqlkit.string(value)), self.pick(phrases))

    def _flag_condition(
        self, entity: Entity, fields: Sequence[Field], alias: str | None
    ) -> Condition | None:
        f = self.field(entity, fields)
        if f is None:
            return None
        truth = self.chance(0.7)
        words = name_words(f.name)
        if words[0] in ("is", "has") and len(words) > 1:
            rest = " ".join(words[1:])
            verb = "are" if words[0] == "is" else "have"
            phrase = f"that {verb} {rest}" if truth else f"that {verb} not {rest}"
        else:
            phrase = f"with {f.phrase} set to {'true' if truth else 'false'}"
        return Condition(sqlkit.column(f.name, alias).eq(exp.Boolean(this=truth)), phrase)

    def _null_condition(
        self, entity: Entity, fields: Sequence[Field], alias: str | None
    ) -> Condition | None:
        f = self.field(entity, fields)
        if f is None:
            return None
        return Condition(
            exp.Is(this=sqlkit.column(f.name, alias), expression=exp.Null()),
            self.pick((f"with no {f.phrase}", f"without {article(f.phrase)}")),
        )

    def _date_condition(
        self, entity: Entity, fields: Sequence[Field], alias: str | None
    ) -> Condition | None:
        """Without data the generator cannot know which dates exist, so ranges are relative to
        the latest date in the table (a subquery), or built from a year a seed question names."""
        f = self.field(entity, fields)
        if f is None:
            return None
        col = sqlkit.column(f.name, alias)
        kind = self.pick(("window", "latest", *(("year", "year") if self.hints.years else ())))
        if kind == "year":
            return self._year_condition(f, col, self.pick(self.hints.years))
        source = sqlkit.table(entity.name)
        inner = sqlkit.column(f.name)
        if kind == "window":
            days = self.pick(_WINDOW_DAYS)
            start = exp.select(sqlkit.days_before(exp.Max(this=inner), days)).from_(source)
            return Condition(
                exp.GTE(this=col, expression=start.subquery()),
                self.pick(
                    (
                        f"with {article(f.phrase)} within {days} days of the latest one",
                        f"whose {f.phrase} falls in the last {days} days on record",
                        f"with {article(f.phrase)} in the {days} days up to the most recent "
                        f"{f.phrase}",
                    )
                ),
            )
        period, of = self.pick((("year", sqlkit.year_of), ("month", sqlkit.month_of)))
        latest = exp.select(exp.Max(this=of(inner))).from_(source)
        return Condition(
            of(col).eq(latest.subquery()),
            self.pick(
                (
                    f"with {article(f.phrase)} in the most recent {period} on record",
                    f"whose {f.phrase} is in the latest {period} that has any",
                )
            ),
        )

    def _year_condition(self, f: Field, col: exp.Column, year: int) -> Condition:
        """A date range from a year the seed questions mention, as plain date literals."""
        start, end = sqlkit.string(f"{year}-01-01"), sqlkit.string(f"{year + 1}-01-01")
        a_col = article(f.phrase)
        shape = self.pick(("in", "in", "half", "before", "since"))
        if shape == "half":
            middle = sqlkit.string(f"{year}-07-01")
            return Condition(
                exp.and_(exp.GTE(this=col, expression=start), exp.LT(this=col, expression=middle)),
                f"with {a_col} in the first half of {year}",
            )
        if shape == "before":
            return Condition(exp.LT(this=col, expression=start), f"with {a_col} before {year}")
        if shape == "since":
            return Condition(
                exp.GTE(this=col, expression=start),
                f"with {a_col} in {year} or later",
            )
        return Condition(
            exp.and_(exp.GTE(this=col, expression=start), exp.LT(this=col, expression=end)),
            self.pick((f"with {a_col} in {year}", f"whose {f.phrase} falls in {year}")),
        )


BuildOver = Callable[..., Draft | None]
"""A builder's body, called with the context and what it is built over."""


def over_table(
    *kinds: Callable[[Entity], Sequence[Field]],
) -> Callable[[BuildOver], Callable[[Context], Draft | None]]:
    """A builder over one table with a column of each of `kinds`: its body gets the table and
    one column of each kind (chosen by `Context.table_with`) after the context, and nothing is
    built where no table has them."""

    def over(build: BuildOver) -> Callable[[Context], Draft | None]:
        @functools.wraps(build)
        def chosen_then_built(ctx: Context) -> Draft | None:
            chosen = ctx.table_with(*kinds)
            return None if chosen is None else build(ctx, chosen[0], *chosen[1])

        return chosen_then_built

    return over


def over_link(
    candidates: Callable[[Catalog], Sequence[Link]],
) -> Callable[[BuildOver], Callable[[Context], Draft | None]]:
    """A builder over one of the links `candidates` picks from the catalog: its body gets the
    link (chosen by `Context.link`) after the context, and nothing is built where there is
    none."""

    def over(build: BuildOver) -> Callable[[Context], Draft | None]:
        @functools.wraps(build)
        def chosen_then_built(ctx: Context) -> Draft | None:
            link = ctx.link(candidates(ctx.catalog))
            return None if link is None else build(ctx, link)

        return chosen_then_built

    return over
