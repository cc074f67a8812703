"""`OpenAICompatibleTeacher`: any server speaking the OpenAI chat-completions API (vLLM, a
self-hosted DeepSeek or Qwen, a hosted OpenAI-style endpoint) as the teacher.

Same prompt as every teacher (`teacher.prompt`), asked for through one forced function call;
same tolerant parsing and review; same governor for rate limits and budget, which also adapts
to the server's `x-ratelimit-*` headers when it sends them (OpenAI and many gateways do, vLLM
does not; see `observed_limits`); same retry rules (`teacher.calls`). Such servers are usually
self-hosted, so the price is 0 unless the prices file names the model. The client is a plain
HTTP client (httpx2, which the anthropic SDK brings along): the chat-completions wire format is
small and stable, and no second SDK is needed.

The API key, if the server wants one, is read from `OPENAI_API_KEY` in the process making the
call and sent as a bearer token; it is never stored on the teacher. Without it the server is
called without a key (vLLM without auth needs none); a server that wants one refuses, and the
stage stops with `TeacherAuthFailed` naming the variable.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

from distillrun.teacher.base import ShardOutput, ShardRequest, Usage
from distillrun.teacher.calls import paid_call
from distillrun.teacher.errors import (
    BudgetExhausted,
    TeacherAuthFailed,
    TeacherFailed,
    TeacherStop,
    Transient,
    by_status,
)
from distillrun.teacher.estimate import worst_case_usd
from distillrun.teacher.governor import (
    ObservedLimits,
    Room,
    header_number,
    plain_number,
    retry_after_s,
)
from distillrun.teacher.model_api import ModelApiTeacher
from distillrun.teacher.parsing import Completion
from distillrun.teacher.pricing import FREE, ModelPrice, to_usd
from distillrun.teacher.prompt import TOOL_NAME, Prompt, build_prompt
from distillrun.teacher.review import shard_from_reply

TEACHER_NAME = "openai-compatible"
API_KEY_VARIABLE = "OPENAI_API_KEY"
RATE_CHARS_PER_TOKEN = 3.0
"""Characters per input token assumed when reserving rate-limit room (settled afterwards)."""

_COMPLETION = {
    "stop": Completion.COMPLETE,
    "tool_calls": Completion.COMPLETE,
    "function_call": Completion.COMPLETE,
    "content_filter": Completion.REFUSED,
}
"""`finish_reason`s that say how a reply ended; any other (`length`, unknown) may be cut."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNIT_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def duration_s(text: str | None) -> float | None:
    """Seconds in an `x-ratelimit-reset-*` value: a Go-style duration as OpenAI sends it
    ("6m0s", "1s", "20ms", "1h2m3.5s") or a bare number of seconds; None if it is neither."""
    if text is None:
        return None
    text = text.strip()
    bare = plain_number(text)
    if bare is not None:
        return bare
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _DURATION_UNIT_S[unit] for number, unit in parts)


def observed_limits(headers: Mapping[str, str]) -> ObservedLimits:
    """What an OpenAI-style server's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
    headers say, on the governor's axes.

    Requests map one to one. Tokens are one budget for prompt and completion together, while
    the governor keeps input and output apart; the budget (limit and remaining) bounds both
    axes. That is the tightest mapping that is always true: prompt tokens alone can never
    exceed the combined budget, and neither can the `max_tokens` the output axis reserves (the
    server counts it on admission too), whereas splitting the budget needs an input/output ratio
    the headers do not give and could leave one axis too small for a single request. Together
    the two axes can still admit more than the budget (up to twice it) between responses; each
    response's `remaining`, which counts both, pulls both buckets down again, and a 429 beyond
    that pauses every worker.
    """
    requests = Room(
        limit=header_number(headers, "x-ratelimit-limit-requests"),
        remaining=header_number(headers, "x-ratelimit-remaining-requests"),
        reset_s=duration_s(headers.get("x-ratelimit-reset-requests")),
    )
    tokens = Room(
        limit=header_number(headers, "x-ratelimit-limit-tokens"),
        remaining=header_number(headers, "x-ratelimit-remaining-tokens"),
        reset_s=duration_s(headers.get("x-ratelimit-reset-tokens")),
    )
    return ObservedLimits(requests=requests, input_tokens=tokens, output_tokens=tokens)


class ReplyError(Exception):
    """A non-200 reply, kept whole for `classify`."""

    def __init__(self, status: int, body: str, headers: Mapping[str, str]) -> None:
        super().__init__(f"{status}: {body[:300]}")
        self.status = status
        self.body = body
        self.headers = dict(headers)


def classify(exc: Exception, key_variable: str, *, key_set: bool = True) -> TeacherStop | Transient:
    """Every failure of a chat-completions call, mapped in one place (as for anthropic).
    `key_set`: whether a key was sent, so a refusal says which is wrong, the key or its lack."""
    if isinstance(exc, TeacherStop):
        return exc
    if isinstance(exc, httpx2.TransportError):  # connection refused or dropped, timeouts
        return Transient(f"connection failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, json.JSONDecodeError):
        return Transient(f"the server's reply is not JSON: {exc}")
    if not isinstance(exc, ReplyError):
        return TeacherFailed(f"unexpected {type(exc).__name__}: {exc}")
    if exc.status in (401, 403) and not key_set:
        return TeacherAuthFailed(f"the server wants an API key: set {key_variable} ({exc})")
    if exc.status in (401, 403):
        return TeacherAuthFailed(f"the server refused the key in {key_variable} ({exc})")
    if exc.status == 402 or (exc.status == 429 and "insufficient_quota" in exc.body):
        return BudgetExhausted(f"the account has no quota left ({exc})")
    return by_status(
        exc.status,
        str(exc),
        retry_after_s(exc.headers),
        f"the server rejected the request ({exc})",
    )


def chat_body(prompt: Prompt, model: str, temperature: float) -> dict[str, Any]:
    """A chat-completions request: system and user turns, one forced function call."""
    return {
        "model": model,
        "max_tokens": prompt.max_tokens,
        "temperature": temperature,
        "messages": [
            {"role": "system", "content": prompt.system},
            {"role": "user", "content": prompt.user},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": TOOL_NAME,
                    "description": "Record the Text-to-SQL examples you wrote.",
                    "parameters": prompt.tool_schema,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": TOOL_NAME}},
    }


def reply_usage(data: Mapping[str, Any]) -> Usage:
    """Tokens as the server reported them; cached prompt tokens count as cache reads."""
    usage = data.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return Usage(
        input_tokens=prompt_tokens - cached,
        cache_read_tokens=cached,
        output_tokens=int(usage.get("completion_tokens") or 0),
        requests=1,
    )


def _reply_parts(data: Mapping[str, Any]) -> tuple[list[Any], list[str], Completion, str | None]:
    choices = data.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    tool_inputs: list[Any] = []
    texts: list[str] = []
    for call in message.get("tool_calls") or []:
        arguments = (call.get("function") or {}).get("arguments") or ""
        try:
            tool_inputs.append(json.loads(arguments))
        except json.JSONDecodeError:
            texts.append(arguments)  # cut or broken arguments: salvaged like text
    if isinstance(message.get("content"), str):
        texts.append(message["content"])
    finish = choice.get("finish_reason")
    completion = _COMPLETION.get(finish or "", Completion.TRUNCATED)
    return tool_inputs, texts, completion, finish


@dataclass(frozen=True, kw_only=True)
class OpenAICompatibleTeacher(ModelApiTeacher):
    """A model behind a chat-completions endpoint; see the module docstring. No batch API and
    no billed prompt caching (the `ModelApiTeacher` defaults)."""

    provider = TEACHER_NAME

    base_url: str
    price: ModelPrice = FREE
    temperature: float = 1.0
    api_key_variable: str = API_KEY_VARIABLE

    @property
    def parameters(self) -> dict[str, Any]:
        return {**super().parameters, "temperature": self.temperature}

    def write_shard(self, request: ShardRequest) -> ShardOutput:
        """One shard through one chat-completions call, paced and paid for like any teacher."""
        governor = self.paced_by()
        prompt = build_prompt(request)
        body = chat_body(prompt, self.model, self.temperature)
        reserved = (math.ceil(len(json.dumps(body)) / RATE_CHARS_PER_TOKEN), prompt.max_tokens)
        headers = {"content-type": "application/json"}
        key = os.environ.get(self.api_key_variable)
        if key:
            headers["authorization"] = f"Bearer {key}"
        url = f"{self.base_url.rstrip('/')}/chat/completions"

        with httpx2.Client(timeout=self.retry.timeout_s) as http:

            def call() -> dict[str, Any]:
                governor.acquire(*reserved)
                try:
                    response = http.post(url, json=body, headers=headers)
                    ok = response.status_code == 200
                    data: dict[str, Any] = response.json() if ok else {}
                    used = reply_usage(data)  # all 0 for a refusal
                except Exception:  # no reply, or one that is not JSON: nothing was used
                    governor.settle(reserved, (0, 0))
                    raise
                governor.settle(
                    reserved, (used.input_tokens + used.cache_read_tokens, used.output_tokens)
                )
                # after settling, so the server's `remaining` (which counts this request) wins
                governor.observe(observed_limits(response.headers))
                if not ok:
                    if response.status_code == 429:
                        governor.rate_limited(retry_after_s(response.headers))
                    elif response.status_code in (503, 529):
                        governor.overloaded(retry_after_s(response.headers))
                    raise ReplyError(response.status_code, response.text, response.headers)
                return data

            data, cost = paid_call(
                call,
                governor=governor,
                worst_usd=worst_case_usd(prompt, self.price, batch=False),
                cost_of=lambda d: self.price.cost(reply_usage(d)),
                classify=lambda exc: classify(exc, self.api_key_variable, key_set=bool(key)),
                retry=self.retry,
            )
        usage = reply_usage(data).model_copy(update={"usd": to_usd(cost)})
        return shard_from_reply(request, _reply_parts(data), usage, self.label)
