"""The DistillRun spec: the one source of truth for what a run asks for.

camelCase on the wire, snake_case in Python. Every field carries a description, which also ends
up in the CRD's OpenAPI schema (generated from these models by `distillrun.api.crd`).
Cross-field rules live here as validators whose messages name the field path, so the CLI, the
local runner and the operator report a bad manifest the same way.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """Base of every contract model: camelCase aliases, unknown fields refused. Enum fields
    hold enum members (strings on the wire only: `model_dump(mode="json")`)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Dialect(StrEnum):
    POSTGRES = "postgres"
    MYSQL = "mysql"
    SQLITE = "sqlite"
    DUCKDB = "duckdb"


class TeacherProvider(StrEnum):
    ANTHROPIC = "anthropic"
    OPENAI_COMPATIBLE = "openai-compatible"
    SYNTHETIC = "synthetic"


class TeacherMode(StrEnum):
    REALTIME = "realtime"
    BATCH = "batch"
    AUTO = "auto"


class TrainingMethod(StrEnum):
    LORA = "lora"
    QLORA = "qlora"
    FULL = "full"


class HardwareProfileName(StrEnum):
    """The profiles distillrun ships (`distillrun/api/profiles/`)."""

    A100_80GB = "a100-80gb"
    A100_40GB = "a100-40gb"
    H100_80GB = "h100-80gb"
    RTX4090 = "rtx4090"
    CPU = "cpu"


CUSTOM_PROFILE_PREFIX = "custom-"
"""Team-defined hardware profiles are named `custom-<name>`; they live in the directory that
`DISTILLRUN_PROFILES_DIR` names, which the contract cannot see, so their existence is
checked when training is planned rather than here."""

HARDWARE_PROFILE_PATTERN = (
    "^(" + "|".join(p.value for p in HardwareProfileName) + ")$"
    "|^" + CUSTOM_PROFILE_PREFIX + "[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
)


class DedupMode(StrEnum):
    NONE = "none"
    EXACT = "exact"
    NORMALIZED = "normalized"


class ComparisonMode(StrEnum):
    """How a prediction's result is compared with the gold result (see `sql.compare` and
    `sql.spider`)."""

    STRICT = "strict"
    SPIDER = "spider"


class SecretKeyRef(WireModel):
    """A key inside a Kubernetes Secret; secrets are only ever referenced, never inlined."""

    name: Annotated[str, Field(min_length=1, description="Name of the Secret.")]
    key: Annotated[str, Field(min_length=1, description="Key inside the Secret.")]


class ConfigMapKeyRef(WireModel):
    """A key inside a Kubernetes ConfigMap."""

    name: Annotated[str, Field(min_length=1, description="Name of the ConfigMap.")]
    key: Annotated[str, Field(min_length=1, description="Key inside the ConfigMap.")]


class SqlSource(WireModel):
    """SQL text given inline, by URI (file path, file://, s3://) or by ConfigMap key.

    Exactly one of the three must be set. A relative path is resolved against the manifest's
    directory by the local runner.
    """

    ddl: Annotated[str | None, Field(default=None, description="The SQL text itself.")] = None
    uri: Annotated[
        str | None,
        Field(default=None, description="Where the SQL text lives: a path, file:// or s3:// URI."),
    ] = None
    config_map_ref: Annotated[
        ConfigMapKeyRef | None,
        Field(default=None, description="A ConfigMap key holding the SQL text (cluster runs)."),
    ] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SqlSource:
        given = [n for n in ("ddl", "uri", "config_map_ref") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of ddl, uri or configMapRef")
        if self.ddl is not None and not self.ddl.strip():
            raise ValueError("ddl is empty")
        return self


class SandboxSpec(WireModel):
    """Limits for executing generated SQL."""

    statement_timeout_ms: Annotated[
        int, Field(default=2000, ge=10, le=600_000, description="Per-query time limit in ms.")
    ] = 2000
    max_rows: Annotated[
        int, Field(default=1000, ge=1, le=1_000_000, description="Rows fetched per query at most.")
    ] = 1000
    resources: Annotated[
        dict[str, str],
        Field(
            default_factory=dict, description="Pod resources for a sandbox server (cpu, memory)."
        ),
    ]


class DatabaseSpec(WireModel):
    """The target database: its dialect, its schema and optional seed rows."""

    dialect: Annotated[Dialect, Field(description="SQL dialect the student must write.")]
    schema_source: Annotated[
        SqlSource,
        Field(alias="schema", description="CREATE TABLE statements of the target schema."),
    ]
    seed_data: Annotated[
        SqlSource | None,
        Field(default=None, description="INSERT statements so query results mean something."),
    ] = None
    sandbox: Annotated[
        SandboxSpec, Field(default_factory=SandboxSpec, description="Execution limits.")
    ]


class RateLimits(WireModel):
    """The teacher account's limits, per minute; the generator stays under all three."""

    requests_per_minute: Annotated[int, Field(default=50, ge=1, description="Requests/min.")] = 50
    input_tokens_per_minute: Annotated[
        int, Field(default=30_000, ge=1, description="Input tokens/min.")
    ] = 30_000
    output_tokens_per_minute: Annotated[
        int, Field(default=8_000, ge=1, description="Output tokens/min.")
    ] = 8_000


class Budget(WireModel):
    """A hard cap on teacher spend."""

    max_usd: Annotated[
        float, Field(default=25.0, gt=0, alias="maxUSD", description="Hard cap in US dollars.")
    ] = 25.0


class TeacherSpec(WireModel):
    """The model that writes question/SQL/explanation examples."""

    provider: Annotated[
        TeacherProvider,
        Field(default=TeacherProvider.ANTHROPIC, description="Who writes the examples."),
    ] = TeacherProvider.ANTHROPIC
    model: Annotated[
        str, Field(default="claude-sonnet-5-5", min_length=1, description="Teacher model name.")
    ] = "claude-sonnet-5-5"
    base_url: Annotated[
        str | None,
        Field(
            default=None,
            description="API endpoint: required for openai-compatible servers; "
            "for anthropic, a gateway in front of the Messages API.",
        ),
    ] = None
    api_key_secret_ref: Annotated[
        SecretKeyRef | None,
        Field(default=None, description="Secret holding the API key (never inline)."),
    ] = None
    mode: Annotated[
        TeacherMode,
        Field(default=TeacherMode.AUTO, description="realtime, batch (cheaper) or auto."),
    ] = TeacherMode.AUTO
    target_examples: Annotated[
        int,
        Field(default=1000, ge=1, le=1_000_000, description="Accepted examples wanted."),
    ] = 1000
    examples_per_shard: Annotated[
        int,
        Field(
            default=20, ge=1, le=500, description="Examples asked for per shard (unit of resume)."
        ),
    ] = 20
    max_top_up_rounds: Annotated[
        int,
        Field(
            default=5,
            ge=0,
            le=100,
            description="Extra rounds of shards, focused on under-covered tables and SQL "
            "constructs, while fewer than targetExamples are accepted (0: none).",
        ),
    ] = 5
    deadline_hours: Annotated[
        float | None,
        Field(
            default=None,
            gt=0,
            le=720,
            description="How long generation may take. With mode auto: the Batches API (about "
            "half the price, results within 24 h) when this is at least 24, realtime when it is "
            "shorter; unset, batch when realtime would take over 30 minutes at the rate limits.",
        ),
    ] = None
    seed: Annotated[int, Field(default=0, ge=0, description="Seed for deterministic shards.")] = 0
    temperature: Annotated[
        float, Field(default=1.0, ge=0.0, le=2.0, description="Sampling temperature.")
    ] = 1.0
    request_timeout_seconds: Annotated[
        float,
        Field(
            default=600.0,
            ge=1,
            le=3600,
            description="How long one teacher request may take before it counts as failed and "
            "is tried again (long answers at a slow endpoint need minutes).",
        ),
    ] = 600.0
    max_attempts: Annotated[
        int,
        Field(
            default=5,
            ge=1,
            le=50,
            description="Tries of one request (timeouts, overload, server errors) before the "
            "generate stage stops with TeacherFailed; rate limits wait as the server says.",
        ),
    ] = 5
    rate_limits: Annotated[
        RateLimits, Field(default_factory=RateLimits, description="Account limits per minute.")
    ]
    budget: Annotated[Budget, Field(default_factory=Budget, description="Spend cap.")]
    reasoning: Annotated[
        bool,
        Field(default=True, description="Keep the teacher's explanation in the training target."),
    ] = True
    fallback_to_synthetic: Annotated[
        bool,
        Field(
            default=False,
            description="When the provider needs an API key and none is set, write the examples "
            "with the offline synthetic teacher instead of refusing to start (shown in the run "
            "summary and report). Off by default: a named teacher is never replaced silently.",
        ),
    ] = False

    @model_validator(mode="before")
    @classmethod
    def _no_inline_key(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for inline in ("apiKey", "api_key"):
                if inline in data:
                    raise ValueError(
                        f"{inline} must not be set inline: put the key in a Secret and "
                        "reference it with apiKeySecretRef {name, key}"
                    )
        return data

    @model_validator(mode="after")
    def _provider_fields(self) -> TeacherSpec:
        if self.provider == TeacherProvider.OPENAI_COMPATIBLE and not self.base_url:
            raise ValueError("baseUrl is required when provider is openai-compatible")
        return self


class ValidationSpec(WireModel):
    """How generated examples are checked and split."""

    require_execution: Annotated[
        bool, Field(default=True, description="Execute every query in the sandbox.")
    ] = True
    dedup: Annotated[
        DedupMode,
        Field(
            default=DedupMode.NORMALIZED,
            description="Drop duplicate SQL (exact or normalized; either also drops "
            "near-duplicate questions) or keep everything (none).",
        ),
    ] = DedupMode.NORMALIZED
    reject_empty_results: Annotated[
        bool, Field(default=False, description="Reject queries that return no rows.")
    ] = False
    holdout_fraction: Annotated[
        float,
        Field(default=0.1, gt=0.0, lt=1.0, description="Share of accepted examples held out."),
    ] = 0.1


class LoraSpec(WireModel):
    """LoRA adapter shape."""

    r: Annotated[int, Field(default=16, ge=1, le=1024, description="Adapter rank.")] = 16
    alpha: Annotated[int, Field(default=32, ge=1, description="LoRA alpha (scale = alpha/r).")] = 32
    dropout: Annotated[
        float, Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on adapter inputs.")
    ] = 0.05
    target_modules: Annotated[
        list[str],
        Field(
            default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
            min_length=1,
            description="Module names that get adapters.",
        ),
    ]


class StudentSpec(WireModel):
    """The small model that learns the schema, and how it is trained."""

    model: Annotated[
        str,
        Field(
            default="Qwen/Qwen3-0.6B",
            min_length=1,
            description="Hub id, local path, s3:// URI, or a builtin student built locally: "
            "builtin:sql-qwen3 (a small base pretrained once on SQL over bundled schemas) or "
            "builtin:tiny-qwen3 (random weights, for smoke tests).",
        ),
    ] = "Qwen/Qwen3-0.6B"
    method: Annotated[
        TrainingMethod, Field(default=TrainingMethod.LORA, description="lora, qlora or full.")
    ] = TrainingMethod.LORA
    lora: Annotated[LoraSpec, Field(default_factory=LoraSpec, description="Adapter shape.")]
    hardware_profile: Annotated[
        str,
        Field(
            default=HardwareProfileName.A100_80GB.value,
            description="Picks precision, DeepSpeed ZeRO stage, batch, sequence limit, NCCL "
            "env and the pods' GPU requests: a100-80gb, a100-40gb, h100-80gb, rtx4090, cpu, or "
            "custom-<name> for a team profile (DISTILLRUN_PROFILES_DIR).",
            json_schema_extra={"pattern": HARDWARE_PROFILE_PATTERN},
        ),
    ] = HardwareProfileName.A100_80GB.value
    gpus_per_worker: Annotated[
        int,
        Field(
            default=1,
            ge=0,
            le=16,
            description="GPUs each; left out: 0 with hardwareProfile cpu, else 1.",
            # no default in the CRD: the apiserver would write 1 into a cpu run and refuse it
            json_schema_extra=lambda schema: schema.pop("default", None),
        ),
    ] = 1
    workers: Annotated[int, Field(default=1, ge=1, le=512, description="Training workers.")] = 1
    epochs: Annotated[int, Field(default=3, ge=1, le=100, description="Passes over the data.")] = 3
    max_steps: Annotated[
        int | None,
        Field(default=None, ge=1, description="Stop after this many optimizer steps."),
    ] = None
    learning_rate: Annotated[
        float, Field(default=2e-4, gt=0.0, lt=1.0, description="Peak learning rate.")
    ] = 2e-4
    micro_batch_size: Annotated[
        int | None,
        Field(
            default=None,
            ge=1,
            le=1024,
            description="Examples per device per step; unset: the hardware profile's.",
        ),
    ] = None
    gradient_accumulation_steps: Annotated[
        int | None,
        Field(
            default=None,
            ge=1,
            le=1024,
            description="Micro batches per optimizer step; unset: the hardware profile's.",
        ),
    ] = None
    gradient_checkpointing: Annotated[
        bool | None,
        Field(
            default=None,
            description="Recompute activations to save memory; unset: the profile decides "
            "(and the memory pre-flight may turn it on).",
        ),
    ] = None
    max_seq_length: Annotated[
        int, Field(default=512, ge=32, le=131_072, description="Tokens per example at most.")
    ] = 512
    schema_in_prompt: Annotated[
        bool,
        Field(
            default=True,
            description="Put the schema's DDL in every prompt, in training and in evaluation "
            "alike. false: a student specialised to this one schema, which knows it from its "
            "training examples and gets much shorter prompts (cheaper to train and to run).",
        ),
    ] = True
    checkpoint_every_steps: Annotated[
        int,
        Field(
            default=50,
            ge=1,
            description="Save a resumable checkpoint to the store every N optimizer steps; a "
            "restarted training loses at most this many.",
        ),
    ] = 50
    merge_weights: Annotated[
        bool,
        Field(
            default=False,
            description="Also publish the base model with the adapter merged in (lora only).",
        ),
    ] = False

    @model_validator(mode="before")
    @classmethod
    def _gpus_follow_profile(cls, data: Any) -> Any:
        """`gpusPerWorker` left out means 0 on the cpu profile (1, the default, elsewhere)."""
        if not isinstance(data, dict) or "gpusPerWorker" in data or "gpus_per_worker" in data:
            return data
        profile = data.get("hardwareProfile", data.get("hardware_profile"))
        if profile == HardwareProfileName.CPU:
            return {**data, "gpusPerWorker": 0}
        return data

    @field_validator("hardware_profile")
    @classmethod
    def _known_profile_name(cls, value: str) -> str:
        if not re.fullmatch(HARDWARE_PROFILE_PATTERN, value):
            builtin = ", ".join(p.value for p in HardwareProfileName)
            raise ValueError(
                f"unknown hardware profile {value!r}: use one of {builtin}, or "
                f"{CUSTOM_PROFILE_PREFIX}<name> for a profile your team defines"
            )
        return value

    @model_validator(mode="after")
    def _hardware_fits_method(self) -> StudentSpec:
        if self.hardware_profile == HardwareProfileName.CPU:
            if self.method == TrainingMethod.QLORA:
                raise ValueError(
                    "method qlora needs a GPU (4-bit bitsandbytes); "
                    "hardwareProfile cpu can run lora or full"
                )
            if self.gpus_per_worker != 0:
                raise ValueError("gpusPerWorker must be 0 when hardwareProfile is cpu")
        elif self.gpus_per_worker == 0 and not self.hardware_profile.startswith(
            CUSTOM_PROFILE_PREFIX
        ):
            raise ValueError(
                f"gpusPerWorker must be at least 1 for hardwareProfile {self.hardware_profile}"
            )
        if self.merge_weights and self.method == TrainingMethod.FULL:
            raise ValueError("mergeWeights applies to lora and qlora; full fine-tunes are whole")
        return self


class GoldSet(WireModel):
    """A user-written set of question/SQL pairs, scored like the holdout and reported apart
    from it (the gate is the holdout's)."""

    uri: Annotated[
        str,
        Field(
            min_length=1,
            description="JSONL with question and sql fields: an s3:// or file:// URI or a path.",
        ),
    ]


class TrainingEvaluationSpec(WireModel):
    """Execution accuracy on a sample of the holdout while training runs."""

    every_steps: Annotated[
        int,
        Field(default=100, ge=0, description="Score the sample every N optimizer steps; 0: never."),
    ] = 100
    examples: Annotated[
        int, Field(default=32, ge=1, le=10_000, description="Holdout examples in the sample.")
    ] = 32


class ComparisonSpec(WireModel):
    """How predicted and gold results are compared when scoring."""

    mode: Annotated[
        ComparisonMode,
        Field(
            default=ComparisonMode.STRICT,
            description="strict: distillrun's rules (numbers equal within 1e-9 relative for "
            "floats only; examples whose gold result is empty are scored apart); spider: the "
            "official Spider test-suite evaluator's rules (DISTINCT removed, no tolerance, two "
            "empty results equal), for comparing with published numbers.",
        ),
    ] = ComparisonMode.STRICT
    keep_distinct: Annotated[
        bool,
        Field(
            default=False,
            description="spider mode only: keep DISTINCT (the evaluator's --keep_distinct).",
        ),
    ] = False
    max_rows: Annotated[
        int,
        Field(
            default=100_000,
            ge=1,
            le=1_000_000,
            description="Rows fetched per query to compare results whole; a pair whose results "
            "both exceed it (with equal row counts) is unjudgeable, never correct.",
        ),
    ] = 100_000

    @model_validator(mode="after")
    def _distinct_needs_spider(self) -> ComparisonSpec:
        if self.keep_distinct and self.mode != ComparisonMode.SPIDER:
            raise ValueError("keepDistinct applies to mode spider only (strict keeps DISTINCT)")
        return self


class EvaluationSpec(WireModel):
    """The accuracy gate before an adapter is published."""

    min_execution_accuracy: Annotated[
        float,
        Field(default=0.7, ge=0.0, le=1.0, description="Publish only at or above this accuracy."),
    ] = 0.7
    max_new_tokens: Annotated[
        int, Field(default=256, ge=8, le=8192, description="Tokens generated per prediction.")
    ] = 256
    during_training: Annotated[
        TrainingEvaluationSpec,
        Field(
            default_factory=TrainingEvaluationSpec,
            description="Accuracy on a holdout sample while training.",
        ),
    ]
    gold_set: Annotated[
        GoldSet | None, Field(default=None, description="Optional user gold set.")
    ] = None
    score_base: Annotated[
        bool,
        Field(
            default=True,
            description="Also score the base model, before training, on the same holdout and "
            "gold set: what distillation bought, in points.",
        ),
    ] = True
    ask_teacher: Annotated[
        bool,
        Field(
            default=True,
            description="For an LLM teacher: also ask it the holdout and gold questions and "
            "score its SQL the same way (within spec.teacher.budget; the synthetic teacher is "
            "never asked).",
        ),
    ] = True
    comparison: Annotated[
        ComparisonSpec,
        Field(
            default_factory=ComparisonSpec,
            description="How results are compared: strict (default) or spider.",
        ),
    ]


class ArtifactsSpec(WireModel):
    """Where the run's artifacts go."""

    uri: Annotated[
        str | None,
        Field(default=None, description="file:// or s3:// prefix; the CLI's --store overrides it."),
    ] = None
    credentials_secret_ref: Annotated[
        SecretKeyRef | None,
        Field(default=None, description="Secret with S3 credentials (cluster runs)."),
    ] = None

    @model_validator(mode="after")
    def _known_scheme(self) -> ArtifactsSpec:
        if self.uri is not None and not self.uri.startswith(("file://", "s3://")):
            raise ValueError("uri must start with file:// or s3://")
        return self


class Toleration(WireModel):
    """A Kubernetes toleration, for GPU node taints."""

    key: Annotated[str | None, Field(default=None, description="Taint key.")] = None
    operator: Annotated[
        Literal["Exists", "Equal"] | None, Field(default=None, description="Exists or Equal.")
    ] = None
    value: Annotated[str | None, Field(default=None, description="Taint value.")] = None
    effect: Annotated[
        Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None,
        Field(default=None, description="Taint effect."),
    ] = None


class SchedulingSpec(WireModel):
    """Where the run's pods go on the cluster."""

    queue_name: Annotated[
        str | None, Field(default=None, description="Kueue LocalQueue for the RayJobs.")
    ] = None
    priority_class_name: Annotated[
        str | None, Field(default=None, description="PriorityClass of the pods.")
    ] = None
    node_selector: Annotated[
        dict[str, str], Field(default_factory=dict, description="Node labels to require.")
    ]
    tolerations: Annotated[
        list[Toleration], Field(default_factory=list, description="Taints to tolerate.")
    ]


class DistillRunSpec(WireModel):
    """What a DistillRun asks for."""

    database: Annotated[DatabaseSpec, Field(description="The target database.")]
    seed_questions: Annotated[
        list[Annotated[str, Field(min_length=1)]],
        Field(min_length=1, max_length=10_000, description="Business questions to start from."),
    ]
    teacher: Annotated[TeacherSpec, Field(default_factory=TeacherSpec, description="Teacher.")]
    validation: Annotated[
        ValidationSpec, Field(default_factory=ValidationSpec, description="Checks and split.")
    ]
    student: Annotated[StudentSpec, Field(default_factory=StudentSpec, description="Student.")]
    evaluation: Annotated[
        EvaluationSpec, Field(default_factory=EvaluationSpec, description="Accuracy gate.")
    ]
    artifacts: Annotated[
        ArtifactsSpec, Field(default_factory=ArtifactsSpec, description="Artifact store.")
    ]
    scheduling: Annotated[
        SchedulingSpec, Field(default_factory=SchedulingSpec, description="Pod placement.")
    ]
