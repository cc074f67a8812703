"""A composite foreign key is one join on all its columns: joining on one of them fans rows
out, and the synthetic teacher used to steer every such join onto a single column."""

from __future__ import annotations

import sqlite3

import sqlglot
from sqlglot import exp

from distillrun.api.spec import Dialect
from distillrun.sql.schema import parse_schema
from distillrun.teacher.base import ShardRequest, shard_key
from distillrun.teacher.synthetic import SyntheticTeacher
from distillrun.teacher.synthetic.catalog import Catalog

DDL = """
CREATE TABLE projects (
    team TEXT NOT NULL, code TEXT NOT NULL, title TEXT NOT NULL, budget NUMERIC,
    PRIMARY KEY (team, code)
);
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY, team TEXT NOT NULL, code TEXT NOT NULL, name TEXT NOT NULL,
    hours NUMERIC, status TEXT,
    CONSTRAINT task_project FOREIGN KEY (team, code) REFERENCES projects (team, code)
);
"""


def test_a_composite_key_is_one_link_on_all_its_columns() -> None:
    catalog = Catalog(parse_schema(DDL, Dialect.SQLITE))
    [link] = catalog.links
    assert [(c.name, p.name) for c, p in link.pairs] == [("team", "team"), ("code", "code")]
    assert link.on().sql() == "t.team = p.team AND t.code = p.code"
    assert catalog.single_links == ()


def test_every_generated_join_uses_the_whole_key() -> None:
    schema = parse_schema(DDL, Dialect.SQLITE)
    teacher = SyntheticTeacher()
    db = sqlite3.connect(":memory:")
    db.executescript(DDL)
    joined = 0
    for index in range(12):
        key = shard_key(schema, (), teacher, 7, 20, index)
        request = ShardRequest(
            key=key,
            index=index,
            count=20,
            seed=7,
            schema=schema,
            seed_questions=(),
            reasoning=False,
        )
        for example in teacher.write_shard(request).examples:
            db.execute(example.sql)  # runs as written
            tree = sqlglot.parse_one(example.sql, read="sqlite")
            for join in tree.find_all(exp.Join):
                on = join.args.get("on")
                assert on is not None, example.sql
                # the equalities join on the whole key; other predicates (a LEFT JOIN's filter
                # on the joined table) may stand beside them
                joined_on = {
                    c.name
                    for eq in on.find_all(exp.EQ)
                    if isinstance(eq.left, exp.Column) and isinstance(eq.right, exp.Column)
                    for c in (eq.left, eq.right)
                }
                assert joined_on == {"team", "code"}, example.sql
                joined += 1
    assert joined > 0
