"""The `synthetic` teacher: Text-to-SQL examples written from the schema alone, with no LLM.

Why it exists: a run needs a teacher that costs nothing and works offline — for the quickstart
and the tests, to bootstrap a dataset before paying a model, and to fill construct coverage
(joins, HAVING, subqueries, date ranges) that a model under-produces. Its examples are real
training data, validated by execution like any teacher's.

How it writes a shard: a random source seeded by (seed, shard index) draws, per example, a
builder (one kind of query: filters, aggregates, GROUP BY/HAVING, top-N, joins along foreign
keys over two or three tables, IN, scalar and correlated subqueries, DISTINCT,
COUNT(DISTINCT), date ranges in `single` and `joins`; window functions and CTEs in `analytic`;
CASE, EXISTS, set operations and COALESCE in `logic`), then tables and columns that suit it
(`catalog`: no SUM of a key, no AVG of text, no GROUP BY a unique name), then one of several
phrasings with human-readable names (`naming`). The SQL is a sqlglot tree rendered for the
schema's dialect (`sqlkit`); construct tags and tables are read off that tree. No SQL and no
near-duplicate question repeats within a shard, nor across the unfocused shards of a run
(`teacher`: each shard skips what the shards before it hold).

Literal values: the teacher sees no rows, so it prefers constructs that need none (comparisons
with the average, the most common value, date ranges relative to the latest date) and takes
literals first from the seed questions (numbers, years, quoted strings, codes such as "DE"),
then from plausible values for a column's role (thresholds for a price or a quantity, common
statuses, categories, country codes). A guessed value that is absent yields an empty result,
still valid SQL for the question it states.

Seed questions (`seeds`): tables and columns they name are drawn more often, and a share of each
shard (`seed_focus`) is steered toward one seed question at a time — its tables, columns and
constructs — giving paraphrase-style variants of it.
"""

from distillrun.teacher.synthetic.teacher import GENERATOR_VERSION, SyntheticTeacher

__all__ = ["GENERATOR_VERSION", "SyntheticTeacher"]
