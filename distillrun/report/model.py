"""What a run report says, as plain typed values.

`read.read_run` fills these from a run's artifacts; `page` turns them into HTML and `terminal`
into tables. Keeping the numbers here, apart from both renderings, is what lets the page and
`distillrun status` show the same numbers, and lets tests compare them with the artifacts.

A section is None when the run has not produced its data (a stage that did not run, a run still
in progress): the renderings then leave the section out rather than show empty numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from one RFC 3339 time to another; None when either is missing or malformed."""
    if not start or not end:
        return None
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None


@dataclass(frozen=True)
class StageRow:
    """One stage as status.json records it; `seconds` is None until the stage has finished."""

    name: str
    state: str
    start: str | None
    end: str | None
    seconds: float | None
    attempts: int
    message: str


@dataclass(frozen=True)
class Header:
    """Who the run is, what it asked for and where it stands."""

    name: str
    namespace: str
    uri: str
    phase: str
    dialect: str | None
    teacher: str | None
    """Provider and model, e.g. `anthropic claude-sonnet-5-5`."""
    teacher_mode: str | None
    student: str | None
    method: str | None
    hardware_profile: str | None
    workers: int | None
    gpus_per_worker: int | None
    target_examples: int | None
    budget_usd: float | None
    min_accuracy: float | None
    start: str | None
    end: str | None
    stages: tuple[StageRow, ...]
    failure: str | None
    """The message of the `Failed` condition when the run failed."""
    report: str | None
    """Where the run's report page is, once one has been built."""


@dataclass(frozen=True)
class Example:
    """A generated example shown to explain a rejection: what was asked, written and said."""

    id: str
    question: str
    sql: str
    message: str


@dataclass(frozen=True)
class ReasonGroup:
    """All examples dropped for one reason class, with a few to look at."""

    reason: str
    count: int
    examples: tuple[Example, ...]


@dataclass(frozen=True)
class ShardRow:
    """One committed teacher shard: what it wrote and, once validated, what survived."""

    key: str
    generated: int
    accepted: int | None
    rejected: int | None


@dataclass(frozen=True)
class Uses:
    """How many accepted examples use one schema item (table, column, join, construct)."""

    name: str
    count: int


@dataclass(frozen=True)
class Coverage:
    """Which parts of the schema and of SQL the accepted examples exercise.

    The `unused_*` lists need the schema's DDL; without it (`schema_note` says why) only what
    is used can be told, and columns cannot be told at all, since an unqualified column in a
    join cannot be placed in its table without the schema."""

    examples: int
    tables: tuple[Uses, ...]
    constructs: tuple[Uses, ...]
    unused_constructs: tuple[str, ...]
    joins: tuple[Uses, ...]
    columns: tuple[Uses, ...] | None
    unused_tables: tuple[str, ...] | None
    unused_columns: tuple[str, ...] | None
    unused_joins: tuple[str, ...] | None
    schema_columns: int | None
    unparsed: int
    """Accepted SQL the analysis could not parse (counted, never guessed at)."""
    unplaced: int
    """Parsed SQL whose columns could not be placed in tables (not in columns or joins)."""
    schema_note: str | None


@dataclass(frozen=True)
class Data:
    """What the teacher wrote and what validation made of it."""

    shards_committed: int
    shards_planned: int | None
    generated: int
    teacher_dropped: tuple[ReasonGroup, ...]
    """Drafts the teacher's reader dropped before validation (truncated, duplicate_sql, ...)."""
    validated: bool
    accepted: int | None
    rejected: tuple[ReasonGroup, ...]
    train: int | None
    holdout: int | None
    shards: tuple[ShardRow, ...]
    coverage: Coverage | None
    warnings: tuple[str, ...] = ()
    """What validation found that weakens any score on this data (`jobs.empty_results`)."""

    @property
    def rejected_total(self) -> int:
        return sum(group.count for group in self.rejected)

    @property
    def acceptance_rate(self) -> float | None:
        if self.accepted is None or not self.generated:
            return None
        return self.accepted / self.generated


@dataclass(frozen=True)
class StageSpend:
    """Tokens and dollars one stage spent."""

    stage: str
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    usd: float

    @classmethod
    def summed(cls, stage: str, parts: Sequence[TokenCounts], usd: float) -> StageSpend:
        """`stage`'s spend: the requests and tokens of `parts` added up, and `usd` (summed by
        the caller, which knows whether its parts' dollars add up exactly)."""
        return cls(
            stage=stage,
            requests=sum(p.requests for p in parts),
            input_tokens=sum(p.input_tokens for p in parts),
            output_tokens=sum(p.output_tokens for p in parts),
            cache_read_tokens=sum(p.cache_read_tokens for p in parts),
            cache_write_tokens=sum(p.cache_write_tokens for p in parts),
            usd=usd,
        )


class TokenCounts(Protocol):
    """What a spend is added up from: a call's usage or a stage's spend."""

    @property
    def requests(self) -> int: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...


@dataclass(frozen=True)
class Money:
    """Spend by stage and in total, against the budget."""

    by_stage: tuple[StageSpend, ...]
    mode: str | None
    """How the teacher was called (realtime or batch), when the stage says."""
    budget_usd: float | None
    accepted: int | None
    cumulative_usd: tuple[float, ...]
    """Running total after each committed shard, in plan order (for the spend plot)."""

    @property
    def total(self) -> StageSpend:
        return StageSpend.summed("total", self.by_stage, sum(r.usd for r in self.by_stage))

    @property
    def usd_per_accepted(self) -> float | None:
        if not self.accepted:
            return None
        return self.total.usd / self.accepted


@dataclass(frozen=True)
class LossPoint:
    step: int
    loss: float
    learning_rate: float | None


@dataclass(frozen=True)
class SamplePoint:
    """Execution accuracy on a sample of the holdout, measured during training."""

    step: int
    execution_accuracy: float
    examples: int


@dataclass(frozen=True)
class Training:
    """What train/metrics.json says about the fine-tune.

    `tokens_per_second` and `gpu_memory_peak_bytes` are measurements the train stage may
    record under those names; the memory the plan *estimated* is kept apart from them."""

    steps: int
    epochs: int | None
    examples: int | None
    examples_truncated: int | None
    runtime_s: float | None
    final_loss: float | None
    train_loss: float | None
    resumed_from_step: int | None
    history: tuple[LossPoint, ...]
    sample_accuracy: tuple[SamplePoint, ...]
    base_model: str | None
    method: str | None
    hardware_profile: str | None
    plan: tuple[tuple[str, str], ...]
    """The training plan the profile produced, as labelled facts (precision, batch, ...)."""
    plan_notes: tuple[str, ...]
    memory_estimate_bytes: int | None
    memory_budget_bytes: int | None
    tokens_per_second: float | None
    gpu_memory_peak_bytes: int | None

    @property
    def steps_per_second(self) -> float | None:
        if not self.runtime_s or not self.steps:
            return None
        return self.steps / self.runtime_s


@dataclass(frozen=True)
class Accuracy:
    """Correct out of scored, for one slice of the holdout."""

    name: str
    correct: int
    scored: int

    @property
    def rate(self) -> float:
        return self.correct / self.scored if self.scored else 0.0


@dataclass(frozen=True)
class Prediction:
    """One wrong answer beside the gold SQL; results only when the evaluate stage stored them."""

    id: str
    question: str
    gold_sql: str
    predicted_sql: str | None
    answer: str
    outcome: str
    message: str
    gold_result: str | None
    predicted_result: str | None


@dataclass(frozen=True)
class Scores:
    """Execution accuracy on one evaluation set (the holdout, or the user's gold set)."""

    name: str
    execution_accuracy: float
    examples: int
    scored: int
    """Examples counted in the accuracy: not those whose gold SQL failed, whose gold result is
    empty (strict comparison) or that are unjudgeable (see `sql.pairs`)."""
    correct: int
    unjudgeable: int
    gold_empty: int
    comparison: str
    """The comparison rules the scores follow: strict or spider."""
    warnings: tuple[str, ...]
    """What makes the scores weaker evidence than they look (empty seed data, ...)."""
    outcomes: tuple[Uses, ...]
    by_construct: tuple[Accuracy, ...]
    by_table: tuple[Accuracy, ...]
    wrong: tuple[Prediction, ...]
    """A sample of the wrong predictions, in file order."""
    wrong_total: int


@dataclass(frozen=True)
class Contender:
    """Another model scored on the student's holdout and gold questions, the same way: the base
    before training, or the teacher."""

    name: str
    model: str | None
    holdout: Accuracy
    gold_set: Accuracy | None
    usd: float | None = None
    """What asking it cost (the teacher), when it cost anything."""


@dataclass(frozen=True)
class Quality:
    """How well the student answers, against the accuracy gate and beside the others."""

    holdout: Scores
    gold_set: Scores | None
    threshold: float | None
    gold_set_note: str | None
    """Why a gold set named in the spec has no scores, when it has none."""
    contenders: tuple[Contender, ...] = ()

    def points_over(self, contender: Contender) -> float:
        """The student's holdout accuracy minus `contender`'s, in percentage points."""
        student = Accuracy("student", self.holdout.correct, self.holdout.scored)
        return 100 * (student.rate - contender.holdout.rate)

    @property
    def passed(self) -> bool | None:
        if self.threshold is None:
            return None
        return self.holdout.execution_accuracy >= self.threshold


@dataclass(frozen=True)
class RunReport:
    """Everything the page and the status table show about one run."""

    header: Header
    data: Data | None
    money: Money | None
    training: Training | None
    quality: Quality | None
    problems: tuple[str, ...] = field(default=())
    """Artifacts that exist but could not be read, each with the reason."""
