"""What each table offers to questions: which columns can be summed, grouped, filtered, shown.

This is where degenerate SQL is ruled out once for all constructs: keys and reference columns
are never summed or averaged, text is never averaged, and only categorical columns (not keys,
names, emails or free text) are grouped or filtered by equality. A table's *label* is the column
a person means by "which customers": its name or title, else an identifying text, else its key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlglot import exp

from distillrun.sql.schema import Column, ColumnKind, SchemaInfo, Table
from distillrun.teacher.synthetic import sqlkit
from distillrun.teacher.synthetic.naming import (
    Noun,
    Role,
    column_phrase,
    name_words,
    role_of,
    table_noun,
)

# Numeric columns whose values are codes, not amounts: summing them means nothing.
_CODE_WORDS = frozenset({"id", "code", "zip", "postcode", "phone", "year", "number", "no", "uuid"})


@dataclass(frozen=True)
class Field:
    """A column as questions see it."""

    column: Column
    phrase: str
    role: Role

    @property
    def name(self) -> str:
        return self.column.name

    @property
    def is_date(self) -> bool:
        return self.column.kind == ColumnKind.DATE


@dataclass(frozen=True)
class Entity:
    """A table as questions see it, with its columns sorted by what they are good for."""

    table: Table
    noun: Noun
    alias: str
    key: Field | None
    label: Field
    measures: tuple[Field, ...]
    categories: tuple[Field, ...]
    dates: tuple[Field, ...]
    flags: tuple[Field, ...]
    nullable: tuple[Field, ...]

    @property
    def name(self) -> str:
        return self.table.name


def categories(entity: Entity) -> tuple[Field, ...]:
    return entity.categories


def measures(entity: Entity) -> tuple[Field, ...]:
    return entity.measures


def dates(entity: Entity) -> tuple[Field, ...]:
    return entity.dates


def orderable(entity: Entity) -> tuple[Field, ...]:
    """The columns rows are ranked by: measures and dates."""
    return (*entity.measures, *entity.dates)


@dataclass(frozen=True)
class Link:
    """A foreign key seen as a join: every `child` row points at one `parent` row.

    A composite key joins on all its column pairs; constructs that compare one column with
    one column (IN, COUNT(DISTINCT ...)) take only `single` links.
    """

    child: Entity
    parent: Entity
    pairs: tuple[tuple[Field, Field], ...]
    """(child column, parent column) for each column of the key, in key order."""

    @property
    def child_column(self) -> Field:
        """The key's first child column: NULL exactly when the whole reference is."""
        return self.pairs[0][0]

    @property
    def parent_column(self) -> Field:
        return self.pairs[0][1]

    @property
    def single(self) -> bool:
        return len(self.pairs) == 1

    def on(self) -> exp.Expr:
        conditions = [
            sqlkit.column(c.name, self.child.alias).eq(sqlkit.column(p.name, self.parent.alias))
            for c, p in self.pairs
        ]
        return exp.and_(*conditions) if len(conditions) > 1 else conditions[0]

    def touches(self, entity: Entity) -> bool:
        return entity.name in (self.child.name, self.parent.name)

    def other(self, entity: Entity) -> Entity:
        return self.parent if entity.name == self.child.name else self.child


@dataclass(frozen=True)
class Path:
    """Three tables joined by two links: `first` -`links[0]`- `middle` -`links[1]`- `last`."""

    first: Entity
    middle: Entity
    last: Entity
    links: tuple[Link, Link]

    @property
    def is_chain(self) -> bool:
        """first → middle → last: each row of `first` reaches exactly one row of `last`."""
        return (
            self.links[0].child.name == self.first.name
            and self.links[1].child.name == self.middle.name
        )

    @property
    def is_bridge(self) -> bool:
        """first ← middle → last: `middle` pairs rows of the two ends (order items between
        orders and products)."""
        return all(link.child.name == self.middle.name for link in self.links)


def _field(column: Column) -> Field:
    return Field(column=column, phrase=column_phrase(column.name), role=role_of(column.name))


def _is_measure(field: Field) -> bool:
    return (
        field.column.kind in (ColumnKind.INTEGER, ColumnKind.NUMBER)
        and not set(name_words(field.name)) & _CODE_WORDS
        and field.role not in (Role.IDENTIFYING, Role.LABEL)
    )


def _label(table: Table, key: Field | None) -> Field:
    texts = [_field(c) for c in table.columns if c.kind == ColumnKind.TEXT and not c.primary_key]
    for role in (Role.LABEL, Role.IDENTIFYING):
        named = [f for f in texts if f.role == role]
        if named:
            return named[0]
    return key if key is not None else _field(table.columns[0])


def _aliases(tables: tuple[Table, ...]) -> dict[str, str]:
    """Short, unique table aliases from initials: order_items → oi, orders → o, others → o2."""
    taken: set[str] = set()
    aliases: dict[str, str] = {}
    for table in tables:
        base = "".join(w[0] for w in name_words(table.name) if w[0].isalpha()) or "t"
        alias, n = base, 1
        while alias in taken or sqlkit.identifier(alias).quoted:
            n += 1
            alias = f"{base}{n}"
        taken.add(alias)
        aliases[table.name] = alias
    return aliases


def _entity(table: Table, alias: str, references: set[str]) -> Entity:
    pk = table.primary_key
    key = _field(pk[0]) if len(pk) == 1 else None
    plain = [_field(c) for c in table.columns if not c.primary_key and c.name not in references]
    label = _label(table, key)
    return Entity(
        table=table,
        noun=table_noun(table.name),
        alias=alias,
        key=key,
        label=label,
        measures=tuple(f for f in plain if _is_measure(f)),
        categories=tuple(
            f
            for f in plain
            if f.column.kind == ColumnKind.TEXT and f.role not in (Role.LABEL, Role.IDENTIFYING)
        ),
        dates=tuple(f for f in plain if f.is_date),
        flags=tuple(f for f in plain if f.column.kind == ColumnKind.BOOLEAN),
        nullable=tuple(f for f in plain if f.column.nullable and f != label),
    )


def every_link(catalog: Catalog) -> tuple[Link, ...]:
    return catalog.links


def single_column_links(catalog: Catalog) -> tuple[Link, ...]:
    return catalog.single_links


def links_to_parents_with_categories(catalog: Catalog) -> list[Link]:
    return [k for k in catalog.links if k.parent.categories]


def links_from_children_with_measures(catalog: Catalog) -> list[Link]:
    return [k for k in catalog.links if k.child.measures]


class Catalog:
    """Entities, links (foreign keys, self-references left out) and three-table paths."""

    def __init__(self, schema: SchemaInfo) -> None:
        aliases = _aliases(schema.tables)
        references: dict[str, set[str]] = {t.name.lower(): set() for t in schema.tables}
        for fk in schema.foreign_keys:
            references[fk.table.lower()].update(fk.columns)
        self.entities = tuple(
            _entity(t, aliases[t.name], references[t.name.lower()]) for t in schema.tables
        )
        links: list[Link] = []
        for fk in schema.foreign_keys:
            child, parent = self.entity(fk.table), self.entity(fk.ref_table)
            if child.name == parent.name:
                continue
            pairs = [(child.table.column(c), parent.table.column(p)) for c, p in fk.pairs]
            fields = tuple((_field(c), _field(p)) for c, p in pairs if c and p)
            if len(fields) == len(pairs):
                links.append(Link(child, parent, fields))
        self.links = tuple(links)
        self.paths = tuple(self._paths())

    def entity(self, name: str) -> Entity:
        lowered = name.lower()
        return next(e for e in self.entities if e.name.lower() == lowered)

    @property
    def single_links(self) -> tuple[Link, ...]:
        """Links on one column each (see `Link`)."""
        return tuple(link for link in self.links if link.single)

    def links_of(self, entity: Entity) -> tuple[Link, ...]:
        return tuple(link for link in self.links if link.touches(entity))

    def _paths(self) -> Iterator[Path]:
        for first_link in self.links:
            for second_link in self.links:
                if first_link is second_link:
                    continue
                for middle in (first_link.child, first_link.parent):
                    if not second_link.touches(middle):
                        continue
                    first, last = first_link.other(middle), second_link.other(middle)
                    if len({first.name, middle.name, last.name}) == 3:
                        yield Path(first, middle, last, (first_link, second_link))
