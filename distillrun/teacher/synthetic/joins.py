"""Examples across tables, always along foreign keys: two-table joins (lists, counts per parent,
HAVING on children, grouping by a parent's column, anti-joins), three-table paths (chains such
as order_items → orders → customers and bridges such as orders ← order_items → products), IN
subqueries, and revenue (a quantity in one table times a price in the table it references).

Join queries use short table aliases (`oi`, `o`, `c`); counts of a table reached through a
one-to-many step use COUNT(DISTINCT key) so rows are not double-counted.
"""

from __future__ import annotations

from sqlglot import exp

from distillrun.teacher.synthetic import sqlkit
from distillrun.teacher.synthetic.catalog import (
    Entity,
    Field,
    Link,
    Path,
    every_link,
    links_to_parents_with_categories,
    single_column_links,
)
from distillrun.teacher.synthetic.context import (
    AGGREGATES,
    SUMS,
    Builder,
    Condition,
    Context,
    Draft,
    filtered,
    link_words,
    over_link,
    phrase_of,
)
from distillrun.teacher.synthetic.naming import Role, output_name, plural_phrase
from distillrun.teacher.synthetic.phrasings import questions


def _col(entity: Entity, f: Field) -> exp.Column:
    return sqlkit.column(f.name, entity.alias)


def _from(entity: Entity) -> exp.Table:
    return sqlkit.table(entity.name, entity.alias)


def _join(query: exp.Select, link: Link, target: Entity, kind: str | None = None) -> exp.Select:
    return query.join(_from(target), on=link.on(), join_type=kind)


def _parent_keys(link: Link) -> list[exp.Expr]:
    """What GROUP BY needs to show a parent's label: the referenced columns and the label."""
    p = link.parent
    names = dict.fromkeys([*(parent.name for _, parent in link.pairs), p.label.name])
    return [sqlkit.column(n, p.alias) for n in names]


def _where(ctx: Context, cond: Condition) -> str:
    return ctx.renderer.sql(cond.expression)


def _on(ctx: Context, link: Link) -> str:
    return ctx.renderer.sql(link.on())


def _shown(entity: Entity) -> list[Field]:
    """A child row as a list shows its label, plus a date when the label is only its key."""
    if entity.key is not None and entity.label.name == entity.key.name and entity.dates:
        return [entity.label, entity.dates[0]]
    return [entity.label]


@over_link(every_link)
def join_list(ctx: Context, link: Link) -> Draft | None:
    c, p = link.child, link.parent
    shown = [_col(c, f) for f in _shown(c)]
    query = exp.select(*shown).from_(_from(c))
    query = _join(query, link, p)
    cond = ctx.condition(p, p.alias) if ctx.chance(0.6) else None
    join_note = f"It joins {c.name} to {p.name} on {_on(ctx, link)}"
    if cond is None:
        query = query.select(_col(p, p.label))
        question = ctx.say(questions("join_list", "all"), plabel=p.label.phrase, **link_words(link))
        explanation = f"{join_note} and shows the {p.noun.one}'s {p.label.phrase} next to it."
        return Draft(question, query, explanation)
    question = ctx.say(questions("join_list", "filtered"), cond=cond.phrase, **link_words(link))
    explanation = (
        f"{join_note}; WHERE {_where(ctx, cond)} keeps the {c.noun.many} of {p.noun.many}"
        f" {cond.phrase}."
    )
    return Draft(question, query.where(cond.expression), explanation)


@over_link(every_link)
def count_per_parent(ctx: Context, link: Link) -> Draft | None:
    c, p = link.child, link.parent
    count_name = output_name(c.noun.one, "count")
    query = exp.select(*_parent_keys(link)[-1:]).from_(_from(p))
    if ctx.chance(0.4):
        n = ctx.top_count() if ctx.chance(0.6) else 1
        count = sqlkit.count_star()
        query = (
            _join(query, link, c)
            .select(sqlkit.aliased(count, count_name))
            .group_by(*_parent_keys(link))
            .order_by(ctx.renderer.ordered(count.copy(), descending=True))
            .limit(n)
        )
        question = ctx.say(
            questions("count_per_parent", "top_one" if n == 1 else "top_n"),
            n=ctx.spell(n),
            **link_words(link),
        )
        explanation = (
            f"It joins {p.name} to {c.name} on {_on(ctx, link)}, counts the {c.noun.many} per"
            f" {p.noun.one} (GROUP BY) and keeps the top {n} by COUNT(*)."
        )
        return Draft(question, query, explanation)
    counted = exp.Count(this=_col(c, link.child_column))
    query = (
        _join(query, link, c, "left")
        .select(sqlkit.aliased(counted, count_name))
        .group_by(*_parent_keys(link))
    )
    question = ctx.say(questions("count_per_parent", "each"), **link_words(link))
    explanation = (
        f"A LEFT JOIN from {p.name} to {c.name} on {_on(ctx, link)} keeps {p.noun.many} without"
        f" {c.noun.many}; COUNT({c.alias}.{link.child_column.name}) per {p.noun.one} then gives 0"
        " for them."
    )
    return Draft(question, query, explanation)


@over_link(every_link)
def parents_having(ctx: Context, link: Link) -> Draft | None:
    c, p = link.child, link.parent
    query = exp.select(_col(p, p.label)).from_(_from(p))
    query = _join(query, link, c).group_by(*_parent_keys(link))
    m = ctx.field(c, c.measures) if ctx.chance(0.35) else None
    if m is None:
        having, variant, values = ctx.count_having(c.noun)
        question = ctx.say(questions("parents_having", variant), pmany=p.noun.many, **values)
    else:
        value = ctx.threshold(m, above=True) * 5
        having = exp.GT(this=exp.Sum(this=_col(c, m)), expression=sqlkit.number(value))
        question = ctx.say(
            questions("parents_having", "measure"), m=m.phrase, v=str(value), **link_words(link)
        )
    explanation = (
        f"It joins {p.name} to {c.name} on {_on(ctx, link)}, groups by {p.noun.one}, and HAVING"
        f" {ctx.renderer.sql(having)} keeps the {p.noun.many} that pass."
    )
    return Draft(question, query.having(having), explanation)


@over_link(links_to_parents_with_categories)
def by_parent_field(ctx: Context, link: Link) -> Draft | None:
    c, p = link.child, link.parent
    g = ctx.field(p, p.categories)
    if g is None:
        return None
    m = ctx.field(c, c.measures) if ctx.chance(0.5) else None
    cond = ctx.condition(c, c.alias, avoid=m) if ctx.chance(0.3) else None
    group = _col(p, g)
    values = {"cmany": f"{c.noun.many} {phrase_of(cond)}", "pone": p.noun.one, "g": g.phrase}
    if m is None:
        value: exp.Expr = sqlkit.aliased(sqlkit.count_star(), output_name(c.noun.one, "count"))
        question = ctx.say(questions("by_parent_field", "count"), **values)
        what = f"COUNT(*) counts the {c.noun.many}"
    else:
        name = ctx.pick(SUMS)
        function, word, prefix = AGGREGATES[name]
        value = sqlkit.aliased(function(this=_col(c, m)), output_name(prefix, m.name))
        question = ctx.say(questions("by_parent_field", "measure"), word=word, m=m.phrase, **values)
        what = f"{name}({c.alias}.{m.name}) aggregates the {m.phrase}"
    query = exp.select(group, value).from_(_from(c))
    query = filtered(_join(query, link, p).group_by(group.copy()), cond)
    explanation = (
        f"It joins {c.name} to {p.name} on {_on(ctx, link)}, groups by {p.alias}.{g.name}, and"
        f" {what} in each group.{ctx.where_note(cond, c.noun.many)}"
    )
    return Draft(question, query, explanation)


def _revenue_links(ctx: Context) -> list[tuple[Link, Field, Field]]:
    """Links from a table with a quantity to one with a price: revenue is their product."""
    found = []
    for link in ctx.catalog.links:
        for q in link.child.measures:
            for price in link.parent.measures:
                if q.role == Role.QUANTITY and price.role == Role.MONEY:
                    found.append((link, q, price))
    return found


def revenue(ctx: Context) -> Draft | None:
    options = _revenue_links(ctx)
    if not options:
        return None
    link, q, price = ctx.pick(options)
    c, p = link.child, link.parent
    amount = exp.Mul(this=_col(c, q), expression=_col(p, price))
    total = exp.Sum(this=amount)
    query = _join(exp.select().from_(_from(c)), link, p)
    others = [
        k for k in ctx.catalog.links_of(c) if k.child.name == c.name and k.parent.name != p.name
    ]
    shape = ctx.pick(("total", "parent", "parent_field", "other_field"))
    formula = f"{c.alias}.{q.name} * {p.alias}.{price.name}"
    if shape == "parent_field" and p.categories:
        g = ctx.field(p, p.categories)
        if g is None:
            return None
        group: list[exp.Expr] = [_col(p, g)]
        question = ctx.say(questions("revenue", "parent_field"), g=g.phrase, **link_words(link))
    elif shape == "other_field" and others:
        other = ctx.pick(others)
        g = ctx.field(other.parent, (*other.parent.categories, other.parent.label))
        if g is None:
            return None
        query = _join(query, other, other.parent)
        group = [_col(other.parent, g)]
        question = ctx.say(
            questions("revenue", "other_field"), oone=other.parent.noun.one, g=g.phrase
        )
    elif shape == "parent":
        n = ctx.top_count()
        query = query.group_by(*_parent_keys(link)).order_by(
            ctx.renderer.ordered(sqlkit.column("revenue"), descending=True)
        )
        query = query.select(_col(p, p.label), sqlkit.aliased(total, "revenue")).limit(n)
        question = ctx.say(questions("revenue", "parent"), n=ctx.spell(n), **link_words(link))
        explanation = (
            f"Revenue is {formula}: it joins {c.name} to {p.name} on {_on(ctx, link)}, sums"
            f" that per {p.noun.one} and keeps the top {n}."
        )
        return Draft(question, query, explanation)
    else:
        group = []
        question = ctx.say(questions("revenue", "total"), **link_words(link))
    query = query.select(*group, sqlkit.aliased(total, "revenue"))
    if group:
        query = query.group_by(*(g.copy() for g in group))
    by = f" per {ctx.renderer.sql(group[0])}" if group else ""
    explanation = (
        f"Revenue is {formula}: the query joins {c.name} to {p.name} on {_on(ctx, link)} and"
        f" sums it{by}."
    )
    return Draft(question, query, explanation)


def _path_query(path: Path) -> exp.Select:
    query = exp.select().from_(_from(path.first))
    query = _join(query, path.links[0], path.middle)
    return _join(query, path.links[1], path.last)


def _path_note(ctx: Context, path: Path) -> str:
    a, b = path.links
    return (
        f"It joins {path.first.name} to {path.middle.name} on {_on(ctx, a)} and"
        f" {path.middle.name} to {path.last.name} on {_on(ctx, b)}"
    )


def path_group(ctx: Context) -> Draft | None:
    """Counts or sums of the first table of a path, grouped by a column of the last one."""
    path = ctx.path([p for p in ctx.catalog.paths if p.last.categories])
    if path is None:
        return None
    first, last = path.first, path.last
    g = ctx.field(last, last.categories)
    if g is None:
        return None
    m = ctx.field(first, first.measures) if path.is_chain and ctx.chance(0.5) else None
    cond = ctx.condition(first, first.alias, avoid=m) if ctx.chance(0.25) else None
    fmany = f"{first.noun.many} {phrase_of(cond)}"
    values = {"fmany": fmany, "lone": last.noun.one, "g": g.phrase}
    if m is not None:
        value: exp.Expr = exp.Sum(this=_col(first, m))
        out = output_name("total", m.name)
        question = ctx.say(questions("path_group", "measure"), m=m.phrase, **values)
    else:
        # Off a chain, one row of `first` meets many rows of `last`: count it once per group.
        if path.is_chain or first.key is None:
            value = sqlkit.count_star()
        else:
            value = sqlkit.count_distinct(_col(first, first.key))
        out = output_name(first.noun.one, "count")
        question = ctx.say(questions("path_group", "count"), **values)
    group = _col(last, g)
    query = _path_query(path).select(group, sqlkit.aliased(value, out)).group_by(group.copy())
    query = filtered(query, cond)
    explanation = (
        f"{_path_note(ctx, path)}, then groups by {last.alias}.{g.name} and computes"
        f" {ctx.renderer.sql(value)} per group.{ctx.where_note(cond, first.noun.many)}"
    )
    return Draft(question, query, explanation)


def path_filter(ctx: Context) -> Draft | None:
    """Rows of the first table of a path, chosen by a condition on the last one."""
    path = ctx.path(ctx.catalog.paths)
    if path is None:
        return None
    first, last = path.first, path.last
    cond = ctx.condition(last, last.alias)
    if cond is None:
        return None
    query = (
        _path_query(path).select(*(_col(first, f) for f in _shown(first))).where(cond.expression)
    )
    if not path.is_chain:
        query = query.distinct()
    values = {
        "fmany": first.noun.many,
        "lmany": last.noun.many,
        "mmany": path.middle.noun.many,
        "cond": cond.phrase,
    }
    shape = "chain" if path.is_chain else "bridge" if path.is_bridge else "other"
    question = ctx.say(questions("path_filter", shape), **values)
    distinct = "" if path.is_chain else " DISTINCT lists each one once."
    explanation = (
        f"{_path_note(ctx, path)}; WHERE {_where(ctx, cond)} keeps the {last.noun.many}"
        f" {cond.phrase}.{distinct}"
    )
    return Draft(question, query, explanation)


def path_count_distinct(ctx: Context) -> Draft | None:
    """Per row of a path's first table, how many different parents its far rows reference:
    "How many different products appear in each customer's order items?"."""
    options: list[tuple[Path, Link, Field]] = []
    for path in ctx.catalog.paths:
        key = path.first.key
        reverse_chain = all(
            link.child.name == child.name
            for link, child in zip(path.links, (path.middle, path.last), strict=True)
        )
        if key is None or not reverse_chain:
            continue
        options += [
            (path, other, key)
            for other in ctx.catalog.single_links
            if other.child.name == path.last.name
            and other.parent.name not in (path.first.name, path.middle.name)
        ]
    if not options:
        return None
    path, other, key = ctx.pick(options)
    first, last = path.first, path.last
    counted = sqlkit.count_distinct(_col(last, other.child_column))
    out = output_name(other.parent.noun.one, "count")
    group = [sqlkit.column(n, first.alias) for n in dict.fromkeys((key.name, first.label.name))]
    query = (
        _path_query(path)
        .select(_col(first, first.label), sqlkit.aliased(counted, out))
        .group_by(*group)
    )
    question = ctx.say(
        questions("path_count_distinct", "default"),
        omany=other.parent.noun.many,
        lmany=last.noun.many,
        fone=first.noun.one,
    )
    explanation = (
        f"{_path_note(ctx, path)}; per {first.noun.one}, COUNT(DISTINCT"
        f" {last.alias}.{other.child_column.name}) counts each {other.parent.noun.one} once."
    )
    return Draft(question, query, explanation)


@over_link(single_column_links)
def parents_in(ctx: Context, link: Link) -> Draft | None:
    """Parents with at least one (matching) child, as an IN subquery."""
    c, p = link.child, link.parent
    cond = ctx.condition(c) if ctx.chance(0.75) else None
    inner = exp.select(sqlkit.column(link.child_column.name)).from_(sqlkit.table(c.name))
    outer = sqlkit.column(link.parent_column.name).isin(query=filtered(inner, cond))
    query = exp.select(sqlkit.column(p.label.name)).from_(sqlkit.table(p.name)).where(outer)
    question = ctx.say(questions("parents_in", "default"), cond=phrase_of(cond), **link_words(link))
    scope = f" {cond.phrase}" if cond is not None else ""
    explanation = (
        f"The subquery lists {link.child_column.name} of the {c.noun.many}{scope}; the outer"
        f" query keeps the {p.noun.many} whose {link.parent_column.name} is IN that list."
    )
    return Draft(question, query, explanation)


@over_link(single_column_links)
def children_in(ctx: Context, link: Link) -> Draft | None:
    """Children whose parent matches a condition, as an IN subquery."""
    c, p = link.child, link.parent
    cond = ctx.condition(p)
    if cond is None:
        return None
    inner = exp.select(sqlkit.column(link.parent_column.name)).from_(sqlkit.table(p.name))
    inner = inner.where(cond.expression)
    shown = [sqlkit.column(f.name) for f in _shown(c)]
    outer = sqlkit.column(link.child_column.name).isin(query=inner)
    query = exp.select(*shown).from_(sqlkit.table(c.name)).where(outer)
    question = ctx.say(questions("children_in", "default"), cond=cond.phrase, **link_words(link))
    explanation = (
        f"The subquery finds the {p.noun.many} {cond.phrase}; the outer query keeps the"
        f" {c.noun.many} whose {link.child_column.name} is IN that set."
    )
    return Draft(question, query, explanation)


@over_link(every_link)
def parents_without(ctx: Context, link: Link) -> Draft | None:
    """Parents with no child, as a LEFT JOIN ... IS NULL anti-join."""
    c, p = link.child, link.parent
    missing = exp.Is(this=_col(c, link.child_column), expression=exp.Null())
    query = _join(exp.select(_col(p, p.label)).from_(_from(p)), link, c, "left").where(missing)
    question = ctx.say(questions("parents_without", "default"), **link_words(link))
    explanation = (
        f"A LEFT JOIN from {p.name} to {c.name} on {_on(ctx, link)} leaves"
        f" {c.alias}.{link.child_column.name} NULL where no {c.noun.one} matches; WHERE ... IS"
        " NULL keeps exactly those."
    )
    return Draft(question, query, explanation)


@over_link(single_column_links)
def distinct_references(ctx: Context, link: Link) -> Draft | None:
    """How many different parents the (matching) children point at."""
    c, p = link.child, link.parent
    cond = ctx.condition(c, avoid=link.child_column) if ctx.chance(0.6) else None
    query = exp.select(sqlkit.count_distinct(sqlkit.column(link.child_column.name))).from_(
        sqlkit.table(c.name)
    )
    query = filtered(query, cond)
    question = ctx.say(
        questions("distinct_references", "default"), cond=phrase_of(cond), **link_words(link)
    )
    where = ctx.where_note(cond, c.noun.many)
    explanation = (
        f"Each {c.noun.one} points at its {p.noun.one} through {link.child_column.name};"
        f" COUNT(DISTINCT {link.child_column.name}) counts each {p.noun.one} once.{where}"
    )
    return Draft(question, query, explanation)


@over_link(links_to_parents_with_categories)
def parent_values_of_children(ctx: Context, link: Link) -> Draft | None:
    """The distinct values of a parent column among the (matching) children's parents."""
    c, p = link.child, link.parent
    g = ctx.field(p, p.categories)
    if g is None:
        return None
    cond = ctx.condition(c, c.alias) if ctx.chance(0.6) else None
    query = filtered(_join(exp.select(_col(p, g)).from_(_from(c)), link, p).distinct(), cond)
    question = ctx.say(
        questions("parent_values", "default"),
        gs=plural_phrase(g.phrase),
        cond=phrase_of(cond),
        **link_words(link),
    )
    where = ctx.where_note(cond, c.noun.many)
    explanation = (
        f"It joins {c.name} to {p.name} on {_on(ctx, link)} and SELECT DISTINCT returns each"
        f" {p.noun.one} {g.phrase} once.{where}"
    )
    return Draft(question, query, explanation)


BUILDERS: tuple[Builder, ...] = (
    Builder("join_list", frozenset({"join", "filter"}), join_list),
    Builder("count_per_parent", frozenset({"join", "aggregate", "group_by"}), count_per_parent),
    Builder("parents_having", frozenset({"join", "group_by", "having"}), parents_having),
    Builder("by_parent_field", frozenset({"join", "aggregate", "group_by"}), by_parent_field),
    Builder("revenue", frozenset({"join", "aggregate", "revenue"}), revenue, weight=0.8),
    Builder("path_group", frozenset({"join", "aggregate", "group_by"}), path_group),
    Builder("path_filter", frozenset({"join", "filter"}), path_filter),
    Builder("path_count_distinct", frozenset({"join", "count_distinct"}), path_count_distinct, 0.5),
    Builder("parents_in", frozenset({"subquery", "filter"}), parents_in),
    Builder("children_in", frozenset({"subquery", "filter"}), children_in, weight=0.7),
    Builder("parents_without", frozenset({"join", "filter"}), parents_without, weight=0.4),
    Builder("distinct_references", frozenset({"count_distinct"}), distinct_references, 0.6),
    Builder("parent_values", frozenset({"join", "distinct"}), parent_values_of_children, 0.6),
)
