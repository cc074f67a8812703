"""What an LLM teacher is told for a top-up shard: the under-covered tables and constructs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from distillrun.api.spec import Dialect
from distillrun.sql.schema import parse_schema
from distillrun.teacher.base import ShardRequest
from distillrun.teacher.prompt import build_prompt

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"


def _request() -> ShardRequest:
    schema = parse_schema((SHOP / "schema.sql").read_text(), Dialect.POSTGRES)
    return ShardRequest("k", 8, 20, 3, schema, ("How many orders?",), True)


def test_a_top_up_shard_asks_for_its_focus() -> None:
    plain = build_prompt(_request())
    focused = build_prompt(
        dataclasses.replace(
            _request(), focus_tables=("order_items",), focus_constructs=("window", "cte")
        )
    )
    assert focused.system == plain.system  # the cached part stays shared
    assert "under-use" not in plain.user
    assert "Lean on these tables: order_items " in focused.user
    assert (
        "Write most of these examples about the tables order_items and these constructs: "
        "window functions (ROW_NUMBER, RANK, running totals); a common table expression "
        "(WITH ...)" in focused.user
    )


def test_a_focus_on_constructs_alone_keeps_the_table_rotation() -> None:
    plain = build_prompt(_request())
    focused = build_prompt(dataclasses.replace(_request(), focus_constructs=("exists",)))
    tables_line = next(line for line in plain.user.splitlines() if line.startswith("Lean on"))
    assert tables_line in focused.user
    assert "about these constructs: EXISTS / NOT EXISTS," in focused.user
