"""Reading a teacher's reply tolerantly, and saying exactly what could not be used.

Models do not always answer as asked: the tool call may be missing, the examples may come as
text (fenced, prefixed with chatter, or cut off mid-object), an item may lack its SQL, and a
reply that stopped early (`max_tokens`, a refusal, a pause) cannot be trusted whole. The rule
here: take every example that is complete and well-formed, and record everything else as a
*problem* with its reason class, so it is counted (`ShardOutput.malformed`) and never silently
dropped or nulled.

Reason classes: `truncated` (the reply stopped before it was done; the last example of a cut
tool call is held back, since it may be cut too), `refusal`, `malformed_json`,
`invalid_example` (an item without a usable question or SQL), `empty`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SNIPPET_CHARS = 300
"""How much of an unusable reply a problem record keeps, for a human to look at."""

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class Completion(StrEnum):
    """How a reply ended, in provider-neutral terms (each provider maps its stop reasons)."""

    COMPLETE = "complete"
    TRUNCATED = "truncated"
    REFUSED = "refused"


@dataclass(frozen=True)
class Draft:
    """One example as the teacher wrote it, before review."""

    question: str
    sql: str
    explanation: str = ""


@dataclass
class ParsedReply:
    drafts: list[Draft] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)


def _snippet(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:SNIPPET_CHARS]


def _problem(reason: str, stop_reason: str | None, detail: str, item: Any = None) -> dict[str, Any]:
    problem: dict[str, Any] = {"reason": reason, "stop_reason": stop_reason, "detail": detail}
    if item is not None:
        problem["item"] = _snippet(item)
    return problem


def _salvage(text: str) -> list[Any]:
    """Every complete JSON object in `text` that looks like an example, in order."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict) and "question" in value:
            found.append(value)
            position = text.find("{", end)
        else:
            position = text.find("{", position + 1)
    return found


def _text_values(text: str) -> tuple[list[Any], bool]:
    """JSON values in a text reply, and whether the text was one clean JSON document."""
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text.strip()
    try:
        return [json.loads(body)], True
    except json.JSONDecodeError:
        return _salvage(body), False


def _items(value: Any) -> list[Any] | None:
    """The example items inside one JSON value, or None if its shape is not one we know."""
    if isinstance(value, dict) and isinstance(value.get("examples"), list):
        return list(value["examples"])
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict) and "question" in value:
        return [value]
    return None


def _draft(item: Any) -> Draft | None:
    if not isinstance(item, dict):
        return None
    question, sql, explanation = item.get("question"), item.get("sql"), item.get("explanation")
    if not isinstance(question, str) or not question.strip():
        return None
    if not isinstance(sql, str) or not sql.strip():
        return None
    return Draft(
        question=question.strip(),
        sql=sql.strip(),
        explanation=explanation.strip() if isinstance(explanation, str) else "",
    )


def parse_reply(
    tool_inputs: Iterable[Any],
    texts: Iterable[str],
    completion: Completion,
    stop_reason: str | None,
) -> ParsedReply:
    """The usable drafts in a reply and a problem record for everything else.

    `tool_inputs` are the (already decoded) inputs of the reply's tool calls; `texts` its text
    blocks. A tool call wins: text beside it is commentary and is not mined for examples.
    """
    reply = ParsedReply()
    tool_inputs, texts = list(tool_inputs), [t for t in texts if t.strip()]
    if completion is Completion.REFUSED:
        shown = texts[0] if texts else (tool_inputs[0] if tool_inputs else "")
        reply.problems.append(
            _problem("refusal", stop_reason, "the teacher refused; nothing kept", shown)
        )
        return reply

    items: list[Any] = []
    if tool_inputs:
        for value in tool_inputs:
            found = _items(value)
            if found is None:
                reply.problems.append(
                    _problem(
                        "malformed_json", stop_reason, "tool input is not a list of examples", value
                    )
                )
            else:
                items.extend(found)
        if completion is Completion.TRUNCATED and items:
            held = items.pop()
            reply.problems.append(
                _problem("truncated", stop_reason, "last example of a cut reply held back", held)
            )
    else:
        for text in texts:
            values, clean = _text_values(text)
            for value in values:
                items.extend(_items(value) or [])
            if completion is Completion.TRUNCATED:
                reply.problems.append(
                    _problem(
                        "truncated",
                        stop_reason,
                        "reply cut off; complete examples kept",
                        text[-SNIPPET_CHARS:],
                    )
                )
            elif not clean:
                reply.problems.append(
                    _problem(
                        "malformed_json", stop_reason, f"{len(values)} example(s) salvaged", text
                    )
                )

    for item in items:
        draft = _draft(item)
        if draft is None:
            reply.problems.append(
                _problem("invalid_example", stop_reason, "needs a non-empty question and sql", item)
            )
        else:
            reply.drafts.append(draft)
    if not reply.drafts and not reply.problems:
        reason = "truncated" if completion is Completion.TRUNCATED else "empty"
        reply.problems.append(_problem(reason, stop_reason, "the reply held no examples"))
    return reply
