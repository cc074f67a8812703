"""Query shapes that builders of several kinds share (`analytic`, `logic`)."""

from __future__ import annotations

from sqlglot import exp

from distillrun.teacher.synthetic import sqlkit
from distillrun.teacher.synthetic.catalog import Link


def parent_keys(link: Link) -> list[exp.Expr]:
    """The parent's referenced column and label, each once, qualified by its alias."""
    p = link.parent
    return [
        sqlkit.column(n, p.alias) for n in dict.fromkeys((link.parent_column.name, p.label.name))
    ]


def per_parent(
    link: Link, value: exp.Expr, name: str, *, on: exp.Expr | None = None, show_key: bool = True
) -> exp.Select:
    """One row per parent with `value` over its children, named `name`, parents without
    children included (a LEFT JOIN on `on`, the link's own condition by default). A row shows
    the parent's label, after its referenced column when `show_key`; it groups by both."""
    p, c = link.parent, link.child
    keys = parent_keys(link)
    shown = keys if show_key else keys[-1:]
    return (
        exp.select(*(k.copy() for k in shown), sqlkit.aliased(value, name))
        .from_(sqlkit.table(p.name, p.alias))
        .join(sqlkit.table(c.name, c.alias), on=link.on() if on is None else on, join_type="left")
        .group_by(*keys)
    )
