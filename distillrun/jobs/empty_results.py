"""Warnings that the seed data leaves a run's results weak evidence, shared by validate and
evaluate.

A query whose result is empty is matched by every query that returns nothing (`... WHERE
1 = 0`), so an example with an empty gold result proves little: strict comparison scores it
apart (`sql.pairs.GOLD_EMPTY`) and the accuracy rests on the others. Empty seed data makes
nearly every result empty. The validate stage warns over the accepted examples (before any
training is paid for), the evaluate stage over the scored pairs; both put the warnings in their
notes, their summary or metrics, and the report.
"""

from __future__ import annotations

EMPTY_SHARE_TO_WARN = 0.2
"""Share of gold results that are empty above which a stage warns."""


def empty_seed_warnings(seed_sql: str | None) -> list[str]:
    """A warning when the seed data `seed_sql` holds nothing, else none."""
    if (seed_sql or "").strip():
        return []
    return [
        "the seed data is empty: every table is empty, so most gold results are empty and "
        "prove nothing; give spec.database.seedData rows the questions ask about"
    ]


def empty_data_warnings(seed_sql: str | None, results: int, empty: int) -> list[str]:
    """The warnings, in words for the user, for seed data `seed_sql` and `empty` empty gold
    results out of `results` that ran."""
    found = empty_seed_warnings(seed_sql)
    if results and empty / results > EMPTY_SHARE_TO_WARN:
        found.append(
            f"{empty} of {results} gold results are empty ({empty / results:.0%}): any query "
            "that returns nothing matches them, so they prove nothing (strict comparison "
            "scores them apart); seed rows with the values the questions ask about would "
            "make them count"
        )
    return found
