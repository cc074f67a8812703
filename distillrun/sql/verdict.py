"""The verdict on one generated query: accepted, or rejected with a reason class.

Reason classes are the vocabulary of every count in a run's status (`counts.rejected`) and of
every line in `validate/rejected.jsonl`, so they are a closed enum; the free-text `message`
carries the detail (the checker's or the engine's own words, with a position when known).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Reason(StrEnum):
    """Why a query was not accepted."""

    PARSE = "parse"
    NOT_SELECT = "not_select"
    MULTIPLE_STATEMENTS = "multiple_statements"
    UNKNOWN_TABLE = "unknown_table"
    UNKNOWN_COLUMN = "unknown_column"
    FORBIDDEN = "forbidden"
    EXECUTION_ERROR = "execution_error"
    TIMEOUT = "timeout"
    EMPTY_RESULT = "empty_result"
    DUPLICATE = "duplicate"
    NEAR_DUPLICATE_QUESTION = "near_duplicate_question"


class Verdict(BaseModel):
    """Outcome of checking (and, given a sandbox, executing) one query.

    `ok` with `reason=None` means accepted. `rows`, `ms` and `result_hash` are the execution
    receipt: they are set only when the query actually ran, so a verdict without them proves
    nothing about execution.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ok: bool
    reason: Reason | None = None
    message: str = ""
    rows: int | None = None
    ms: float | None = None
    result_hash: str | None = None
