"""A fake Anthropic API on loopback: the Messages and Message Batches wire format, token counts,
prompt caching, rate limits with `anthropic-ratelimit-*` headers, and scripted faults.

The real `anthropic` SDK talks to it with `base_url=fake.url`. By default every request gets a
well-formed answer written by `tests.fakes.content`; a test scripts faults for the next requests
(`fake.script(...)`) or for one shard's requests (`fake.script_shard(i, ...)`) with the reply
helpers below: 429 storms with `retry-after`, 529, 500, connection resets, `max_tokens`
truncation, refusals, malformed JSON, SQL for tables that do not exist, the spend-limit 429 and
a 401. Everything that was billed is in `fake.billed`, every request in `fake.requests`.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

from distillrun.teacher.prompt import TOOL_NAME
from tests.fakes.content import (
    Example,
    fit,
    serialized,
    shard_of,
    tokens,
    write_examples,
)
from tests.fakes.loopback import ServedFake
from tests.fakes.ratelimits import Limits, ServerLimiter

Json = dict[str, Any]


# -- scripted replies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Error:
    """An error response in the API's format."""

    status: int
    type: str
    message: str = "scripted error"
    retry_after: float | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class Reset:
    """The connection is reset before any response is written."""


@dataclass(frozen=True)
class Content:
    """The model's reply is replaced by these content blocks and stop reason."""

    blocks: tuple[Json, ...]
    stop_reason: str


@dataclass(frozen=True)
class Truncate:
    """The model runs out of tokens: as if the request had asked for this `max_tokens`."""

    max_tokens: int


@dataclass(frozen=True)
class BogusTables:
    """The model writes SQL against tables that are not in the schema."""


Reply = Error | Reset | Content | Truncate | BogusTables


def rate_limited(retry_after: float = 0.05) -> Error:
    return Error(
        429, "rate_limit_error", "Number of requests has exceeded your rate limit", retry_after
    )


def overloaded(retry_after: float | None = None) -> Error:
    return Error(529, "overloaded_error", "Overloaded", retry_after)


def server_error() -> Error:
    return Error(500, "api_error", "Internal server error")


def reset() -> Reset:
    return Reset()


def spend_limit() -> Error:
    return Error(
        429,
        "rate_limit_error",
        "You have reached your specified API usage limits.",
        retry_after=0.05,
        error_code="enforced_spend_limit_reached",
    )


def unauthorized() -> Error:
    return Error(401, "authentication_error", "invalid x-api-key")


def refusal() -> Content:
    return Content(({"type": "text", "text": "I can't help with that."},), "refusal")


def malformed_json() -> Content:
    text = 'Here you go: {"examples": [{"question": "How many?", "sql": SELECT 1}'
    return Content(({"type": "text", "text": text},), "end_turn")


def no_examples() -> Content:
    """A well-formed tool call whose JSON holds no example."""
    block = {"type": "tool_use", "id": "toolu_empty", "name": TOOL_NAME, "input": {"examples": []}}
    return Content((block,), "tool_use")


def truncated(max_tokens: int = 120) -> Truncate:
    return Truncate(max_tokens)


def bogus_tables() -> BogusTables:
    return BogusTables()


# -- what was asked and billed ---------------------------------------------------------------


@dataclass
class Recorded:
    """One HTTP request as the server saw it (credentials left out)."""

    method: str
    path: str
    status: int
    shard: int | None
    retry_count: int
    body: Json | None


@dataclass
class Billed:
    """Usage the server reported on successful messages, summed (realtime and batch apart)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    messages: int = 0

    def add(self, usage: Json) -> None:
        self.input_tokens += usage["input_tokens"]
        self.output_tokens += usage["output_tokens"]
        self.cache_creation_input_tokens += usage["cache_creation_input_tokens"]
        self.cache_read_input_tokens += usage["cache_read_input_tokens"]
        self.messages += 1


@dataclass
class _Batch:
    id: str
    requests: list[Json]
    created_at: datetime
    polls: int = 0
    results: list[Json] | None = None
    canceled: bool = False


def _rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FakeAnthropic(ServedFake):
    """The fake API. Use as a context manager; `url` is the SDK's `base_url`."""

    api_key: str = "test-key"
    limits: Limits | None = None
    latency_s: float = 0.0
    min_cache_tokens: int = 1024
    batch_polls_to_end: int = 1
    requests: list[Recorded] = field(default_factory=list)
    billed: Billed = field(default_factory=Billed)
    billed_batch: Billed = field(default_factory=Billed)
    billed_at: list[tuple[float, int]] = field(default_factory=list)
    """(monotonic time, output tokens) of every billed realtime message, for the benchmark."""
    client_caused_429: int = 0
    batches_created: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._shard_script: dict[int, deque[Reply]] = defaultdict(deque)
        self._batch_outcomes: dict[str, str] = {}
        self._create_script: deque[Error | Reset] = deque()
        self._cache: set[str] = set()
        self._batches: dict[str, _Batch] = {}
        self._limiter = ServerLimiter(self.limits) if self.limits else None
        self._active = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    @property
    def url(self) -> str:
        return self.root

    # -- scripting ---------------------------------------------------------------------------

    @property
    def busy(self) -> int:
        """Requests being handled right now."""
        return self._active

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Waits until no request is being handled (after killing a client mid-request)."""
        deadline = time.monotonic() + timeout_s
        while self._active:
            assert time.monotonic() < deadline, "the fake server stayed busy"
            time.sleep(0.01)

    def script(self, *replies: Reply) -> None:
        """The next message requests (any shard) get these replies, in order."""
        with self._lock:
            self._script.extend(replies)

    def script_shard(self, shard: int, *replies: Reply) -> None:
        """The next requests for shard `shard` get these replies, in order."""
        with self._lock:
            self._shard_script[shard].extend(replies)

    def script_batch_create(self, *replies: Error | Reset) -> None:
        """The next batch submissions get these replies instead of a batch, in order."""
        with self._lock:
            self._create_script.extend(replies)

    def batch_outcome(self, custom_id: str, outcome: str) -> None:
        """Make one batch request end `errored`, `expired` or `canceled`."""
        self._batch_outcomes[custom_id] = outcome

    # -- what happened -----------------------------------------------------------------------

    def message_requests(self, status: int | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path == "/v1/messages" and (status is None or r.status == status)
            ]

    def shards_asked(self) -> list[int]:
        """The shard of every message request, in arrival order (all our prompts name one)."""
        return [r.shard for r in self.message_requests() if r.shard is not None]

    def _record(self, entry: Recorded) -> None:
        with self._lock:
            self.requests.append(entry)

    def _next_reply(self, shard: int | None) -> Reply | None:
        with self._lock:
            if shard is not None and self._shard_script[shard]:
                return self._shard_script[shard].popleft()
            if self._script:
                return self._script.popleft()
            return None

    # -- the model ---------------------------------------------------------------------------

    def _count_input(self, body: Json) -> tuple[int, int, int]:
        """(uncached input, cache creation, cache read) tokens of a request."""
        system = body.get("system") or []
        blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
        marked = [i for i, b in enumerate(blocks) if b.get("cache_control")]
        tools_text = json.dumps(body.get("tools") or [])
        messages_text = json.dumps(body.get("messages") or [])
        if not marked:
            text = tools_text + "".join(b["text"] for b in blocks) + messages_text
            return tokens(text), 0, 0
        cut = marked[-1] + 1
        prefix = tools_text + "".join(b["text"] for b in blocks[:cut])
        rest = "".join(b["text"] for b in blocks[cut:]) + messages_text
        prefix_tokens = tokens(prefix)
        if prefix_tokens < self.min_cache_tokens:
            return prefix_tokens + tokens(rest), 0, 0
        digest = hashlib.sha256(f"{body.get('model')}\n{prefix}".encode()).hexdigest()
        with self._lock:
            hit = digest in self._cache
            self._cache.add(digest)
        if hit:
            return tokens(rest), 0, prefix_tokens
        return tokens(rest), prefix_tokens, 0

    def answer(
        self, body: Json, reply: Reply | None, counted: tuple[int, int, int] | None = None
    ) -> tuple[Json, Json]:
        """The message for `body` (after `reply`, if one is scripted) and its usage;
        `counted` is the request's input count when the caller already took it."""
        uncached, created, read = counted or self._count_input(body)
        system = body.get("system") or ""
        system_text = system if isinstance(system, str) else "".join(b["text"] for b in system)
        user_text = json.dumps(body.get("messages") or [])
        wants_tool = bool(body.get("tools"))
        if isinstance(reply, Content):
            blocks: list[Json] = list(reply.blocks)
            stop = reply.stop_reason
            output = max(1, tokens(json.dumps(blocks)))
        else:
            examples = write_examples(
                system_text, user_text, bogus_tables=isinstance(reply, BogusTables)
            )
            limit = reply.max_tokens if isinstance(reply, Truncate) else int(body["max_tokens"])
            blocks, stop, output = _model_output(examples, limit, body, wants_tool)
        usage = {
            "input_tokens": uncached,
            "output_tokens": output,
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
        }
        message = {
            "id": f"msg_{random.getrandbits(64):016x}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        return message, usage

    # -- batches -----------------------------------------------------------------------------

    def _batch_json(self, batch: _Batch) -> Json:
        ended = batch.results is not None
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if ended:
            assert batch.results is not None
            for result in batch.results:
                counts[result["result"]["type"]] += 1
        else:
            counts["processing"] = len(batch.requests)
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": counts,
            "created_at": _rfc3339(batch.created_at),
            "expires_at": _rfc3339(batch.created_at + timedelta(hours=24)),
            "ended_at": _rfc3339(datetime.now(UTC)) if ended else None,
            "cancel_initiated_at": None,
            "archived_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    def _finish(self, batch: _Batch) -> None:
        results = []
        for request in batch.requests:
            custom_id = request["custom_id"]
            outcome = "canceled" if batch.canceled else self._batch_outcomes.get(custom_id)
            if outcome == "errored":
                error = {"type": "error", "error": {"type": "api_error", "message": "boom"}}
                result: Json = {"type": "errored", "error": error}
            elif outcome in ("expired", "canceled"):
                result = {"type": outcome}
            else:
                message, usage = self.answer(request["params"], None)
                with self._lock:
                    self.billed_batch.add(usage)
                result = {"type": "succeeded", "message": message}
            results.append({"custom_id": custom_id, "result": result})
        random.shuffle(results)
        batch.results = results

    def create_batch(self, body: Json) -> Json:
        with self._lock:
            self.batches_created += 1
            batch_id = f"msgbatch_{self.batches_created:04d}{random.getrandbits(32):08x}"
            batch = _Batch(batch_id, list(body["requests"]), datetime.now(UTC))
            self._batches[batch_id] = batch
        return self._batch_json(batch)

    def poll_batch(self, batch_id: str) -> Json | None:
        batch = self._batches.get(batch_id)
        if batch is None:
            return None
        batch.polls += 1
        if batch.results is None and batch.polls > self.batch_polls_to_end:
            self._finish(batch)
        return self._batch_json(batch)

    def batch_results(self, batch_id: str) -> str | None:
        batch = self._batches.get(batch_id)
        if batch is None or batch.results is None:
            return None
        return "".join(json.dumps(r) + "\n" for r in batch.results)

    def cancel_batch(self, batch_id: str) -> Json | None:
        batch = self._batches.get(batch_id)
        if batch is None:
            return None
        batch.canceled = True
        if batch.results is None:
            self._finish(batch)
        return self._batch_json(batch)

    def list_batches(self) -> Json:
        data = [self._batch_json(b) for b in reversed(self._batches.values())]
        first = data[0]["id"] if data else None
        last = data[-1]["id"] if data else None
        return {"data": data, "has_more": False, "first_id": first, "last_id": last}


def _model_output(
    examples: list[Example], max_tokens: int, body: Json, wants_tool: bool
) -> tuple[list[Json], str, int]:
    """Content blocks, stop reason and output tokens for `examples` under `max_tokens`."""
    kept, cut = fit(examples, max_tokens)
    if wants_tool:
        name = body["tools"][0]["name"]
        block = {
            "type": "tool_use",
            "id": f"toolu_{random.getrandbits(48):012x}",
            "name": name,
            "input": {"examples": [e.as_dict() for e in kept]},
        }
        if cut:
            return [block], "max_tokens", max_tokens
        return [block], "tool_use", tokens(serialized(kept))
    text = serialized(examples)
    if cut:
        return [{"type": "text", "text": text[: max_tokens * 4]}], "max_tokens", max_tokens
    return [{"type": "text", "text": text}], "end_turn", tokens(text)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeAnthropic

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _tracked(self, route: Callable[[], None]) -> None:
        """Runs `route`, counted as busy (for `wait_idle`)."""
        with self.fake._lock:
            self.fake._active += 1
        try:
            route()
        finally:
            with self.fake._lock:
                self.fake._active -= 1

    def do_POST(self) -> None:
        self._tracked(self._post)

    def do_GET(self) -> None:
        self._tracked(self._get)

    # -- plumbing ----------------------------------------------------------------------------

    def _body(self) -> Json | None:
        length = int(self.headers.get("content-length") or 0)
        if not length:
            return None
        parsed: Json = json.loads(self.rfile.read(length))
        return parsed

    def _authorized(self) -> bool:
        key = self.headers.get("x-api-key")
        bearer = self.headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            key = key or bearer[7:]
        return key == self.fake.api_key

    def _send(
        self, status: int, payload: Json | str, headers: dict[str, str] | None = None
    ) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        raw = data.encode()
        self.send_response(status)
        content_type = "application/binary" if isinstance(payload, str) else "application/json"
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(raw)))
        self.send_header("request-id", f"req_{random.getrandbits(48):012x}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, error: Error, headers: dict[str, str] | None = None) -> None:
        detail: Json = {"type": error.type, "message": error.message}
        if error.error_code:
            detail["details"] = {"error_code": error.error_code}
        extra = dict(headers or {})
        if error.retry_after is not None:
            extra["retry-after"] = f"{error.retry_after:g}"
        payload = {"type": "error", "error": detail, "request_id": "req_fake"}
        self._send(error.status, payload, extra)

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def _record(self, status: int, body: Json | None, shard: int | None = None) -> None:
        retry = int(self.headers.get("x-stainless-retry-count") or 0)
        self.fake._record(Recorded(self.command, self.path, status, shard, retry, body))

    # -- routes ------------------------------------------------------------------------------

    def _post(self) -> None:
        body = self._body()
        if not self._authorized():
            self._record(401, body)
            self._error(unauthorized())
            return
        assert body is not None
        if self.path == "/v1/messages":
            self._message(body)
        elif self.path == "/v1/messages/batches":
            with self.fake._lock:
                scripted = self.fake._create_script.popleft() if self.fake._create_script else None
            if isinstance(scripted, Reset):
                self._record(0, body)
                self._reset()
            elif isinstance(scripted, Error):
                self._record(scripted.status, body)
                self._error(scripted)
            else:
                self._record(200, body)
                self._send(200, self.fake.create_batch(body))
        elif self.path.startswith("/v1/messages/batches/") and self.path.endswith("/cancel"):
            batch = self.fake.cancel_batch(self.path.split("/")[-2])
            self._record(200 if batch else 404, body)
            self._reply_or_404(batch)
        else:
            self._record(404, body)
            self._error(Error(404, "not_found_error", self.path))

    def _get(self) -> None:
        if not self._authorized():
            self._record(401, None)
            self._error(unauthorized())
            return
        parts = self.path.split("?")[0].rstrip("/").split("/")
        if parts[-1] == "results":
            text = self.fake.batch_results(parts[-2])
            self._record(200 if text is not None else 404, None)
            if text is None:
                self._error(Error(404, "not_found_error", self.path))
            else:
                self._send(200, text)
        elif parts[-1] == "batches":
            self._record(200, None)
            self._send(200, self.fake.list_batches())
        else:
            batch = self.fake.poll_batch(parts[-1])
            self._record(200 if batch else 404, None)
            self._reply_or_404(batch)

    def _reply_or_404(self, payload: Json | None) -> None:
        if payload is None:
            self._error(Error(404, "not_found_error", self.path))
        else:
            self._send(200, payload)

    def _message(self, body: Json) -> None:
        fake = self.fake
        shard = shard_of(json.dumps(body.get("messages") or []))
        reply = fake._next_reply(shard)
        if isinstance(reply, Reset):
            self._record(0, body, shard)
            self._reset()
            return
        if isinstance(reply, Error):
            headers = fake._limiter.headers() if fake._limiter else {}
            self._record(reply.status, body, shard)
            self._error(reply, headers)
            return
        counted = fake._count_input(body)
        if fake._limiter is not None:
            wait = fake._limiter.admit(counted[0] + counted[1], int(body["max_tokens"]))
            if wait > 0:
                with fake._lock:
                    fake.client_caused_429 += 1
                self._record(429, body, shard)
                self._error(rate_limited(round(wait + 0.01, 3)), fake._limiter.headers())
                return
        if fake.latency_s:
            time.sleep(fake.latency_s)
        message, usage = fake.answer(body, reply, counted)
        with fake._lock:
            fake.billed.add(usage)
            fake.billed_at.append((time.monotonic(), usage["output_tokens"]))
        headers = {}
        if fake._limiter is not None:
            fake._limiter.settle_output(int(body["max_tokens"]), usage["output_tokens"])
            headers = fake._limiter.headers()
        self._record(200, body, shard)
        self._send(200, message, headers)
