"""Every Anthropic API failure mapped, in one place, to what the generator does about it.

Two outcomes only. A `TeacherStop` ends the stage at once with a named reason, because retrying
cannot help and may cost money: a refused key (401/403), the account's spend limit (a 429 whose
details say `enforced_spend_limit_reached`, or a 402), a request the API will never accept
(400/404/413/422). A `Transient` failure is retried (after the SDK's own retries) with a backoff
that honours the server's `retry-after`: rate limits, overload (529), server errors, timeouts,
dropped connections.

Messages never include the API key: they are built from the status and the error body only.
"""

from __future__ import annotations

from typing import Any

import anthropic

from distillrun.teacher.errors import (
    BudgetExhausted,
    TeacherAuthFailed,
    TeacherFailed,
    TeacherStop,
    Transient,
    by_status,
)
from distillrun.teacher.governor import retry_after_s

SPEND_LIMIT_CODES = frozenset({"enforced_spend_limit_reached", "contract_spend_limit_reached"})
"""`error.details.error_code` values of a 429 that means "no more money", not "slow down"."""


def spend_limit_code(body: Any) -> str | None:
    """The spend-limit code in an error body, if it is one."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    details = error.get("details") if isinstance(error, dict) else None
    code = details.get("error_code") if isinstance(details, dict) else None
    return code if code in SPEND_LIMIT_CODES else None


def spend_limit_stop(code: str, api_message: str | None) -> BudgetExhausted:
    return BudgetExhausted(
        f"the Anthropic account's spend limit was reached ({code}): {api_message or ''}".rstrip(
            ": "
        )
    )


def _describe(exc: anthropic.APIStatusError) -> str:
    kind = exc.type or "error"
    text = exc.api_message or exc.message
    request = f", request {exc.request_id}" if exc.request_id else ""
    return f"{exc.status_code} {kind}{request}: {text}"


def classify(exc: BaseException, key_variable: str) -> TeacherStop | Transient:
    """What to do about `exc`, raised by the SDK (or by our middleware inside it)."""
    if isinstance(exc, TeacherStop):
        return exc
    if isinstance(exc, anthropic.APIConnectionError):  # includes timeouts
        return Transient(f"connection failed: {exc.message}")
    if not isinstance(exc, anthropic.APIStatusError):
        return TeacherFailed(f"unexpected {type(exc).__name__} from the Anthropic SDK: {exc}")
    description = _describe(exc)
    code = spend_limit_code(exc.body) if isinstance(exc, anthropic.RateLimitError) else None
    if code is not None:
        return spend_limit_stop(code, exc.api_message)
    if isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
        return TeacherAuthFailed(
            f"the API key in {key_variable} was refused ({description}); set a valid key"
        )
    if isinstance(exc, anthropic.PaymentRequiredError):
        return BudgetExhausted(f"the Anthropic account cannot be billed ({description})")
    return by_status(
        exc.status_code,
        description,
        retry_after_s(exc.response.headers),
        f"the Anthropic API rejected the request ({description})",
    )
