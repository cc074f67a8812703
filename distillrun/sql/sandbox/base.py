"""What every sandbox offers, whatever engine or process model is behind it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class ResultSet:
    """Rows a query returned, as plain Python values.

    Values are None, bool, int, float, str, bytes or tuples of those: engines' decimals,
    dates and intervals are converted (see `protocol.plain`) so results hash and compare the
    same whichever engine produced them. `truncated` means the query had more than the
    sandbox's `max_rows` rows and only the first `max_rows` are here. `ms` is the time the
    engine spent executing and fetching.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool
    ms: float


class Sandbox(ABC):
    """A read-only database holding the schema and seed rows, for running one query at a time.

    Not thread-safe: give each worker thread its own sandbox.
    """

    @abstractmethod
    def execute(self, sql: str) -> ResultSet:
        """Runs one query within the limits.

        Raises `QueryTimeout` past the statement timeout and `QueryFailed` when the engine
        refuses or fails the query; `SandboxError` only when the sandbox itself is unusable.
        """

    @abstractmethod
    def data_checksum(self) -> str:
        """sha256 over every object and every table's rows, in a stable order.

        Equal before and after a query means the query changed nothing in the database.
        """

    @abstractmethod
    def close(self) -> None:
        """Releases the engine and its files; safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
