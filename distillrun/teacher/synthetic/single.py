"""Examples over one table: counts, filters, aggregates, groups, top-N, distinct values, dates
and subqueries against the same table (above-average rows, the most common value).

Each builder picks its table and columns through the context (so seed questions steer them),
returns None when the table offers nothing suitable, and writes the question from one of
several phrasings, the SQL as a sqlglot tree and a one- or two-sentence explanation of how the
SQL answers the question.
"""

from __future__ import annotations

from sqlglot import exp

from distillrun.sql.schema import ColumnKind
from distillrun.teacher.synthetic import sqlkit
from distillrun.teacher.synthetic.catalog import Entity, Field
from distillrun.teacher.synthetic.context import (
    Builder,
    Condition,
    Context,
    Draft,
    article,
    phrase_of,
)
from distillrun.teacher.synthetic.naming import (
    GENERIC_SUPERLATIVES,
    output_name,
    plural_phrase,
    superlatives,
)

_AGGREGATES: dict[str, tuple[type[exp.AggFunc], str, str]] = {
    # name: (function, words in a question, output name prefix)
    "SUM": (exp.Sum, "total", "total"),
    "AVG": (exp.Avg, "average", "avg"),
    "MIN": (exp.Min, "lowest", "min"),
    "MAX": (exp.Max, "highest", "max"),
}


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


def count_rows(ctx: Context) -> Draft | None:
    e = ctx.entity(ctx.catalog.entities)
    if e is None:
        return None
    cond = _maybe_condition(ctx, e, 0.6)
    query = _select(e, sqlkit.count_star())
    if cond is None:
        question = ctx.say(
            (
                "How many {many} are there?",
                "What is the total number of {many}?",
                "Count the {many}.",
                "How many {many} does the database hold?",
            ),
            many=e.noun.many,
        )
        return Draft(question, query, f"COUNT(*) counts every row of {e.name}.")
    question = ctx.say(
        (
            "How many {many} are there {cond}?",
            "Count the {many} {cond}.",
            "What is the number of {many} {cond}?",
            "How many {many} {cond} exist?",
        ),
        many=e.noun.many,
        cond=cond.phrase,
    )
    explanation = f"COUNT(*) counts the rows of {e.name}.{ctx.where_note(cond, e.noun.many)}"
    return Draft(question, query.where(cond.expression), explanation)


def list_matching(ctx: Context) -> Draft | None:
    e = ctx.entity(ctx.catalog.entities)
    if e is None:
        return None
    cond = ctx.condition(e, avoid=e.label)
    if cond is None:
        return None
    query = _select(e, _col(e.label)).where(cond.expression)
    if ctx.chance(0.3):
        query = query.order_by(ctx.renderer.ordered(_col(e.label)))
    question = ctx.say(
        (
            "List the {many} {cond}.",
            "Show all {many} {cond}.",
            "Find the {many} {cond}.",
            "What are the {labels} of the {many} {cond}?",
        ),
        many=e.noun.many,
        cond=cond.phrase,
        labels=plural_phrase(e.label.phrase),
    )
    explanation = (
        f"It selects the {e.label.phrase} of each row of {e.name};"
        f"{ctx.where_note(cond, e.noun.many)}"
    )
    return Draft(question, query, explanation)


def aggregate_value(ctx: Context) -> Draft | None:
    e = ctx.entity([e for e in ctx.catalog.entities if e.measures or e.dates])
    if e is None:
        return None
    f = ctx.field(e, (*e.measures, *e.dates))
    if f is None:
        return None
    cond = _maybe_condition(ctx, e, 0.35, avoid=f)
    values = {"col": f.phrase, "many": e.noun.many, "cond": phrase_of(cond)}
    if not f.is_date and ctx.chance(0.15):
        query = _select(
            e,
            sqlkit.aliased(exp.Min(this=_col(f)), output_name("min", f.name)),
            sqlkit.aliased(exp.Max(this=_col(f)), output_name("max", f.name)),
        )
        question = ctx.say(
            (
                "What are the lowest and highest {col} of {many} {cond}?",
                "Give the minimum and maximum {col} among {many} {cond}.",
                "What range does the {col} of {many} {cond} span?",
            ),
            **values,
        )
        fn_sql = f"MIN({f.name}) and MAX({f.name})"
    else:
        name = ctx.pick(("MIN", "MAX") if f.is_date else tuple(_AGGREGATES))
        function, word, prefix = _AGGREGATES[name]
        query = _select(e, sqlkit.aliased(function(this=_col(f)), output_name(prefix, f.name)))
        if f.is_date:
            word = "latest" if name == "MAX" else "earliest"
        question = ctx.say(
            {
                "SUM": (
                    "What is the total {col} of {many} {cond}?",
                    "Add up the {col} of all {many} {cond}.",
                    "What is the combined {col} of the {many} {cond}?",
                ),
                "AVG": (
                    "What is the average {col} of {many} {cond}?",
                    "On average, what {col} do {many} {cond} have?",
                    "What is the mean {col} across {many} {cond}?",
                ),
            }.get(
                name,
                (
                    "What is the {word} {col} among {many} {cond}?",
                    "Find the {word} {col} of any of the {many} {cond}.",
                    "Among the {many} {cond}, what is the {word} {col}?",
                ),
            ),
            word=word,
            **values,
        )
        fn_sql = f"{name}({f.name})"
    explanation = (
        f"It computes {fn_sql} over the rows of {e.name}.{ctx.where_note(cond, e.noun.many)}"
    )
    if cond is not None:
        query = query.where(cond.expression)
    return Draft(question, query, explanation)


def group_count(ctx: Context) -> Draft | None:
    e = ctx.entity([e for e in ctx.catalog.entities if e.categories])
    if e is None:
        return None
    g = ctx.field(e, e.categories)
    if g is None:
        return None
    cond = _maybe_condition(ctx, e, 0.25, avoid=g)
    count_name = output_name(e.noun.one, "count")
    query = _select(e, _col(g), sqlkit.aliased(sqlkit.count_star(), count_name)).group_by(_col(g))
    if cond is not None:
        query = query.where(cond.expression)
    values = {"many": e.noun.many, "g": g.phrase, "cond": phrase_of(cond)}
    if ctx.chance(0.4):
        query = query.order_by(ctx.renderer.ordered(sqlkit.column(count_name), descending=True))
        question = ctx.say(
            (
                "How many {many} {cond} are there per {g}, from most to fewest?",
                "Count the {many} {cond} in each {g} and list the biggest groups first.",
                "Rank each {g} by how many {many} {cond} it has.",
            ),
            **values,
        )
        order = f" ORDER BY {count_name} DESC puts the largest groups first."
    else:
        question = ctx.say(
            (
                "How many {many} {cond} are there per {g}?",
                "How many {many} {cond} are there in each {g}?",
                "Count the {many} {cond} for each {g}.",
                "Give the number of {many} {cond} by {g}.",
                "What is the breakdown of {many} {cond} by {g}?",
            ),
            **values,
        )
        order = ""
    explanation = (
        f"GROUP BY {g.name} makes one group per {g.phrase} and COUNT(*) counts the {e.noun.many}"
        f" in each.{ctx.where_note(cond, e.noun.many)}{order}"
    )
    return Draft(question, query, explanation)


def group_measure(ctx: Context) -> Draft | None:
    e = ctx.entity([e for e in ctx.catalog.entities if e.categories and e.measures])
    if e is None:
        return None
    g, m = ctx.field(e, e.categories), ctx.field(e, e.measures)
    if g is None or m is None:
        return None
    name = ctx.pick(tuple(_AGGREGATES))
    function, word, prefix = _AGGREGATES[name]
    out = output_name(prefix, m.name)
    query = _select(e, _col(g), sqlkit.aliased(function(this=_col(m)), out)).group_by(_col(g))
    cond = _maybe_condition(ctx, e, 0.25, avoid=g)
    if cond is not None:
        query = query.where(cond.expression)
    many = f"{e.noun.many} {phrase_of(cond)}"
    values = {"many": many, "g": g.phrase, "gs": plural_phrase(g.phrase), "m": m.phrase}
    explanation = f"It groups the {e.noun.many} by {g.name} and computes {name}({m.name}) per group"
    if ctx.chance(0.35):
        n = ctx.top_count() if ctx.chance(0.5) else 1
        query = query.order_by(ctx.renderer.ordered(sqlkit.column(out), descending=True)).limit(n)
        templates = (
            ("Which {g} has the highest {word} {m} of {many}?",)
            if n == 1
            else (
                "Which {n} {gs} have the highest {word} {m} of {many}?",
                "List the top {n} {gs} by {word} {m} of {many}.",
            )
        )
        ranked = {"MIN": "minimum", "MAX": "maximum"}.get(name, word)
        question = ctx.say(templates, n=ctx.spell(n), word=ranked, **values)
        explanation += f", then keeps the top {n} by that value (ORDER BY {out} DESC LIMIT {n})."
    else:
        question = ctx.say(
            (
                "What is the {word} {m} of {many} per {g}?",
                "For each {g}, what is the {word} {m} of the {many}?",
                "Show the {word} {m} of {many} by {g}.",
            ),
            word=word,
            **values,
        )
        explanation += "."
    explanation += ctx.where_note(cond, e.noun.many)
    return Draft(question, query, explanation)


def group_having(ctx: Context) -> Draft | None:
    e = ctx.entity([e for e in ctx.catalog.entities if e.categories])
    if e is None:
        return None
    g = ctx.field(e, e.categories)
    if g is None:
        return None
    query = _select(e, _col(g)).group_by(_col(g))
    gs = plural_phrase(g.phrase)
    m = ctx.field(e, e.measures) if ctx.chance(0.4) else None
    if m is None:
        k = ctx.having_count()
        at_least = ctx.chance(0.3)
        op: type[exp.Binary] = exp.GTE if at_least else exp.GT
        noun = e.noun.one if k == 1 and not at_least else e.noun.many
        having = op(this=sqlkit.count_star(), expression=sqlkit.number(k))
        question = ctx.say(
            ("Which {gs} have at least {k} {noun}?", "List the {gs} with {k} or more {noun}.")
            if at_least
            else (
                "Which {gs} have more than {k} {noun}?",
                "List the {gs} with over {k} {noun}.",
                "Find every {g} that has more than {k} {noun}.",
            ),
            gs=gs,
            g=g.phrase,
            k=ctx.spell(k),
            noun=noun,
        )
    else:
        use_sum = ctx.chance(0.5)
        value = ctx.threshold(m, above=True) * (5 if use_sum else 1)
        function = exp.Sum if use_sum else exp.Avg
        having = exp.GT(this=function(this=_col(m)), expression=sqlkit.number(value))
        question = ctx.say(
            (
                "Which {gs} have {a_word} {m} above {v}?",
                "List the {gs} whose {many} have {a_word} {m} over {v}.",
            ),
            gs=gs,
            a_word=article("total" if use_sum else "average"),
            m=m.phrase,
            v=str(value),
            many=e.noun.many,
        )
    if ctx.chance(0.4):
        query = query.select(having.this.copy())
    having_sql = ctx.renderer.sql(having)
    explanation = (
        f"It groups the {e.noun.many} by {g.name} and HAVING {having_sql} keeps only the groups"
        " that pass the test."
    )
    return Draft(question, query.having(having), explanation)


def top_n(ctx: Context) -> Draft | None:
    e = ctx.entity([e for e in ctx.catalog.entities if e.measures or e.dates])
    if e is None:
        return None
    f = ctx.field(e, (*e.measures, *e.dates))
    if f is None:
        return None
    descending = ctx.chance(0.7)
    high, low = superlatives(f.name, f.role, f.is_date)
    word = high if descending else low
    n = ctx.top_count() if ctx.chance(0.8) else 1
    # Condition phrases follow a plural noun, so "which one ..." questions go without.
    cond = _maybe_condition(ctx, e, 0.25, avoid=f) if n > 1 else None
    query = _select(e, *_shown(e, f)).order_by(ctx.renderer.ordered(_col(f), descending)).limit(n)
    if cond is not None:
        query = query.where(cond.expression)
    # "most expensive" and "most recent" describe the rows; "highest" needs the column.
    if word not in GENERIC_SUPERLATIVES:
        templates: tuple[str, ...] = (
            ("Which {one} is the {word}?", "What is the {word} {one}?")
            if n == 1
            else (
                "What are the {n} {word} {many} {cond}?",
                "List the {n} {word} {many} {cond}.",
                "Which {n} {many} {cond} are the {word}?",
            )
        )
    elif n == 1:
        templates = ("Which {one} has the {word} {col}?", "What {one} has the {word} {col}?")
    else:
        templates = (
            "Which {n} {many} {cond} have the {word} {col}?",
            "Show the {n} {many} {cond} with the {word} {col}.",
        )
    if descending and n > 1:
        templates += ("List the top {n} {many} {cond} by {col}.",)
    question = ctx.say(
        templates,
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


def top_group(ctx: Context) -> Draft | None:
    e = ctx.entity([e for e in ctx.catalog.entities if e.categories])
    if e is None:
        return None
    g = ctx.field(e, e.categories)
    if g is None:
        return None
    most = ctx.chance(0.75)
    query = _select(e, _col(g)).group_by(_col(g))
    cond = _maybe_condition(ctx, e, 0.25, avoid=g)
    if cond is not None:
        query = query.where(cond.expression)
    if ctx.chance(0.5):
        query = query.select(sqlkit.aliased(sqlkit.count_star(), output_name(e.noun.one, "count")))
    query = query.order_by(ctx.renderer.ordered(sqlkit.count_star(), descending=most)).limit(1)
    question = ctx.say(
        (
            "Which {g} has the most {many}?",
            "What is the most common {g} among {many}?",
            "Which {g} appears most often among the {many}?",
        )
        if most
        else ("Which {g} has the fewest {many}?", "What is the least common {g} among {many}?"),
        g=g.phrase,
        many=f"{e.noun.many} {phrase_of(cond)}",
    )
    explanation = (
        f"It counts the {e.noun.many} per {g.name} (GROUP BY), sorts the groups by COUNT(*)"
        f" {'DESC' if most else 'ASC'} and LIMIT 1 keeps the {'largest' if most else 'smallest'}."
        f"{ctx.where_note(cond, e.noun.many)}"
    )
    return Draft(question, query, explanation)


def distinct_values(ctx: Context) -> Draft | None:
    e = ctx.entity([e for e in ctx.catalog.entities if e.categories])
    if e is None:
        return None
    g = ctx.field(e, e.categories)
    if g is None:
        return None
    cond = _maybe_condition(ctx, e, 0.4, avoid=g)
    query = _select(e, _col(g)).distinct()
    if cond is not None:
        query = query.where(cond.expression)
    if ctx.chance(0.5):
        query = query.order_by(ctx.renderer.ordered(_col(g)))
    question = ctx.say(
        (
            "What are the different {gs} of {many} {cond}?",
            "List the distinct {gs} of the {many} {cond}.",
            "Which {gs} occur among the {many} {cond}?",
            "Show each {g} that the {many} {cond} have, once.",
        ),
        g=g.phrase,
        gs=plural_phrase(g.phrase),
        many=e.noun.many,
        cond=phrase_of(cond),
    )
    explanation = (
        f"SELECT DISTINCT {g.name} returns each {g.phrase} of {e.name} once."
        f"{ctx.where_note(cond, e.noun.many)}"
    )
    return Draft(question, query, explanation)


def count_distinct(ctx: Context) -> Draft | None:
    e = ctx.entity([e for e in ctx.catalog.entities if e.categories])
    if e is None:
        return None
    g = ctx.field(e, e.categories)
    if g is None:
        return None
    cond = _maybe_condition(ctx, e, 0.4, avoid=g)
    query = _select(e, sqlkit.count_distinct(_col(g)))
    if cond is not None:
        query = query.where(cond.expression)
    question = ctx.say(
        (
            "How many different {gs} do the {many} {cond} have?",
            "How many distinct {gs} are there among {many} {cond}?",
            "Count the distinct {gs} of {many} {cond}.",
            "How many unique {gs} appear among the {many} {cond}?",
        ),
        gs=plural_phrase(g.phrase),
        many=e.noun.many,
        cond=phrase_of(cond),
    )
    explanation = (
        f"COUNT(DISTINCT {g.name}) counts each {g.phrase} once, however many {e.noun.many} share"
        f" it.{ctx.where_note(cond, e.noun.many)}"
    )
    return Draft(question, query, explanation)


def above_average(ctx: Context) -> Draft | None:
    e = ctx.entity([e for e in ctx.catalog.entities if e.measures])
    if e is None:
        return None
    f = ctx.field(e, e.measures)
    if f is None:
        return None
    above = ctx.chance(0.7)
    average = _select(e, exp.Avg(this=_col(f))).subquery()
    op: type[exp.Binary] = exp.GT if above else exp.LT
    query = _select(e, *_shown(e, f)).where(op(this=_col(f), expression=average))
    side, more = ("above", "higher") if above else ("below", "lower")
    question = ctx.say(
        (
            "Which {many} have {a_col} {side} the average?",
            "List the {many} whose {col} is {more} than average.",
            "Find the {many} with {a_col} {side} the average {col} of all {many}.",
        ),
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


def extreme_rows(ctx: Context) -> Draft | None:
    e = ctx.entity([e for e in ctx.catalog.entities if e.measures or e.dates])
    if e is None:
        return None
    f = ctx.field(e, (*e.measures, *e.dates))
    if f is None:
        return None
    highest = ctx.chance(0.6)
    function: type[exp.AggFunc] = exp.Max if highest else exp.Min
    word = superlatives(f.name, f.role, f.is_date)[0 if highest else 1]
    extreme = _select(e, function(this=_col(f))).subquery()
    query = _select(e, *_shown(e, f)).where(_col(f).eq(extreme))
    question = ctx.say(
        (
            "Which {many} share the {word} {col}, ties included?",
            "List every {one} whose {col} equals the {bound} {col}.",
            "Which {many} have the {word} {col} of all?",
        ),
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


def most_common_value(ctx: Context) -> Draft | None:
    """A text-equality filter that needs no literal: the value is the table's most common one."""
    e = ctx.entity([e for e in ctx.catalog.entities if e.categories])
    if e is None:
        return None
    g = ctx.field(e, e.categories)
    if g is None:
        return None
    mode = (
        _select(e, _col(g))
        .group_by(_col(g))
        .order_by(ctx.renderer.ordered(sqlkit.count_star(), descending=True))
        .limit(1)
    )
    query = _select(e, _col(e.label)).where(_col(g).eq(mode.subquery()))
    question = ctx.say(
        (
            "Which {many} have the most common {g}?",
            "List the {many} whose {g} is the most frequent one.",
            "Show the {labels} of {many} with the most common {g}.",
        ),
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
        (
            "What is the {col} of the {one} with {key} {n}?",
            "Show the {col} of {one} {n}.",
            "What {col} does {one} number {n} have?",
        ),
        col=f.phrase,
        one=e.noun.one,
        key=e.key.phrase,
        n=str(n),
    )
    explanation = (
        f"WHERE {e.key.name} = {n} picks the one {e.noun.one} and the query returns its {f.phrase}."
    )
    return Draft(question, query, explanation)


def per_period(ctx: Context) -> Draft | None:
    e = ctx.entity([e for e in ctx.catalog.entities if e.dates])
    if e is None:
        return None
    d = ctx.field(e, e.dates)
    if d is None:
        return None
    period, period_expr, period_name = ctx.period(d)
    m = ctx.field(e, e.measures) if ctx.chance(0.35) else None
    values = {"period": period, "d": d.phrase, "many": e.noun.many}
    if m is None:
        value: exp.Expr = sqlkit.aliased(sqlkit.count_star(), output_name(e.noun.one, "count"))
        how = "COUNT(*) counts the rows"
        question = ctx.say(
            (
                "How many {many} are there per {period} of {d}?",
                "Count the {many} for each {period} of {d}.",
                "For each {period} of {d}, how many {many} are there?",
            ),
            **values,
        )
    else:
        value = sqlkit.aliased(exp.Sum(this=_col(m)), output_name("total", m.name))
        how = f"SUM({m.name}) adds up {m.phrase}"
        question = ctx.say(
            (
                "What is the total {m} of {many} per {period} of {d}?",
                "For each {period} of {d}, what is the total {m} of the {many}?",
            ),
            m=m.phrase,
            **values,
        )
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
