"""What every stage gets and returns. A stage is `run(ctx) -> StageResult`: it reads its inputs
from `ctx.store` (rooted at the run's prefix), writes its outputs there, reports progress through
`ctx.progress`, and never touches Kubernetes. The local runner and the Ray entrypoints build the
context the same way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from distillrun.api.failures import FailureReason
from distillrun.api.resource import DistillRun
from distillrun.api.status import StageName
from distillrun.sql.schema import SchemaInfo
from distillrun.store import Store, StoreError, parse_jsonl


class ProgressSink(Protocol):
    """Where a stage reports live progress; the CLI draws it, tests record it."""

    def counts(
        self, stage: StageName, values: dict[str, float | int], total: int | None = None
    ) -> None:
        """Live numbers for a stage (e.g. generated/accepted, step/loss); `total` sizes a bar."""

    def note(self, stage: StageName, message: str) -> None:
        """A line worth showing (a skipped shard, a resumed checkpoint)."""


class SilentProgress:
    """A sink that drops everything (library use, Ray workers)."""

    def counts(
        self, stage: StageName, values: dict[str, float | int], total: int | None = None
    ) -> None:
        return None

    def note(self, stage: StageName, message: str) -> None:
        return None


@dataclass
class StageContext:
    """Inputs of a stage: the resolved run, its store and the parsed schema with seed rows."""

    run: DistillRun
    store: Store
    schema: SchemaInfo
    seed_sql: str | None
    progress: ProgressSink = field(default_factory=SilentProgress)


@dataclass(frozen=True)
class StageResult:
    """What a stage did: `summary` holds the numbers the runner prints and the status records."""

    stage: StageName
    summary: dict[str, Any]
    reused: bool = False


class StageFailed(Exception):
    """A stage that cannot go on; `reason` is a CamelCase condition reason. `summary`: the
    numbers the stage measured before it failed (evaluation's accuracy under a refusing gate),
    recorded in the status as a finished stage's would be."""

    def __init__(
        self,
        stage: StageName,
        reason: str,
        message: str,
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        self.stage = stage
        self.reason = reason
        self.summary = summary
        super().__init__(f"{stage} failed ({reason}): {message}")


def read_dataset(
    ctx: StageContext, key: str, stage: StageName, reason: str, missing: str
) -> tuple[bytes, list[dict[str, Any]]]:
    """A dataset a stage learns from or scores on: its bytes (the stage fingerprints them) and
    its records. A missing or empty file fails the stage with `reason` and `missing`; a corrupt
    one with InvalidDataset, naming the file and line."""
    if not ctx.store.exists(key):
        raise StageFailed(stage, reason, missing)
    data = ctx.store.get_bytes(key)
    try:
        records = parse_jsonl(data, ctx.store.url(key))
    except StoreError as exc:
        raise StageFailed(stage, FailureReason.INVALID_DATASET, str(exc)) from None
    if not records:
        raise StageFailed(stage, reason, missing)
    return data, records
