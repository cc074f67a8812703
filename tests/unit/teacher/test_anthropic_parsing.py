"""Tolerant parsing of teacher replies and the review before storage: every complete example is
kept, everything else becomes a counted problem with its reason class."""

from __future__ import annotations

import json
from pathlib import Path

from distillrun.api.spec import Dialect
from distillrun.sql.schema import parse_schema
from distillrun.teacher.parsing import Completion, Draft, parse_reply
from distillrun.teacher.review import review

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop" / "schema.sql"
ONE = {"question": "How many customers are there?", "sql": "SELECT COUNT(*) FROM customers"}
TWO = {
    "question": "Which products cost over 10?",
    "sql": "SELECT name FROM products WHERE price > 10",
}


def reasons(problems: list[dict[str, object]]) -> list[object]:
    return [p["reason"] for p in problems]


def test_a_clean_tool_call_is_read_as_is() -> None:
    reply = parse_reply([{"examples": [ONE, TWO]}], [], Completion.COMPLETE, "tool_use")
    assert [d.sql for d in reply.drafts] == [ONE["sql"], TWO["sql"]] and reply.problems == []


def test_json_in_text_is_read_from_fences_or_salvaged_from_chatter() -> None:
    fenced = "```json\n" + json.dumps({"examples": [ONE]}) + "\n```"
    reply = parse_reply([], [fenced], Completion.COMPLETE, "end_turn")
    assert len(reply.drafts) == 1 and reply.problems == []

    chatty = 'Sure! {"question": "How many customers are there?", "sql": "SELECT 1"} and {"quest'
    reply = parse_reply([], [chatty], Completion.COMPLETE, "end_turn")
    assert len(reply.drafts) == 1 and reasons(reply.problems) == ["malformed_json"]
    assert "1 example(s) salvaged" in str(reply.problems[0]["detail"])


def test_a_cut_reply_keeps_only_what_is_surely_complete() -> None:
    cut_text = '{"examples": [{"question": "a?", "sql": "SELECT 1"}, {"question": "b?", "sq'
    reply = parse_reply([], [cut_text], Completion.TRUNCATED, "max_tokens")
    assert [d.question for d in reply.drafts] == ["a?"] and reasons(reply.problems) == ["truncated"]

    cut_tool = [{"examples": [ONE, TWO]}]
    reply = parse_reply(cut_tool, [], Completion.TRUNCATED, "max_tokens")
    assert [d.sql for d in reply.drafts] == [ONE["sql"]]  # the last one may be cut: held back
    assert (
        reasons(reply.problems) == ["truncated"]
        and reply.problems[0]["stop_reason"] == "max_tokens"
    )

    assert reasons(parse_reply([], [], Completion.TRUNCATED, "max_tokens").problems) == [
        "truncated"
    ]


def test_refusals_invalid_items_and_empty_replies_are_problems() -> None:
    refused = parse_reply([{"examples": [ONE]}], ["no"], Completion.REFUSED, "refusal")
    assert refused.drafts == [] and reasons(refused.problems) == ["refusal"]

    items = [ONE, {"question": "", "sql": "SELECT 1"}, {"question": "q?"}, "text", {"sql": 3}]
    reply = parse_reply([{"examples": items}], [], Completion.COMPLETE, "tool_use")
    assert len(reply.drafts) == 1 and reasons(reply.problems) == ["invalid_example"] * 4

    assert reasons(parse_reply([{"rows": []}], [], Completion.COMPLETE, "tool_use").problems) == [
        "malformed_json"
    ]
    assert reasons(parse_reply([], [" "], Completion.COMPLETE, "end_turn").problems) == ["empty"]


def test_review_drops_duplicate_sql_and_near_duplicate_questions_and_tags_the_sql() -> None:
    schema = parse_schema(SHOP.read_text(), Dialect.SQLITE)
    drafts = [
        Draft("How many customers are there?", "SELECT COUNT(*) FROM customers"),
        Draft("Count all customers, please", "select  count(*)\nfrom CUSTOMERS;"),
        Draft(
            "List the names of customers from Germany",
            "SELECT name FROM customers WHERE country = 'DE'",
        ),
        Draft(
            "Show the names of the customers from Germany.",
            "SELECT name FROM customers WHERE country = 'DE' ORDER BY name",
        ),
        Draft(
            "Rank products by price within each category",
            "WITH p AS (SELECT * FROM products) SELECT name, RANK() OVER "
            "(PARTITION BY category ORDER BY price DESC) FROM p",
        ),
        Draft(
            "Which customers ordered garden products?",
            "SELECT DISTINCT c.name FROM customers c JOIN orders o ON o.customer_id = c.id "
            "JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id "
            "WHERE p.category = 'garden'",
        ),
    ]
    kept, dropped = review(drafts, schema)
    assert [k.draft for k in kept] == [drafts[0], drafts[2], drafts[4], drafts[5]]
    assert [p["reason"] for p in dropped] == ["duplicate_sql", "duplicate_question"]
    ranked, joined = kept[2], kept[3]
    assert ranked.tables == ["products"] and {"cte", "window"} <= set(ranked.constructs)
    assert joined.tables == ["customers", "orders", "order_items", "products"]
    assert {"join", "filter"} <= set(joined.constructs)
