"""The DistillRun status: what a run has done, as the operator and `distillrun status` report it."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from distillrun.api.spec import WireModel


class Phase(StrEnum):
    PENDING = "Pending"
    GENERATING = "Generating"
    VALIDATING = "Validating"
    TRAINING = "Training"
    EVALUATING = "Evaluating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class StageName(StrEnum):
    GENERATE = "generate"
    VALIDATE = "validate"
    TRAIN = "train"
    EVALUATE = "evaluate"


STAGE_ORDER: tuple[StageName, ...] = (
    StageName.GENERATE,
    StageName.VALIDATE,
    StageName.TRAIN,
    StageName.EVALUATE,
)

SQL_STAGES = frozenset({StageName.GENERATE, StageName.VALIDATE, StageName.EVALUATE})
"""Stages that execute SQL: for a server dialect only their pods get the run's sandbox server.
Generate is one of them: its top-up rounds run the teacher's SQL in the sandbox to judge it."""

PHASE_OF_STAGE: dict[StageName, Phase] = {
    StageName.GENERATE: Phase.GENERATING,
    StageName.VALIDATE: Phase.VALIDATING,
    StageName.TRAIN: Phase.TRAINING,
    StageName.EVALUATE: Phase.EVALUATING,
}


class StageState(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Condition(WireModel):
    """A Kubernetes-style condition, keyed by type."""

    type: Annotated[
        str, Field(description="Ready, Succeeded, Failed, BudgetExhausted, SpecInvalid.")
    ]
    status: Annotated[str, Field(description="True, False or Unknown.")]
    reason: Annotated[str, Field(default="", description="CamelCase reason.")] = ""
    message: Annotated[str, Field(default="", description="Human-readable detail.")] = ""
    last_transition_time: Annotated[
        str | None, Field(default=None, description="RFC 3339 time of the last change.")
    ] = None
    observed_generation: Annotated[
        int | None, Field(default=None, description="Generation this condition is about.")
    ] = None


class StageStatus(WireModel):
    """One stage's progress."""

    ray_job: Annotated[str | None, Field(default=None, description="RayJob name.")] = None
    state: Annotated[StageState, Field(default=StageState.PENDING, description="Stage state.")] = (
        StageState.PENDING
    )
    start_time: Annotated[str | None, Field(default=None, description="RFC 3339.")] = None
    completion_time: Annotated[str | None, Field(default=None, description="RFC 3339.")] = None
    attempts: Annotated[int, Field(default=0, ge=0, description="Attempts so far.")] = 0
    message: Annotated[str, Field(default="", description="Last message.")] = ""


class Counts(WireModel):
    """Examples generated, accepted and rejected (by reason class)."""

    generated: Annotated[int, Field(default=0, ge=0, description="Examples written.")] = 0
    accepted: Annotated[int, Field(default=0, ge=0, description="Examples that passed.")] = 0
    rejected: Annotated[
        dict[str, int], Field(default_factory=dict, description="Rejections by reason class.")
    ]


class Cost(WireModel):
    """Teacher tokens and money spent."""

    input_tokens: Annotated[int, Field(default=0, ge=0, description="Input tokens.")] = 0
    output_tokens: Annotated[int, Field(default=0, ge=0, description="Output tokens.")] = 0
    cache_read_tokens: Annotated[int, Field(default=0, ge=0, description="Cache reads.")] = 0
    cache_write_tokens: Annotated[
        int, Field(default=0, ge=0, description="Cache writes (prompt tokens stored for reuse).")
    ] = 0
    usd: Annotated[float, Field(default=0.0, ge=0.0, description="US dollars.")] = 0.0


class EvaluationStatus(WireModel):
    """The accuracy the gate saw (also when it refused the student), beside what it is
    compared with."""

    execution_accuracy: Annotated[
        float | None,
        Field(default=None, description="Share of the scored holdout examples answered right."),
    ] = None
    base_execution_accuracy: Annotated[
        float | None,
        Field(
            default=None,
            description="Share of the scored holdout examples the base model answered right "
            "before training (evaluation.scoreBase).",
        ),
    ] = None
    gold_execution_accuracy: Annotated[
        float | None,
        Field(
            default=None,
            description="Share of the scored gold set examples answered right "
            "(evaluation.goldSet).",
        ),
    ] = None
    teacher_execution_accuracy: Annotated[
        float | None,
        Field(
            default=None,
            description="Share of the scored holdout examples the teacher answered right "
            "(evaluation.askTeacher).",
        ),
    ] = None
    examples: Annotated[int, Field(default=0, ge=0, description="Holdout examples.")] = 0
    scored: Annotated[
        int, Field(default=0, ge=0, description="Holdout examples counted in the accuracy.")
    ] = 0
    unjudgeable: Annotated[
        int,
        Field(
            default=0,
            ge=0,
            description="Examples counted apart: results too long to compare whole.",
        ),
    ] = 0
    gold_empty: Annotated[
        int,
        Field(
            default=0,
            ge=0,
            description="Examples counted apart: the gold result is empty (strict comparison).",
        ),
    ] = 0

    @classmethod
    def of_summary(cls, summary: Mapping[str, Any]) -> EvaluationStatus:
        """The status the evaluate stage's summary reports (stored by the local runner and the
        operator alike)."""

        def share(name: str) -> float | None:
            value = summary.get(name)
            return None if value is None else float(value)

        return cls(
            execution_accuracy=share("execution_accuracy"),
            base_execution_accuracy=share("base_execution_accuracy"),
            gold_execution_accuracy=share("gold_execution_accuracy"),
            teacher_execution_accuracy=share("teacher_execution_accuracy"),
            **{
                name: int(summary.get(name) or 0)
                for name in ("examples", "scored", "unjudgeable", "gold_empty")
            },
        )


class ArtifactsStatus(WireModel):
    """Where the run's outputs are."""

    dataset: Annotated[str | None, Field(default=None, description="Dataset URI.")] = None
    adapter: Annotated[str | None, Field(default=None, description="Adapter URI.")] = None
    report: Annotated[str | None, Field(default=None, description="Report URI.")] = None


class DistillRunStatus(WireModel):
    """What a DistillRun has done."""

    phase: Annotated[Phase, Field(default=Phase.PENDING, description="Where the run is.")] = (
        Phase.PENDING
    )
    observed_generation: Annotated[
        int | None, Field(default=None, description="Spec generation last acted on.")
    ] = None
    conditions: Annotated[
        list[Condition],
        Field(
            default_factory=list,
            description="Conditions keyed by type.",
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        ),
    ]
    stages: Annotated[
        dict[str, StageStatus], Field(default_factory=dict, description="Per-stage progress.")
    ]
    counts: Annotated[Counts, Field(default_factory=Counts, description="Example counts.")]
    cost: Annotated[Cost, Field(default_factory=Cost, description="Teacher spend.")]
    evaluation: Annotated[
        EvaluationStatus, Field(default_factory=EvaluationStatus, description="Accuracy.")
    ]
    artifacts: Annotated[
        ArtifactsStatus, Field(default_factory=ArtifactsStatus, description="Outputs.")
    ]
