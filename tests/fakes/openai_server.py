"""A fake OpenAI-compatible chat-completions server on loopback (what vLLM and friends speak):
`POST /v1/chat/completions` with forced function calls, usage with cached prompt tokens, an
optional bearer key, scripted faults (`fake.script(...)`): any status with a body and
`retry-after`, a connection reset, a 200 with any JSON body (`Body`), a cut reply
(`finish_reason: length`), a content filter; and scripted `x-ratelimit-*` headers
(`RateHeaders`) on every reply or on one error reply.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.content import fit, serialized, tokens, write_examples
from tests.fakes.loopback import ServedFake

Json = dict[str, Any]


@dataclass(frozen=True)
class RateHeaders:
    """The `x-ratelimit-*` headers an OpenAI-style server sends; None leaves one out. The
    values are scripted, not counted: a test says exactly what the client is told."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: str | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: str | None = None

    def headers(self) -> dict[str, str]:
        values = {
            "x-ratelimit-limit-requests": self.limit_requests,
            "x-ratelimit-remaining-requests": self.remaining_requests,
            "x-ratelimit-reset-requests": self.reset_requests,
            "x-ratelimit-limit-tokens": self.limit_tokens,
            "x-ratelimit-remaining-tokens": self.remaining_tokens,
            "x-ratelimit-reset-tokens": self.reset_tokens,
        }
        return {name: str(value) for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class Status:
    """An error reply; `ratelimit` replaces the server's `x-ratelimit-*` headers for it."""

    status: int
    body: str = '{"error": {"message": "scripted", "type": "server_error"}}'
    retry_after: float | None = None
    ratelimit: RateHeaders | None = None


@dataclass(frozen=True)
class Reset:
    """The connection is reset before any reply."""


@dataclass(frozen=True)
class Finish:
    """The reply ends with this `finish_reason` (`length`: cut to `max_tokens`)."""

    finish_reason: str
    max_tokens: int | None = None


@dataclass(frozen=True)
class Body:
    """A 200 reply with this JSON body instead of a completion (a broken or misconfigured
    server: `{}`, a completion without choices, a tool call with no examples)."""

    json: Json


Reply = Status | Reset | Finish | Body


def insufficient_quota() -> Status:
    body = '{"error": {"message": "You exceeded your quota", "code": "insufficient_quota"}}'
    return Status(429, body)


@dataclass
class FakeOpenAI(ServedFake):
    """The fake server; `url` is the teacher's `baseUrl` (it ends in /v1). `ratelimit`, when
    set, goes with every reply (as OpenAI sends them); None sends none (as vLLM)."""

    api_key: str | None = None
    ratelimit: RateHeaders | None = None
    cached_prompt_tokens: int = 0
    requests: list[Json] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def next_reply(self) -> Reply | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def complete(self, body: Json, reply: Finish | None) -> Json:
        system, user = (m["content"] for m in body["messages"])
        examples = write_examples(system, user)
        limit = reply.max_tokens if reply and reply.max_tokens else int(body["max_tokens"])
        kept, cut = fit(examples, limit)
        arguments = serialized(kept)
        finish = "tool_calls"
        if cut:
            arguments = serialized(examples)[: limit * 4]
            finish = "length"
        if reply is not None and reply.finish_reason != "length":
            finish = reply.finish_reason
        prompt = tokens(json.dumps(body["messages"]) + json.dumps(body.get("tools")))
        completion = tokens(arguments)
        with self._lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion
        name = body["tools"][0]["function"]["name"]
        call: Json = {
            "id": "call_1",
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        usage: Json = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": min(prompt, self.cached_prompt_tokens)},
        }
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeOpenAI

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        raw = text.encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        fake = self.fake
        body: Json = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if self.path != "/v1/chat/completions":
            fake.statuses.append(404)
            self._send(404, '{"error": {"message": "not found"}}')
            return
        with fake._lock:
            fake.requests.append(body)
        expected = f"Bearer {fake.api_key}" if fake.api_key else None
        if expected and self.headers.get("authorization") != expected:
            fake.statuses.append(401)
            self._send(401, '{"error": {"message": "bad key", "code": "invalid_api_key"}}')
            return
        reply = fake.next_reply()
        if isinstance(reply, Reset):
            fake.statuses.append(0)
            linger = struct.pack("ii", 1, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.close_connection = True
            return
        if isinstance(reply, Status):
            fake.statuses.append(reply.status)
            headers = _ratelimit_headers(reply.ratelimit or fake.ratelimit)
            if reply.retry_after is not None:
                headers["retry-after"] = f"{reply.retry_after:g}"
            self._send(reply.status, reply.body, headers)
            return
        fake.statuses.append(200)
        answer = reply.json if isinstance(reply, Body) else fake.complete(body, reply)
        self._send(200, json.dumps(answer), _ratelimit_headers(fake.ratelimit))


def _ratelimit_headers(ratelimit: RateHeaders | None) -> dict[str, str]:
    return {} if ratelimit is None else ratelimit.headers()
