"""The SDK middleware that puts every HTTP attempt of a Messages call through the run's governor.

The SDK retries a failed call by itself (connection errors, 429, 5xx, 529) before our code sees
anything. Running inside its retry loop, once per attempt, this middleware makes those retries
obey the shared limits too: each attempt waits for room in the governor, is settled to the
tokens it really used, feeds the `anthropic-ratelimit-*` headers back, and turns a 429 or 529
into a pause for every worker. A spend-limit 429 is raised here as `BudgetExhausted`, which the
SDK does not retry (it would otherwise retry every 429).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from anthropic import APIRequest, APIResponse, CallNext, Middleware

from distillrun.teacher.anthropic.errors import spend_limit_code, spend_limit_stop
from distillrun.teacher.governor import (
    GovernorClient,
    ObservedLimits,
    Room,
    header_number,
    retry_after_s,
)

MESSAGES_PATH = "/v1/messages"
RATE_CHARS_PER_TOKEN = 3.0
"""Characters per input token assumed when reserving rate-limit room (a little generous, so
the reservation errs high; it is settled to the real count when the reply arrives)."""


def input_estimate(body: dict[str, Any]) -> int:
    """Input tokens a Messages request may count against the input limit, before it is sent."""
    text = json.dumps([body.get("system"), body.get("tools"), body.get("messages")])
    return math.ceil(len(text) / RATE_CHARS_PER_TOKEN)


def observed_limits(headers: Mapping[str, str]) -> ObservedLimits:
    """The `anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining}`
    headers, one axis each as the governor keeps them. Their `-reset` (an RFC 3339 time) is
    left out: the buckets' refill already models Anthropic's continuously refilled limits."""

    def room(axis: str) -> Room:
        return Room(
            limit=header_number(headers, f"anthropic-ratelimit-{axis}-limit"),
            remaining=header_number(headers, f"anthropic-ratelimit-{axis}-remaining"),
        )

    return ObservedLimits(
        requests=room("requests"),
        input_tokens=room("input-tokens"),
        output_tokens=room("output-tokens"),
    )


def _used_tokens(response: APIResponse[Any]) -> tuple[int, int]:
    """(input counted against the limit, output) of a successful reply; cache reads do not
    count toward the input limit."""
    usage = response.http_response.json().get("usage") or {}
    counted = int(usage.get("input_tokens") or 0) + int(
        usage.get("cache_creation_input_tokens") or 0
    )
    return counted, int(usage.get("output_tokens") or 0)


def _json_or_none(response: APIResponse[Any]) -> Any:
    try:
        return response.http_response.json()
    except ValueError:
        return None


class GovernorMiddleware(Middleware):
    """Routes Messages calls through `governor`; other endpoints pass straight through."""

    def __init__(self, governor: GovernorClient) -> None:
        self.governor = governor

    def handle(self, request: APIRequest, call_next: CallNext) -> APIResponse[Any]:
        body = request.json
        if request.method.lower() != "post" or request.url != MESSAGES_PATH:
            return call_next(request)
        assert isinstance(body, dict)
        reserved = (input_estimate(body), int(body["max_tokens"]))
        self.governor.acquire(*reserved)
        try:
            response = call_next(request)
        except Exception:
            # No reply (connection dropped, timeout): give the room back. Keeping it would
            # starve every worker during an outage; if the server did count the attempt, its
            # next 429 says so.
            self.governor.settle(reserved, (0, 0))
            raise
        http = response.http_response
        status = http.status_code
        self.governor.settle(reserved, _used_tokens(response) if status == 200 else (0, 0))
        self.governor.observe(observed_limits(http.headers))
        if status == 429:
            error = _json_or_none(response)
            code = spend_limit_code(error)
            if code is not None:
                assert isinstance(error, dict)
                raise spend_limit_stop(code, error["error"].get("message"))
            self.governor.rate_limited(retry_after_s(http.headers))
        elif status == 529:
            self.governor.overloaded(retry_after_s(http.headers))
        return response
