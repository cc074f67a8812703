"""Analytic examples: window functions (ranks within a group, top N per group, running totals,
period-over-period changes, shares of a total, a row beside its group's average) and common
table expressions (a per-parent count or total computed once, then averaged or compared).

The window queries say in their question what a window function does to the rows: ranks "ties
sharing a rank" (RANK) or numbers them (ROW_NUMBER), running totals run "over time", the
previous period is the previous one "on record" (LAG reads the previous row, not the calendar).
Counts per parent use a LEFT JOIN, so parents without children count as zero, as the questions
say.
"""

from __future__ import annotations

from sqlglot import exp

from distillrun.teacher.synthetic import sqlkit
from distillrun.teacher.synthetic.catalog import (
    Entity,
    Field,
    Link,
    categories,
    dates,
    every_link,
    measures,
    orderable,
)
from distillrun.teacher.synthetic.context import (
    Builder,
    Context,
    Draft,
    link_words,
    over_link,
    over_table,
    phrase_of,
)
from distillrun.teacher.synthetic.naming import (
    output_name,
    superlatives,
    top_variants,
)
from distillrun.teacher.synthetic.phrasings import questions
from distillrun.teacher.synthetic.shapes import per_parent

_RANKINGS: dict[str, type[exp.Expr]] = {
    "RANK": exp.Rank,
    "DENSE_RANK": exp.DenseRank,
    "ROW_NUMBER": exp.RowNumber,
}


def _direction(ctx: Context, f: Field) -> tuple[bool, str, exp.Ordered]:
    """Highest first (three times in four) or lowest first by `f`: whether descending, the
    superlative for the top ("most expensive", "earliest") and the ORDER BY key."""
    descending = ctx.chance(0.75)
    word = superlatives(f.name, f.role, f.is_date)[0 if descending else 1]
    return descending, word, ctx.renderer.ordered(sqlkit.column(f.name), descending)


def _shown(e: Entity, *fields: Field) -> list[exp.Expr]:
    """The label and `fields`, each column once."""
    names = dict.fromkeys(f.name for f in (e.label, *fields))
    return [sqlkit.column(n) for n in names]


@over_table(categories, orderable)
def rank_within_group(ctx: Context, e: Entity, g: Field, f: Field) -> Draft | None:
    descending, word, order = _direction(ctx, f)
    name = ctx.pick(tuple(_RANKINGS))
    out = output_name(f.name, "rank" if name != "ROW_NUMBER" else "position")
    ranked = sqlkit.window(_RANKINGS[name](), [sqlkit.column(g.name)], order)
    query = exp.select(*_shown(e, g, f), sqlkit.aliased(ranked, out)).from_(sqlkit.table(e.name))
    values = {"many": e.noun.many, "g": g.phrase, "col": f.phrase, "word": word}
    question = ctx.say(questions("rank_within_group", name), one=e.noun.one, **values)
    direction = "DESC" if descending else "ASC"
    explanation = (
        f"{name}() OVER (PARTITION BY {g.name} ORDER BY {f.name} {direction}) restarts the"
        f" ranking in every {g.phrase} and orders its {e.noun.many} by {f.phrase}."
    )
    return Draft(question, query, explanation)


@over_table(categories, orderable)
def top_per_group(ctx: Context, e: Entity, g: Field, f: Field) -> Draft | None:
    """The top N rows of every group: ROW_NUMBER in a CTE, filtered outside it."""
    descending, word, order = _direction(ctx, f)
    n = ctx.pick((1, 1, 2, 3))
    position = output_name(f.name, "position")
    numbered = sqlkit.window(exp.RowNumber(), [sqlkit.column(g.name)], order)
    inner = exp.select(*_shown(e, g, f), sqlkit.aliased(numbered, position)).from_(
        sqlkit.table(e.name)
    )
    cte = output_name("ranked", e.noun.many)
    query = (
        exp.select(*_shown(e, g, f))
        .from_(sqlkit.table(cte))
        .where(
            (exp.EQ if n == 1 else exp.LTE)(
                this=sqlkit.column(position), expression=sqlkit.number(n)
            )
        )
        .order_by(
            ctx.renderer.ordered(sqlkit.column(g.name)),
            ctx.renderer.ordered(sqlkit.column(position)),
        )
        .with_(sqlkit.identifier(cte), as_=inner)
    )
    values = {"one": e.noun.one, "many": e.noun.many, "g": g.phrase, "col": f.phrase}
    variants = top_variants(word, n, descending)
    question = ctx.say(questions("top_per_group", *variants), n=ctx.spell(n), word=word, **values)
    explanation = (
        f"The CTE {cte} numbers the {e.noun.many} of each {g.phrase} by {f.name}"
        f" {'DESC' if descending else 'ASC'} with ROW_NUMBER(); the outer query keeps positions"
        f" up to {n}."
    )
    return Draft(question, query, explanation)


@over_table(dates)
def period_trend(ctx: Context, e: Entity, d: Field) -> Draft | None:
    """Per period counts or totals with a running total (SUM OVER) or the previous period's
    value (LAG)."""
    period, period_expr, period_name = ctx.period(d)
    m = ctx.field(e, e.measures) if ctx.chance(0.4) else None
    per: exp.Expr = sqlkit.count_star() if m is None else exp.Sum(this=sqlkit.column(m.name))
    what = e.noun.many if m is None else f"{m.phrase} of {e.noun.many}"
    amount = output_name(e.noun.one, "count") if m is None else output_name("total", m.name)
    in_order = ctx.renderer.ordered(period_expr.copy())
    kind = ctx.pick(("running", "previous", "change"))
    if kind == "running":
        trend: exp.Expr = sqlkit.window(exp.Sum(this=per.copy()), order_by=in_order)
        trend_name = output_name("running", amount)
        how_sql = f"SUM(...) OVER (ORDER BY the {period})"
    else:
        previous = sqlkit.window(exp.Lag(this=per.copy()), order_by=in_order)
        trend = previous if kind == "previous" else exp.Sub(this=per.copy(), expression=previous)
        trend_name = output_name("previous" if kind == "previous" else "change", amount)
        how_sql = f"LAG(...) OVER (ORDER BY the {period}) reads the previous {period}'s value"
    query = (
        exp.select(
            sqlkit.aliased(period_expr, period_name),
            sqlkit.aliased(per, amount),
            sqlkit.aliased(trend, trend_name),
        )
        .from_(sqlkit.table(e.name))
        .group_by(period_expr.copy())
        .order_by(ctx.renderer.ordered(sqlkit.column(period_name)))
    )
    how = "number of" if m is None else "total"
    question = ctx.say(
        questions("period_trend", kind), period=period, d=d.phrase, how=how, what=what
    )
    explanation = (
        f"It groups {e.name} by the {period} of {d.name}, computes {ctx.renderer.sql(per)} per"
        f" {period}, and {how_sql}."
    )
    return Draft(question, query, explanation)


@over_table(categories)
def share_of_total(ctx: Context, e: Entity, g: Field) -> Draft | None:
    """Each group's share of all rows (or of a measure's total), in percent: SUM(...) OVER ()."""
    m = ctx.field(e, e.measures) if ctx.chance(0.4) else None
    per: exp.Expr = sqlkit.count_star() if m is None else exp.Sum(this=sqlkit.column(m.name))
    share = exp.Div(
        this=exp.Mul(this=exp.Literal.number("100.0"), expression=per.copy()),
        expression=sqlkit.window(exp.Sum(this=per.copy())),
    )
    query = (
        exp.select(
            sqlkit.column(g.name), sqlkit.aliased(share, output_name("percent", "of", "total"))
        )
        .from_(sqlkit.table(e.name))
        .group_by(sqlkit.column(g.name))
    )
    values = {"many": e.noun.many, "g": g.phrase}
    if m is None:
        question = ctx.say(questions("share_of_total", "count"), **values)
    else:
        question = ctx.say(questions("share_of_total", "measure"), m=m.phrase, **values)
    explanation = (
        f"It groups {e.name} by {g.name}; {ctx.renderer.sql(per)} is each group's part and"
        f" SUM({ctx.renderer.sql(per)}) OVER () the total over all groups."
    )
    return Draft(question, query, explanation)


@over_table(categories, measures)
def beside_group_average(ctx: Context, e: Entity, g: Field, m: Field) -> Draft | None:
    """Each row's measure next to (or against) its group's average: AVG OVER (PARTITION BY)."""
    average = sqlkit.window(exp.Avg(this=sqlkit.column(m.name)), [sqlkit.column(g.name)])
    values = {"one": e.noun.one, "many": e.noun.many, "g": g.phrase, "m": m.phrase}
    if ctx.chance(0.5):
        shown: exp.Expr = sqlkit.aliased(average, output_name("avg", m.name, "in", g.name))
        question = ctx.say(questions("beside_group_average", "beside"), **values)
        how = "next to each row"
    else:
        difference = exp.Sub(this=sqlkit.column(m.name), expression=average)
        shown = sqlkit.aliased(difference, output_name(m.name, "vs", g.name, "avg"))
        question = ctx.say(questions("beside_group_average", "difference"), **values)
        how = f"subtracted from each {m.phrase}"
    query = exp.select(*_shown(e, g, m), shown).from_(sqlkit.table(e.name))
    explanation = (
        f"AVG({m.name}) OVER (PARTITION BY {g.name}) is the average of the row's {g.phrase},"
        f" {how}; no GROUP BY, so every {e.noun.one} stays."
    )
    return Draft(question, query, explanation)


@over_link(every_link)
def rank_parents(ctx: Context, link: Link) -> Draft | None:
    """Parents ranked by their number of children: a window over a grouped join."""
    c, p = link.child, link.parent
    count = exp.Count(this=sqlkit.column(link.child_column.name, c.alias))
    count_name = output_name(c.noun.one, "count")
    ranked = sqlkit.window(exp.Rank(), order_by=ctx.renderer.ordered(count.copy(), descending=True))
    query = per_parent(link, count, count_name).select(sqlkit.aliased(ranked, "rank_by_count"))
    question = ctx.say(questions("rank_parents", "default"), **link_words(link))
    explanation = (
        f"A LEFT JOIN from {p.name} to {c.name} counts each {p.noun.one}'s {c.noun.many} (0 when"
        " none) and RANK() OVER (ORDER BY that count DESC) ranks the groups."
    )
    return Draft(question, query, explanation)


@over_link(every_link)
def children_per_parent(ctx: Context, link: Link) -> Draft | None:
    """The average, largest or smallest number of (matching) children per parent: the
    per-parent counts in a CTE, aggregated outside it."""
    c, p = link.child, link.parent
    cond = ctx.condition(c, c.alias, avoid=link.child_column) if ctx.chance(0.5) else None
    on: exp.Expr = link.on() if cond is None else exp.and_(link.on(), cond.expression)
    count = exp.Count(this=sqlkit.column(link.child_column.name, c.alias))
    count_name = output_name(c.noun.one, "count")
    cte = output_name(c.noun.many, "per", p.noun.one)
    statistic = ctx.pick(("AVG", "AVG", "MAX", "MIN"))
    function = {"AVG": exp.Avg, "MAX": exp.Max, "MIN": exp.Min}[statistic]
    query = (
        exp.select(
            sqlkit.aliased(
                function(this=sqlkit.column(count_name)), f"{statistic.lower()}_{count_name}"
            )
        )
        .from_(sqlkit.table(cte))
        .with_(sqlkit.identifier(cte), as_=per_parent(link, count, count_name, on=on))
    )
    values = {"pone": p.noun.one, "pmany": p.noun.many, "cmany": f"{c.noun.many} {phrase_of(cond)}"}
    question = ctx.say(questions("children_per_parent", statistic), **values)
    where = "" if cond is None else f" (only {c.noun.many} {cond.phrase}, a condition of the join)"
    explanation = (
        f"The CTE {cte} counts each {p.noun.one}'s {c.noun.many}{where} with a LEFT JOIN, so"
        f" {p.noun.many} without any count 0; the outer query takes {statistic} of those counts."
    )
    return Draft(question, query, explanation)


@over_link(every_link)
def parents_above_average(ctx: Context, link: Link) -> Draft | None:
    """Parents whose count (or total of a child measure) beats the average parent's: the
    per-parent figures in a CTE, read twice."""
    c, p = link.child, link.parent
    m = ctx.field(c, c.measures) if ctx.chance(0.4) else None
    if m is None:
        value: exp.Expr = exp.Count(this=sqlkit.column(link.child_column.name, c.alias))
        name = output_name(c.noun.one, "count")
    else:
        value = exp.Coalesce(
            this=exp.Sum(this=sqlkit.column(m.name, c.alias)), expressions=[sqlkit.number(0)]
        )
        name = output_name("total", m.name)
    cte = output_name(p.noun.one, "totals")
    average = exp.select(exp.Avg(this=sqlkit.column(name))).from_(sqlkit.table(cte)).subquery()
    query = (
        exp.select(sqlkit.column(p.label.name), sqlkit.column(name))
        .from_(sqlkit.table(cte))
        .where(exp.GT(this=sqlkit.column(name), expression=average))
        .with_(sqlkit.identifier(cte), as_=per_parent(link, value, name))
    )
    if m is None:
        question = ctx.say(questions("parents_above_average", "count"), **link_words(link))
    else:
        question = ctx.say(
            questions("parents_above_average", "measure"), m=m.phrase, **link_words(link)
        )
    explanation = (
        f"The CTE {cte} computes {ctx.renderer.sql(value)} per {p.noun.one} ({p.noun.many}"
        " without any get 0); the outer query keeps those above the average of that figure."
    )
    return Draft(question, query, explanation)


@over_table(categories)
def filtered_then_grouped(ctx: Context, e: Entity, g: Field) -> Draft | None:
    """A filter in a CTE, a count per group outside it."""
    cond = ctx.condition(e, avoid=g)
    if cond is None:
        return None
    cte = output_name("matching", e.noun.many)
    inner = exp.select(sqlkit.column(g.name)).from_(sqlkit.table(e.name)).where(cond.expression)
    count_name = output_name(e.noun.one, "count")
    query = (
        exp.select(sqlkit.column(g.name), sqlkit.aliased(sqlkit.count_star(), count_name))
        .from_(sqlkit.table(cte))
        .group_by(sqlkit.column(g.name))
        .order_by(ctx.renderer.ordered(sqlkit.column(count_name), descending=True))
        .with_(sqlkit.identifier(cte), as_=inner)
    )
    question = ctx.say(
        questions("filtered_then_grouped", "default"),
        many=e.noun.many,
        cond=cond.phrase,
        g=g.phrase,
    )
    explanation = (
        f"The CTE {cte} keeps the {e.noun.many} {cond.phrase}; the outer query counts them per"
        f" {g.name}, largest count first."
    )
    return Draft(question, query, explanation)


BUILDERS: tuple[Builder, ...] = (
    Builder("rank_within_group", frozenset({"window", "order_by"}), rank_within_group, 0.7),
    Builder("top_per_group", frozenset({"window", "cte", "filter"}), top_per_group, 0.7),
    Builder("period_trend", frozenset({"window", "group_by", "date_filter"}), period_trend, 0.6),
    Builder("share_of_total", frozenset({"window", "aggregate", "group_by"}), share_of_total, 0.5),
    Builder("beside_group_average", frozenset({"window", "aggregate"}), beside_group_average, 0.5),
    Builder("rank_parents", frozenset({"window", "join", "aggregate"}), rank_parents, 0.5),
    Builder(
        "children_per_parent", frozenset({"cte", "join", "aggregate"}), children_per_parent, 0.6
    ),
    Builder(
        "parents_above_average", frozenset({"cte", "subquery", "join"}), parents_above_average, 0.6
    ),
    Builder(
        "filtered_then_grouped",
        frozenset({"cte", "group_by", "filter"}),
        filtered_then_grouped,
        0.5,
    ),
)
