"""From a Messages API exchange to a shard: request parameters out, a `ShardOutput` back.

Shared by the realtime and the batch paths, so a shard written either way has the same prompt,
the same parsing and the same accounting (only the batch discount differs).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from anthropic.types import Message

from distillrun.teacher.base import ShardOutput, ShardRequest, Usage
from distillrun.teacher.parsing import Completion
from distillrun.teacher.pricing import to_usd
from distillrun.teacher.prompt import TOOL_NAME, Prompt
from distillrun.teacher.review import shard_from_reply

_COMPLETION = {
    "end_turn": Completion.COMPLETE,
    "tool_use": Completion.COMPLETE,
    "refusal": Completion.REFUSED,
}
"""Stop reasons that say how a reply ended; any other (`max_tokens`, `pause_turn`,
`stop_sequence`, `model_context_window_exceeded`, unknown) means it may be incomplete."""


def message_params(prompt: Prompt, model: str, *, caching: bool = True) -> dict[str, Any]:
    """Messages API parameters: the system prompt (marked for caching), one forced tool call."""
    system: dict[str, Any] = {"type": "text", "text": prompt.system}
    if caching:
        system["cache_control"] = {"type": "ephemeral"}
    return {
        "model": model,
        "max_tokens": prompt.max_tokens,
        "system": [system],
        "tools": [
            {
                "name": TOOL_NAME,
                "description": "Record the Text-to-SQL examples you wrote.",
                "input_schema": prompt.tool_schema,
            }
        ],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
        "messages": [{"role": "user", "content": prompt.user}],
    }


def message_usage(message: Message) -> Usage:
    """Tokens exactly as the server reported them (no cost yet)."""
    usage = message.usage
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_input_tokens or 0,
        cache_write_tokens=usage.cache_creation_input_tokens or 0,
        requests=1,
    )


def shard_output(
    request: ShardRequest, message: Message, cost: Decimal, teacher: str
) -> ShardOutput:
    """The shard a Messages reply makes (`review.shard_from_reply`)."""
    tool_inputs = [b.input for b in message.content if b.type == "tool_use"]
    texts = [b.text for b in message.content if b.type == "text"]
    completion = _COMPLETION.get(message.stop_reason or "", Completion.TRUNCATED)
    usage = message_usage(message).model_copy(update={"usd": to_usd(cost)})
    reply = (tool_inputs, texts, completion, message.stop_reason)
    return shard_from_reply(request, reply, usage, teacher)
