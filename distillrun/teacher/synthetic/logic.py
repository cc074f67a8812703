"""Examples of conditional logic: CASE (value bands, high/low labels, conditional counts),
EXISTS / NOT EXISTS (parents with or without matching children), set operations (UNION,
INTERSECT, EXCEPT of the parents reached through two conditions) and COALESCE (per-parent
totals that are 0, not NULL, for parents without children).

Each question states the exact logic: band edges with which side is inclusive, "zero
included" where a LEFT JOIN keeps parents without children, "both ... and" for INTERSECT,
"but no" for EXCEPT. Set operations return the parent's key with its label, so two parents
sharing a name are not merged.
"""

from __future__ import annotations

from sqlglot import exp

from distillrun.teacher.synthetic import sqlkit
from distillrun.teacher.synthetic.catalog import (
    Entity,
    Field,
    Link,
    categories,
    every_link,
    links_from_children_with_measures,
    measures,
)
from distillrun.teacher.synthetic.context import (
    Builder,
    Condition,
    Context,
    Draft,
    article,
    link_words,
    over_link,
    over_table,
    phrase_of,
    thresholds,
)
from distillrun.teacher.synthetic.naming import output_name
from distillrun.teacher.synthetic.phrasings import questions
from distillrun.teacher.synthetic.shapes import parent_keys, per_parent


@over_table(measures)
def value_bands(ctx: Context, e: Entity, m: Field) -> Draft | None:
    """Rows counted per band of a measure: CASE WHEN m < a ... WHEN m < b ... ELSE ... END."""
    low, high = sorted(ctx.rng.sample(thresholds(m), 2))
    col = sqlkit.column(m.name)
    band = sqlkit.case(
        [
            (exp.LT(this=col.copy(), expression=sqlkit.number(low)), sqlkit.string(f"under {low}")),
            (
                exp.LT(this=col.copy(), expression=sqlkit.number(high)),
                sqlkit.string(f"{low} to under {high}"),
            ),
        ],
        sqlkit.string(f"{high} or more"),
    )
    count_name = output_name(e.noun.one, "count")
    query = (
        exp.select(
            sqlkit.aliased(band, output_name(m.name, "band")),
            sqlkit.aliased(sqlkit.count_star(), count_name),
        )
        .from_(sqlkit.table(e.name))
        .group_by(band.copy())
    )
    question = ctx.say(
        questions("value_bands", "default"),
        many=e.noun.many,
        a_col=article(m.phrase),
        col=m.phrase,
        low=str(low),
        high=str(high),
    )
    explanation = (
        f"A CASE expression puts each {e.noun.one} in a band of {m.name} (the first WHEN that"
        " holds wins); GROUP BY that expression and COUNT(*) count each band."
    )
    return Draft(question, query, explanation)


@over_table(measures)
def high_low_label(ctx: Context, e: Entity, m: Field) -> Draft | None:
    """Every row labelled by a threshold on a measure: CASE WHEN m >= v THEN 'high' ..."""
    value = ctx.threshold(m, above=True)
    col = sqlkit.column(m.name)
    label = sqlkit.case(
        [(exp.GTE(this=col.copy(), expression=sqlkit.number(value)), sqlkit.string("high"))],
        sqlkit.string("low"),
    )
    names = dict.fromkeys((e.label.name, m.name))
    query = exp.select(
        *(sqlkit.column(n) for n in names), sqlkit.aliased(label, output_name(m.name, "level"))
    ).from_(sqlkit.table(e.name))
    question = ctx.say(
        questions("high_low_label", "default"), one=e.noun.one, col=m.phrase, v=str(value)
    )
    explanation = (
        f"CASE WHEN {m.name} >= {value} THEN 'high' ELSE 'low' END labels each row of {e.name}."
    )
    return Draft(question, query, explanation)


def _matching_count(cond: Condition) -> exp.Sum:
    """SUM(CASE WHEN cond THEN 1 ELSE 0 END): the rows that meet `cond`, 0 when none do."""
    return exp.Sum(this=sqlkit.case([(cond.expression, sqlkit.number(1))], sqlkit.number(0)))


@over_table(categories)
def conditional_counts(ctx: Context, e: Entity, g: Field) -> Draft | None:
    """Per group, all rows and the rows meeting a condition, side by side."""
    cond = ctx.condition(e, avoid=g)
    if cond is None:
        return None
    query = (
        exp.select(
            sqlkit.column(g.name),
            sqlkit.aliased(sqlkit.count_star(), output_name("all", e.noun.many)),
            sqlkit.aliased(_matching_count(cond), output_name("matching", e.noun.many)),
        )
        .from_(sqlkit.table(e.name))
        .group_by(sqlkit.column(g.name))
    )
    question = ctx.say(
        questions("conditional_counts", "default"), g=g.phrase, many=e.noun.many, cond=cond.phrase
    )
    explanation = (
        f"Per {g.name}, COUNT(*) counts every {e.noun.one} and SUM(CASE WHEN"
        f" {ctx.renderer.sql(cond.expression)} THEN 1 ELSE 0 END) only those {cond.phrase}."
    )
    return Draft(question, query, explanation)


@over_link(every_link)
def matching_children(ctx: Context, link: Link) -> Draft | None:
    """Per parent, how many of its children meet a condition, zero included."""
    c, p = link.child, link.parent
    cond = ctx.condition(c, c.alias, avoid=link.child_column)
    if cond is None:
        return None
    matching = output_name("matching", c.noun.many)
    query = per_parent(link, _matching_count(cond), matching, show_key=False)
    question = ctx.say(
        questions("matching_children", "default"), cond=cond.phrase, **link_words(link)
    )
    explanation = (
        f"A LEFT JOIN keeps every {p.noun.one}; SUM(CASE WHEN ... THEN 1 ELSE 0 END) counts"
        f" their {c.noun.many} {cond.phrase}, 0 for those with none."
    )
    return Draft(question, query, explanation)


def _exists(link: Link, cond: Condition | None) -> exp.Exists:
    """EXISTS (SELECT 1 FROM child WHERE child.fk = parent.key [AND cond])."""
    c = link.child
    where: exp.Expr = link.on() if cond is None else exp.and_(link.on(), cond.expression)
    inner = exp.select(sqlkit.number(1)).from_(sqlkit.table(c.name, c.alias)).where(where)
    return exp.Exists(this=inner)


@over_link(every_link)
def parents_with_exists(ctx: Context, link: Link) -> Draft | None:
    """Parents (meeting a condition or not) that have, or have no, matching children."""
    c, p = link.child, link.parent
    child_cond = ctx.condition(c, c.alias, avoid=link.child_column) if ctx.chance(0.8) else None
    parent_cond = ctx.condition(p, p.alias) if ctx.chance(0.35) else None
    negated = ctx.chance(0.5)
    test: exp.Expr = _exists(link, child_cond)
    if negated:
        test = exp.Not(this=test)
    where = test if parent_cond is None else exp.and_(parent_cond.expression, test)
    query = (
        exp.select(sqlkit.column(p.label.name, p.alias))
        .from_(sqlkit.table(p.name, p.alias))
        .where(where)
    )
    values = {
        "pmany": f"{p.noun.many} {phrase_of(parent_cond)}",
        "cmany": f"{c.noun.many} {phrase_of(child_cond)}",
    }
    question = ctx.say(questions("parents_with_exists", "without" if negated else "with"), **values)
    kind = "NOT EXISTS" if negated else "EXISTS"
    explanation = (
        f"{kind} with a correlated subquery on {ctx.renderer.sql(link.on())} tests, per"
        f" {p.noun.one}, whether any {c.noun.one} {phrase_of(child_cond)} exists."
        f"{ctx.where_note(parent_cond, p.noun.many)}"
    )
    return Draft(question, query, explanation)


def _reached(link: Link, cond: Condition) -> exp.Select:
    """The parents (key and label) that have a child meeting `cond`."""
    c, p = link.child, link.parent
    return (
        exp.select(*parent_keys(link))
        .from_(sqlkit.table(p.name, p.alias))
        .join(sqlkit.table(c.name, c.alias), on=link.on())
        .where(cond.expression)
    )


def _two_conditions(ctx: Context, entity: Entity, link: Link) -> tuple[Condition, Condition] | None:
    """Two conditions on `entity` with different SQL (a few draws), or None."""
    first = ctx.condition(entity, entity.alias, avoid=link.child_column)
    if first is None:
        return None
    for _ in range(4):
        second = ctx.condition(entity, entity.alias, avoid=link.child_column)
        if second is not None and ctx.renderer.sql(second.expression) != ctx.renderer.sql(
            first.expression
        ):
            return first, second
    return None


_SET_OPERATIONS = {"UNION": exp.union, "INTERSECT": exp.intersect, "EXCEPT": exp.except_}


@over_link(every_link)
def parents_by_set_operation(ctx: Context, link: Link) -> Draft | None:
    """Parents with children meeting one condition UNION / INTERSECT / EXCEPT those with
    children meeting another."""
    c, p = link.child, link.parent
    conditions = _two_conditions(ctx, c, link)
    if conditions is None:
        return None
    first, second = conditions
    name = ctx.pick(tuple(_SET_OPERATIONS))
    query = _SET_OPERATIONS[name](_reached(link, first), _reached(link, second), distinct=True)
    question = ctx.say(
        questions("parents_by_set_operation", name),
        first=first.phrase,
        second=second.phrase,
        **link_words(link),
    )
    explanation = (
        f"Each side joins {p.name} to {c.name} and keeps the {p.noun.many} with a {c.noun.one}"
        f" meeting its condition; {name} combines the two sets of {p.noun.many} (by"
        f" {link.parent_column.name}, so namesakes stay apart)."
    )
    return Draft(question, query, explanation)


@over_link(links_from_children_with_measures)
def totals_with_zero(ctx: Context, link: Link) -> Draft | None:
    """Per parent, the total of a child measure, 0 (COALESCE) for parents without children."""
    c, p = link.child, link.parent
    m = ctx.field(c, c.measures)
    if m is None:
        return None
    total_name = output_name("total", m.name)
    total = exp.Coalesce(
        this=exp.Sum(this=sqlkit.column(m.name, c.alias)), expressions=[sqlkit.number(0)]
    )
    query = per_parent(link, total, total_name, show_key=False)
    if ctx.chance(0.4):
        query = query.order_by(ctx.renderer.ordered(sqlkit.column(total_name), descending=True))
        ordered = ", largest first"
    else:
        ordered = ""
    question = ctx.say(
        questions("totals_with_zero", "default"), m=m.phrase, ordered=ordered, **link_words(link)
    )
    explanation = (
        f"A LEFT JOIN keeps every {p.noun.one}; SUM({c.alias}.{m.name}) is NULL for those"
        " without any, and COALESCE(..., 0) turns that into 0."
    )
    return Draft(question, query, explanation)


BUILDERS: tuple[Builder, ...] = (
    Builder("value_bands", frozenset({"case", "aggregate", "group_by"}), value_bands, 0.5),
    Builder("high_low_label", frozenset({"case"}), high_low_label, 0.6),
    Builder(
        "conditional_counts", frozenset({"case", "aggregate", "group_by"}), conditional_counts, 0.5
    ),
    Builder("matching_children", frozenset({"case", "join", "aggregate"}), matching_children, 0.5),
    Builder(
        "parents_with_exists", frozenset({"exists", "subquery", "filter"}), parents_with_exists, 1.2
    ),
    Builder(
        "parents_by_set_operation",
        frozenset({"set_operation", "join", "filter"}),
        parents_by_set_operation,
        0.7,
    ),
    Builder(
        "totals_with_zero", frozenset({"null_handling", "join", "aggregate"}), totals_with_zero, 0.8
    ),
)
