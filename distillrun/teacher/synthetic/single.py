"""Examples over one table: counts, filters, aggregates, groups, top-N, distinct values, dates
and subqueries against the same table (above-average rows, the most common value).

Each builder is declared over the table it needs (`context.over_table`: one with columns of the
kinds it asks for), which the context picks with its columns (so seed questions steer them);
it returns None when the table offers nothing else it needs, and writes the question from one
of several phrasings (`questions.yaml`), the SQL as a sqlglot tree and a one- or two-sentence
explanation of how the SQL answers the question.
"""

from __future__ import annotations

from sqlglot import exp

from distillrun.sql.schema import ColumnKind
from distillrun.teacher.synthetic import sqlkit
from distillrun.teacher.synthetic.catalog import (
    Entity,
    Field,
    categories,
    dates,
    measures,
    orderable,
)
from distillrun.teacher.synthetic.context import (
    AGGREGATES,
    Builder,
    Condition,
    Context,
    Draft,
    article,
    filtered,
    over_table,
    phrase_of,
)
from distillrun.teacher.synthetic.naming import (
    output_name,
    plural_phrase,
    superlatives,
    top_variants,
)
from distillrun.teacher.synthetic.phrasings import questions


def _maybe_condition(
    ctx: Context, entity: Entity, probability: float, avoid: Field | None = None
) -> Condition | None:
    return ctx.condition(entity, avoid=avoid) if ctx.chance(probability) else None


def _select(entity: Entity, *columns: exp.Expr) -> exp.Select:
    return exp.select(*columns).from_(sqlkit.table(entity.name))


def _col(f: Field) -> exp.Column:
    return sqlkit.column(f.name)


def _shown(entity: Entity, f: Field) -> list[exp.Expr]:
    """The label, plus `f` when it is a different column: what "which customers ..." shows."""
    return [_col(entity.label)] if f.name == entity.label.name else [_col(entity.label), _col(f)]


@over_table()
def count_rows(ctx: Context, e: Entity) -> Draft | None:
    cond = _maybe_condition(ctx, e, 0.6)
    query = _select(e, sqlkit.count_star())
    if cond is None:
        question = ctx.say(questions("count_rows", "all"), many=e.noun.many)
        return Draft(question, query, f"COUNT(*) counts every row of {e.name}.")
    question = ctx.say(questions("count_rows", "filtered"), many=e.noun.many, cond=cond.phrase)
    explanation = f"COUNT(*) counts the rows of {e.name}.{ctx.where_note(cond, e.noun.many)}"
    return Draft(question, query.where(cond.expression), explanation)


@over_table()
def list_matching(ctx: Context, e: Entity) -> Draft | None:
    cond = ctx.condition(e, avoid=e.label)
    if cond is None:
        return None
    query = _select(e, _col(e.label)).where(cond.expression)
    sort = ctx.chance(0.3)
    if sort:
        query = query.order_by(ctx.renderer.ordered(_col(e.label)))
    question = ctx.say(
        questions("list_matching", "sorted" if sort else "default"),
        many=e.noun.many,
        cond=cond.phrase,
        label=e.label.phrase,
        labels=plural_phrase(e.label.phrase),
    )
    explanation = (
        f"It selects the {e.label.phrase} of each row of {e.name};"
        f"{ctx.where_note(cond, e.noun.many)}"
    )
    return Draft(question, query, explanation)


@over_table(orderable)
def aggregate_value(ctx: Context, e: Entity, f: Field) -> Draft | None:
    cond = _maybe_condition(ctx, e, 0.35, avoid=f)
    values = {"col": f.phrase, "many": e.noun.many, "cond": phrase_of(cond)}
    if not f.is_date and ctx.chance(0.15):
        query = _select(
            e,
            sqlkit.aliased(exp.Min(this=_col(f)), output_name("min", f.name)),
            sqlkit.aliased(exp.Max(this=_col(f)), output_name("max", f.name)),
        )
        question = ctx.say(questions("aggregate_value", "range"), **values)
        fn_sql = f"MIN({f.name}) and MAX({f.name})"
    else:
        name = ctx.pick(("MIN", "MAX") if f.is_date else tuple(AGGREGATES))
        function, word, prefix = AGGREGATES[name]
        query = _select(e, sqlkit.aliased(function(this=_col(f)), output_name(prefix, f.name)))
        if f.is_date:
            word = "latest" if name == "MAX" else "earliest"
        variant = name if name in ("SUM", "AVG") else "extreme"
        question = ctx.say(questions("aggregate_value", variant), word=word, **values)
        fn_sql = f"{name}({f.name})"
    explanation = (
        f"It computes {fn_sql} over the rows of {e.name}.{ctx.where_note(cond, e.noun.many)}"
    )
    return Draft(question, filtered(query, cond), explanation)


@over_table(categories)
def group_count(ctx: Context, e: Entity, g: Field) -> Draft | None:
    cond = _maybe_condition(ctx, e, 0.25, avoid=g)
    count_name = output_name(e.noun.one, "count")
    query = _select(e, _col(g), sqlkit.aliased(sqlkit.count_star(), count_name)).group_by(_col(g))
    query = filtered(query, cond)
    values = {"many": e.noun.many, "g": g.phrase, "cond": phrase_of(cond)}
    if ctx.chance(0.4):
        query = query.order_by(ctx.renderer.ordered(sqlkit.column(count_name), descending=True))
        question = ctx.say(questions("group_count", "ranked"), **values)
        order = f" ORDER BY {count_name} DESC puts the largest groups first."
    else:
        question = ctx.say(questions("group_count", "default"), **values)
        order = ""
    explanation = (
        f"GROUP BY {g.name} makes one group per {g.phrase} and COUNT(*) counts the {e.noun.many}"
        f" in each.{ctx.where_note(cond, e.noun.many)}{order}"
    )
    return Draft(question, query, explanation)


@over_table(categories, measures)
def group_measure(ctx: Context, e: Entity, g: Field, m: Field) -> Draft | None:
    name = ctx.pick(tuple(AGGREGATES))
    function, word, prefix = AGGREGATES[name]
    out = output_name(prefix, m.name)
    query = _select(e, _col(g), sqlkit.aliased(function(this=_col(m)), out)).group_by(_col(g))
    cond = _maybe_condition(ctx, e, 0.25, avoid=g)
    query = filtered(query, cond)
    many = f"{e.noun.many} {phrase_of(cond)}"
    values = {"many": many, "g": g.phrase, "gs": plural_phrase(g.phrase), "m": m.phrase}
    explanation = f"It groups the {e.noun.many} by {g.name} and computes {name}({m.name}) per group"
    if ctx.chance(0.35):
        n = ctx.top_count() if ctx.chance(0.5) else 1
        query = query.order_by(ctx.renderer.ordered(sqlkit.column(out), descending=True)).limit(n)
        templates = questions("group_measure", "top_one" if n == 1 else "top_n")
        ranked = {"MIN": "minimum", "MAX": "maximum"}.get(name, word)
        question = ctx.say(templates, n=ctx.spell(n), word=ranked, **values)
        explanation += f", then keeps the top {n} by that value (ORDER BY {out} DESC LIMIT {n})."
    else:
        question = ctx.say(questions("group_measure", "default"), word=word, **values)
        explanation += "."
    explanation += ctx.where_note(cond, e.noun.many)
    return Draft(question, query, explanation)


@over_table(categories)
def group_having(ctx: Context, e: Entity, g: Field) -> Draft | None:
    query = _select(e, _col(g)).group_by(_col(g))
    gs = plural_phrase(g.phrase)
    m = ctx.field(e, e.measures) if ctx.chance(0.4) else None
    # Whether the aggregate is shown beside each group is said in the question: a student
    # cannot guess a column list that the same words give with or without it.
    shown = ctx.chance(0.4)
    if m is None:
        having, variant, values = ctx.count_having(e.noun)
        question = ctx.say(
            questions("group_having", f"{variant}_shown" if shown else variant),
            gs=gs,
            g=g.phrase,
            **values,
        )
    else:
        use_sum = ctx.chance(0.5)
        value = ctx.threshold(m, above=True) * (5 if use_sum else 1)
        function = exp.Sum if use_sum else exp.Avg
        having = exp.GT(this=function(this=_col(m)), expression=sqlkit.number(value))
        question = ctx.say(
            questions("group_having", "measure_shown" if shown else "measure"),
            gs=gs,
            a_word=article("total" if use_sum else "average"),
            m=m.phrase,
            v=str(value),
            many=e.noun.many,
        )
    if shown:
        query = query.select(having.this.copy())
    having_sql = ctx.renderer.sql(having)
    explanation = (
        f"It groups the {e.noun.many} by {g.name} and HAVING {having_sql} keeps only the groups"
        " that pass the test."
    )
    return Draft(question, query.having(having), explanation)


@over_table(orderable)
def top_n(ctx: Context, e: Entity, f: Field) -> Draft | None:
    descending = ctx.chance(0.7)
    high, low = superlatives(f.name, f.role, f.is_date)
    word = high if descending else low
    n = ctx.top_count() if ctx.chance(0.8) else 1
    # Condition phrases follow a plural noun, so "which one ..." questions go without.
    cond = _maybe_condition(ctx, e, 0.25, avoid=f) if n > 1 else None
    query = _select(e, *_shown(e, f)).order_by(ctx.renderer.ordered(_col(f), descending)).limit(n)
    query = filtered(query, cond)
    question = ctx.say(
        questions("top_n", *top_variants(word, n, descending)),
        n=ctx.spell(n),
        word=word,
        col=f.phrase,
        cond=phrase_of(cond),
        one=e.noun.one,
        many=e.noun.many,
    )
    direction, end = ("DESC", "highest") if descending else ("ASC", "lowest")
    explanation = (
        f"ORDER BY {f.name} {direction} puts the {e.noun.many} with the {end} {f.phrase} first"
        f" and LIMIT {n} keeps {'that one' if n == 1 else f'the first {n}'}."
        f"{ctx.where_note(cond, e.noun.many)}"
    )
    return Draft(question, query, explanation)


@over_table(categories)
def top_group(ctx: Context, e: Entity, g: Field) -> Draft | None:
    most = ctx.chance(0.75)
    query = _select(e, _col(g)).group_by(_col(g))
    cond = _maybe_condition(ctx, e, 0.25, avoid=g)
    query = filtered(query, cond)
    counted = ctx.chance(0.5)
    if counted:
        query = query.select(sqlkit.aliased(sqlkit.count_star(), output_name(e.noun.one, "count")))
    query = query.order_by(ctx.renderer.ordered(sqlkit.count_star(), descending=most)).limit(1)
    variant = "most" if most else "fewest"
    question = ctx.say(
        questions("top_group", f"{variant}_counted" if counted else variant),
        g=g.phrase,
        many=f"{e.noun.many} {phrase_of(cond)}",
    )
    explanation = (
        f"It counts the {e.noun.many} per {g.name} (GROUP BY), sorts the groups by COUNT(*)"
        f" {'DESC' if most else 'ASC'} and LIMIT 1 keeps the {'largest' if most else 'smallest'}."
        f"{ctx.where_note(cond, e.noun.many)}"
    )
    return Draft(question, query, explanation)


@over_table(categories)
def distinct_values(ctx: Context, e: Entity, g: Field) -> Draft | None:
    cond = _maybe_condition(ctx, e, 0.4, avoid=g)
    query = filtered(_select(e, _col(g)).distinct(), cond)
    sort = ctx.chance(0.5)
    if sort:
        query = query.order_by(ctx.renderer.ordered(_col(g)))
    question = ctx.say(
        questions("distinct_values", "sorted" if sort else "default"), **_group_words(e, g, cond)
    )
    explanation = (
        f"SELECT DISTINCT {g.name} returns each {g.phrase} of {e.name} once."
        f"{ctx.where_note(cond, e.noun.many)}"
    )
    return Draft(question, query, explanation)


@over_table(categories)
def count_distinct(ctx: Context, e: Entity, g: Field) -> Draft | None:
    cond = _maybe_condition(ctx, e, 0.4, avoid=g)
    query = filtered(_select(e, sqlkit.count_distinct(_col(g))), cond)
    question = ctx.say(questions("count_distinct", "default"), **_group_words(e, g, cond))
    explanation = (
        f"COUNT(DISTINCT {g.name}) counts each {g.phrase} once, however many {e.noun.many} share"
        f" it.{ctx.where_note(cond, e.noun.many)}"
    )
    return Draft(question, query, explanation)


def _group_words(e: Entity, g: Field, cond: Condition | None) -> dict[str, str]:
    """What questions about the values of `g` among (matching) rows of `e` say."""
    return {
        "g": g.phrase,
        "gs": plural_phrase(g.phrase),
        "many": e.noun.many,
        "cond": phrase_of(cond),
    }


@over_table(measures)
def above_average(ctx: Context, e: Entity, f: Field) -> Draft | None:
    above = ctx.chance(0.7)
    average = _select(e, exp.Avg(this=_col(f))).subquery()
    op: type[exp.Binary] = exp.GT if above else exp.LT
    query = _select(e, *_shown(e, f)).where(op(this=_col(f), expression=average))
    side, more = ("above", "higher") if above else ("below", "lower")
    question = ctx.say(
        questions("above_average", "default"),
        many=e.noun.many,
        a_col=article(f.phrase),
        col=f.phrase,
        side=side,
        more=more,
    )
    explanation = (
        f"The subquery computes AVG({f.name}) over all {e.noun.many}; the outer WHERE keeps the"
        f" rows whose {f.phrase} is {side} it."
    )
    return Draft(question, query, explanation)


@over_table(orderable)
def extreme_rows(ctx: Context, e: Entity, f: Field) -> Draft | None:
    highest = ctx.chance(0.6)
    function: type[exp.AggFunc] = exp.Max if highest else exp.Min
    word = superlatives(f.name, f.role, f.is_date)[0 if highest else 1]
    extreme = _select(e, function(this=_col(f))).subquery()
    query = _select(e, *_shown(e, f)).where(_col(f).eq(extreme))
    question = ctx.say(
        questions("extreme_rows", "default"),
        many=e.noun.many,
        one=e.noun.one,
        word=word,
        col=f.phrase,
        bound="maximum" if highest else "minimum",
    )
    name = "MAX" if highest else "MIN"
    explanation = (
        f"The subquery finds {name}({f.name}); the outer query returns every {e.noun.one} with"
        " exactly that value, so ties are all listed."
    )
    return Draft(question, query, explanation)


@over_table(categories)
def most_common_value(ctx: Context, e: Entity, g: Field) -> Draft | None:
    """A text-equality filter that needs no literal: the value is the table's most common one."""
    mode = (
        _select(e, _col(g))
        .group_by(_col(g))
        .order_by(ctx.renderer.ordered(sqlkit.count_star(), descending=True))
        .limit(1)
    )
    query = _select(e, _col(e.label)).where(_col(g).eq(mode.subquery()))
    question = ctx.say(
        questions("most_common_value", "default"),
        many=e.noun.many,
        g=g.phrase,
        labels=plural_phrase(e.label.phrase),
    )
    explanation = (
        f"The subquery groups {e.name} by {g.name} and keeps the {g.phrase} with the highest"
        f" COUNT(*); the outer WHERE returns the {e.noun.many} that have it."
    )
    return Draft(question, query, explanation)


def lookup_by_key(ctx: Context) -> Draft | None:
    e = ctx.entity(
        [
            e
            for e in ctx.catalog.entities
            if e.key is not None and e.key.column.kind == ColumnKind.INTEGER
        ]
    )
    if e is None or e.key is None:
        return None
    others = [f for f in (e.label, *e.measures, *e.categories, *e.dates) if f.name != e.key.name]
    f = ctx.field(e, others)
    if f is None:
        return None
    n = ctx.rng.randint(1, 20)
    query = _select(e, _col(f)).where(_col(e.key).eq(sqlkit.number(n)))
    question = ctx.say(
        questions("lookup_by_key", "default"),
        col=f.phrase,
        one=e.noun.one,
        key=e.key.phrase,
        n=str(n),
    )
    explanation = (
        f"WHERE {e.key.name} = {n} picks the one {e.noun.one} and the query returns its {f.phrase}."
    )
    return Draft(question, query, explanation)


@over_table(dates)
def per_period(ctx: Context, e: Entity, d: Field) -> Draft | None:
    period, period_expr, period_name = ctx.period(d)
    m = ctx.field(e, e.measures) if ctx.chance(0.35) else None
    values = {"period": period, "d": d.phrase, "many": e.noun.many}
    if m is None:
        value: exp.Expr = sqlkit.aliased(sqlkit.count_star(), output_name(e.noun.one, "count"))
        how = "COUNT(*) counts the rows"
        question = ctx.say(questions("per_period", "count"), **values)
    else:
        value = sqlkit.aliased(exp.Sum(this=_col(m)), output_name("total", m.name))
        how = f"SUM({m.name}) adds up {m.phrase}"
        question = ctx.say(questions("per_period", "total"), m=m.phrase, **values)
    query = (
        _select(e, sqlkit.aliased(period_expr, period_name), value)
        .group_by(period_expr.copy())
        .order_by(ctx.renderer.ordered(sqlkit.column(period_name)))
    )
    explanation = (
        f"It formats {d.name} as its {period} ({ctx.renderer.sql(period_expr)}), groups by that"
        f" and {how} in each {period}, in {period} order."
    )
    return Draft(question, query, explanation)


BUILDERS: tuple[Builder, ...] = (
    Builder("count_rows", frozenset({"aggregate", "filter"}), count_rows),
    Builder("list_matching", frozenset({"filter"}), list_matching),
    Builder("aggregate_value", frozenset({"aggregate"}), aggregate_value),
    Builder("group_count", frozenset({"aggregate", "group_by"}), group_count),
    Builder("group_measure", frozenset({"aggregate", "group_by", "order_by"}), group_measure),
    Builder("group_having", frozenset({"group_by", "having"}), group_having),
    Builder("top_n", frozenset({"order_by", "limit"}), top_n, weight=1.3),
    Builder("top_group", frozenset({"group_by", "order_by", "limit"}), top_group),
    Builder("distinct_values", frozenset({"distinct"}), distinct_values, weight=0.7),
    Builder(
        "count_distinct", frozenset({"count_distinct", "distinct"}), count_distinct, weight=0.7
    ),
    Builder("above_average", frozenset({"subquery", "filter"}), above_average),
    Builder("extreme_rows", frozenset({"subquery", "order_by"}), extreme_rows, weight=0.6),
    Builder("most_common_value", frozenset({"subquery", "filter"}), most_common_value, weight=0.6),
    Builder("lookup_by_key", frozenset({"filter"}), lookup_by_key, weight=0.5),
    Builder("per_period", frozenset({"date_filter", "group_by"}), per_period, weight=0.7),
)
