"""Reading one run's artifacts into a `RunReport`.

Only the store is read: the report can be rebuilt at any time, by anyone who can read the
artifacts, for a finished run or one still in progress. Every artifact is optional: a stage
that has not run leaves its section None. An artifact that exists but cannot be read (corrupt,
or from an incompatible version) also leaves its section None, and says why in
`RunReport.problems`, so one bad file never hides the rest of the report.

Records are read field by field with defaults, since stages gain fields over time; the typed
contract models (`DistillRun`, `DistillRunStatus`, `ShardOutput`) are used where they exist.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any, TypeVar

from pydantic import BaseModel

from distillrun.api import layout
from distillrun.api.conditions import ConditionStatus, ConditionType
from distillrun.api.resource import DistillRun
from distillrun.api.spec import ComparisonMode
from distillrun.api.status import STAGE_ORDER, DistillRunStatus, Phase
from distillrun.api.transitions import condition_of
from distillrun.report.coverage import coverage, query_facts
from distillrun.report.model import (
    Accuracy,
    Contender,
    Data,
    Example,
    Header,
    LossPoint,
    Money,
    Prediction,
    Quality,
    ReasonGroup,
    RunReport,
    SamplePoint,
    Scores,
    ShardRow,
    StageRow,
    StageSpend,
    Training,
    Uses,
    seconds_between,
)
from distillrun.sql.pairs import UNSCORED
from distillrun.sql.schema import SchemaError, SchemaInfo, parse_schema
from distillrun.store import Store, StoreError, read_uri
from distillrun.teacher.base import ShardOutput
from distillrun.teacher.factory import stand_in
from distillrun.teacher.pricing import from_usd, to_usd

EXAMPLES_PER_REASON = 3
WRONG_PREDICTIONS_SHOWN = 8

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class RunNotFound(StoreError):
    """The URI holds neither a spec.json nor a status.json: it is not a run's prefix."""


def _attempt(problems: list[str], what: str, read: Callable[[], T]) -> T | None:
    """`read()`, or None with the reason noted when the artifact is unreadable or malformed."""
    try:
        return read()
    except (StoreError, KeyError, TypeError, ValueError, AttributeError) as exc:
        problems.append(f"{what}: {exc}")
        return None


def _stored_model(store: Store, key: str, model: type[M], problems: list[str]) -> M | None:
    """The `model` stored as JSON at `key`; None when there is none, or (noted in `problems`)
    when it is unreadable or malformed."""
    if not store.exists(key):
        return None
    return _attempt(problems, key, lambda: model.model_validate(store.get_json(key)))


def _text(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    return value if isinstance(value, str) else ""


def _number(record: Mapping[str, Any], key: str) -> float | None:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _count(record: Mapping[str, Any], key: str) -> int | None:
    value = record.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _texts(record: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = record.get(key)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dialect(run: DistillRun | None) -> str:
    """The run's SQL dialect for sqlglot; its generic dialect when spec.json is unreadable."""
    return str(run.spec.database.dialect) if run is not None else ""


# -- header ---------------------------------------------------------------------------------


def _teacher(store: Store, run: DistillRun | None) -> str | None:
    """The teacher the spec names, and the one that stood in for it when the spec asked for
    the synthetic fallback and the named one's key was not set (`teacher.factory`)."""
    if run is None:
        return None
    named = f"{run.spec.teacher.provider} {run.spec.teacher.model}"
    if not store.exists(layout.MANIFEST_KEY):
        return named
    used = _text(_mapping(store.get_json(layout.MANIFEST_KEY)), "teacher")
    return (stand_in(used, run.spec.teacher) if used else None) or named


def _header(store: Store, run: DistillRun | None, status: DistillRunStatus | None) -> Header:
    stages: list[StageRow] = []
    if status is not None:
        order = [str(s) for s in STAGE_ORDER]
        names = sorted(status.stages, key=lambda n: (order.index(n) if n in order else 99, n))
        for name in names:
            stage = status.stages[name]
            stages.append(
                StageRow(
                    name=name,
                    state=str(stage.state),
                    start=stage.start_time,
                    end=stage.completion_time,
                    seconds=seconds_between(stage.start_time, stage.completion_time),
                    attempts=stage.attempts,
                    message=stage.message,
                )
            )
    phase = str(status.phase) if status is not None else str(Phase.PENDING)
    finished = phase in (Phase.SUCCEEDED, Phase.FAILED)
    starts = [s.start for s in stages if s.start]
    ends = [s.end for s in stages if s.end]
    failure = None
    if status is not None:
        failed = condition_of(status, ConditionType.FAILED)
        if failed is not None and failed.status == ConditionStatus.TRUE:
            failure = failed.message or failed.reason
    spec = run.spec if run is not None else None
    return Header(
        name=run.metadata.name if run is not None else "(spec.json missing or unreadable)",
        namespace=run.metadata.namespace if run is not None else "",
        uri=store.url(),
        phase=phase,
        dialect=str(spec.database.dialect) if spec else None,
        teacher=_teacher(store, run),
        teacher_mode=str(spec.teacher.mode) if spec else None,
        student=spec.student.model if spec else None,
        method=str(spec.student.method) if spec else None,
        hardware_profile=str(spec.student.hardware_profile) if spec else None,
        workers=spec.student.workers if spec else None,
        gpus_per_worker=spec.student.gpus_per_worker if spec else None,
        target_examples=spec.teacher.target_examples if spec else None,
        budget_usd=spec.teacher.budget.max_usd if spec else None,
        min_accuracy=spec.evaluation.min_execution_accuracy if spec else None,
        start=min(starts) if starts else None,
        end=max(ends) if finished and ends else None,
        stages=tuple(stages),
        failure=failure,
        report=status.artifacts.report if status is not None else None,
    )


# -- schema for coverage --------------------------------------------------------------------


def resolve_schema(run: DistillRun | None) -> tuple[SchemaInfo | None, str | None]:
    """The run's schema as the artifacts give it, or None and why not.

    spec.json holds the schema as the manifest gave it: inline DDL is used; an absolute URI is
    read; a path relative to the manifest cannot be placed from the artifacts alone, so it is
    reported rather than guessed at."""
    if run is None:
        return None, "spec.json is missing, so the schema is unknown"
    database = run.spec.database
    source = database.schema_source
    dialect = database.dialect
    ddl: str | None = source.ddl
    if ddl is None and source.uri is not None:
        uri = source.uri
        if not (uri.startswith(("file://", "s3://")) or PurePosixPath(uri).is_absolute()):
            return None, (
                f"spec.database.schema.uri is {uri!r}, a path relative to the manifest, which "
                "the run's artifacts do not include"
            )
        try:
            ddl = read_uri(uri).decode("utf-8")
        except (StoreError, UnicodeDecodeError) as exc:
            return None, f"the schema at {uri} could not be read: {exc}"
    if ddl is None:
        ref = source.config_map_ref
        where = f"ConfigMap {ref.name} key {ref.key}" if ref is not None else "nowhere"
        return None, f"the schema is in {where}, which the report cannot read"
    try:
        return parse_schema(ddl, dialect), None
    except SchemaError as exc:
        return None, f"the schema DDL does not parse: {exc}"


# -- data and money -------------------------------------------------------------------------


def _shards(store: Store, run: DistillRun | None) -> tuple[list[ShardOutput], int | None]:
    """The shards of the run in plan order, and how many are planned.

    Once generate has finished, its manifest names the plan: shards committed for another
    plan (an earlier run with a different target) are left out. Before that, every committed
    shard counts, and the plan size is what the spec asks for."""
    planned: int | None = None
    if store.exists(layout.MANIFEST_KEY):
        plan = [str(key) for key in store.get_json(layout.MANIFEST_KEY)["plan"]]
        keys = [layout.shard_object_key(key) for key in plan]
        keys = [key for key in keys if store.exists(key)]
        planned = len(plan)
    else:
        keys = store.list_keys(layout.SHARDS_PREFIX)
        if run is not None:
            teacher = run.spec.teacher
            planned = math.ceil(teacher.target_examples / teacher.examples_per_shard)
    shards = [ShardOutput.model_validate_json(store.get_bytes(key)) for key in keys]
    return shards, planned


def _item_fields(item: Any) -> tuple[str, str]:
    """(question, sql) of a problem's `item`: a draft mapping, or a snippet of raw reply."""
    if isinstance(item, Mapping):
        return _text(item, "question"), _text(item, "sql")
    if isinstance(item, str):
        return "", item
    return "", json.dumps(item) if item is not None else ""


def _teacher_dropped(shards: Sequence[ShardOutput]) -> tuple[ReasonGroup, ...]:
    problems = [(shard.key, p) for shard in shards for p in shard.malformed]
    groups: dict[str, list[Example]] = defaultdict(list)
    for index, (key, problem) in enumerate(problems):
        reason = _text(problem, "reason") or "unknown"
        question, sql = _item_fields(problem.get("item"))
        message = _text(problem, "detail")
        stop = _text(problem, "stop_reason")
        groups[reason].append(
            Example(
                f"{key}#{index}", question, sql, f"{message} (stop: {stop})" if stop else message
            )
        )
    return _grouped(groups)


def _grouped(groups: Mapping[str, list[Example]]) -> tuple[ReasonGroup, ...]:
    ranked = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return tuple(
        ReasonGroup(reason, len(examples), tuple(examples[:EXAMPLES_PER_REASON]))
        for reason, examples in ranked
    )


def _rejections(records: Iterable[Mapping[str, Any]]) -> tuple[ReasonGroup, ...]:
    groups: dict[str, list[Example]] = defaultdict(list)
    for record in records:
        verdict = _mapping(record.get("verdict"))
        reason = _text(verdict, "reason") or "unknown"
        groups[reason].append(
            Example(
                _text(record, "id"),
                _text(record, "question"),
                _text(record, "sql"),
                _text(verdict, "message"),
            )
        )
    return _grouped(groups)


def _data(
    store: Store,
    run: DistillRun | None,
    shards: Sequence[ShardOutput],
    planned: int | None,
    schema: SchemaInfo | None,
    schema_note: str | None,
    *,
    with_coverage: bool,
) -> Data | None:
    validated = store.exists(layout.VALIDATE_DONE_KEY)
    if not shards and not validated:
        return None
    accepted_records = store.read_jsonl(layout.ACCEPTED_KEY) if validated else []
    rejected_records = store.read_jsonl(layout.REJECTED_KEY) if validated else []
    summary = _mapping(store.get_json(layout.VALIDATE_DONE_KEY).get("summary")) if validated else {}

    shard_of = {example.id: shard.key for shard in shards for example in shard.examples}
    accepted_by_shard = Counter(shard_of.get(_text(r, "id"), "") for r in accepted_records)
    rejected_by_shard = Counter(shard_of.get(_text(r, "id"), "") for r in rejected_records)
    rows = tuple(
        ShardRow(
            key=shard.key,
            generated=len(shard.examples),
            accepted=accepted_by_shard[shard.key] if validated else None,
            rejected=rejected_by_shard[shard.key] if validated else None,
        )
        for shard in shards
    )
    found = None
    if with_coverage and accepted_records:
        sqls = (_text(r, "sql") for r in accepted_records)
        found = coverage(sqls, _dialect(run), schema, schema_note)
    return Data(
        shards_committed=len(shards),
        shards_planned=planned,
        generated=sum(len(s.examples) for s in shards),
        teacher_dropped=_teacher_dropped(shards),
        validated=validated,
        accepted=len(accepted_records) if validated else None,
        rejected=_rejections(rejected_records),
        train=_count(summary, "train"),
        holdout=_count(summary, "holdout"),
        shards=rows,
        coverage=found,
        warnings=_texts(summary, "warnings"),
    )


def _money(
    store: Store, run: DistillRun | None, shards: Sequence[ShardOutput], accepted: int | None
) -> Money | None:
    unusable = store.list_keys(layout.UNUSABLE_PREFIX)  # replies with no example cost too
    paid = [*shards, *(ShardOutput.model_validate_json(store.get_bytes(k)) for k in unusable)]
    if not paid:
        return None
    running = Decimal(0)
    cumulative: list[float] = []
    for reply in paid:
        running += from_usd(reply.usage.usd)
        cumulative.append(to_usd(running))
    spend = StageSpend.summed("generate", [reply.usage for reply in paid], to_usd(running))
    mode = None
    if store.exists(layout.MANIFEST_KEY):
        governor = _mapping(store.get_json(layout.MANIFEST_KEY).get("governor"))
        mode = _text(governor, "mode") or None
    return Money(
        by_stage=(spend,),
        mode=mode,
        budget_usd=run.spec.teacher.budget.max_usd if run is not None else None,
        accepted=accepted,
        cumulative_usd=tuple(cumulative),
    )


# -- training and quality -------------------------------------------------------------------


_PLAN_FACTS: tuple[tuple[str, str], ...] = (
    ("world_size", "processes"),
    ("accelerator", "accelerator"),
    ("precision", "precision"),
    ("deepspeed", "DeepSpeed"),
    ("micro_batch_size", "micro batch"),
    ("gradient_accumulation_steps", "gradient accumulation"),
    ("max_seq_length", "sequence length"),
    ("gradient_checkpointing", "activation checkpointing"),
    ("packing", "packed batches"),
    ("attention", "attention"),
)
"""Fields of the stored training plan the report shows, with their labels."""


def _plan_facts(plan: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    facts = []
    for key, label in _PLAN_FACTS:
        value = plan.get(key)
        if isinstance(value, bool):
            facts.append((label, "on" if value else "off"))
        elif key == "deepspeed" and key in plan:
            facts.append((label, str(value) if value else "none"))
        elif isinstance(value, int | str):
            facts.append((label, str(value)))
    return tuple(facts)


def _training(store: Store) -> Training | None:
    if not store.exists(layout.TRAIN_METRICS_KEY):
        return None
    metrics = _mapping(store.get_json(layout.TRAIN_METRICS_KEY))
    history: list[LossPoint] = []
    for point in metrics.get("loss_history") or []:
        step, loss = _count(point, "step"), _number(point, "loss")
        if step is not None and loss is not None:
            history.append(LossPoint(step, loss, _number(point, "learning_rate")))
    samples: list[SamplePoint] = []
    for point in metrics.get("sample_accuracy_history") or []:
        step, rate = _count(point, "step"), _number(point, "execution_accuracy")
        if step is not None and rate is not None:
            samples.append(SamplePoint(step, rate, _count(point, "examples") or 0))
    plan = _mapping(metrics.get("plan"))
    memory = _mapping(plan.get("memory"))
    notes = plan.get("notes")
    return Training(
        steps=_count(metrics, "steps") or 0,
        epochs=_count(metrics, "epochs"),
        examples=_count(metrics, "examples"),
        examples_truncated=_count(metrics, "examples_truncated"),
        runtime_s=_number(metrics, "runtime_s"),
        final_loss=_number(metrics, "final_loss"),
        train_loss=_number(metrics, "train_loss"),
        resumed_from_step=_count(metrics, "resumed_from_step"),
        history=tuple(history),
        sample_accuracy=tuple(samples),
        base_model=_text(metrics, "base_model") or None,
        method=_text(metrics, "method") or None,
        hardware_profile=_text(metrics, "hardware_profile") or None,
        plan=_plan_facts(plan),
        plan_notes=tuple(str(n) for n in notes) if isinstance(notes, list) else (),
        memory_estimate_bytes=_count(memory, "total"),
        memory_budget_bytes=_count(memory, "budget"),
        tokens_per_second=_number(metrics, "tokens_per_second"),
        gpu_memory_peak_bytes=_count(metrics, "gpu_memory_peak_bytes"),
    )


def _result_text(value: Any) -> str | None:
    """A query result the evaluate stage stored beside a prediction (`gold_result`,
    `predicted_result`), as compact JSON text; None when it stored none."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _slices(
    predictions: Sequence[Mapping[str, Any]], dialect: str, schema: SchemaInfo | None
) -> tuple[tuple[Accuracy, ...], tuple[Accuracy, ...]]:
    """Accuracy by construct and by table of the gold SQL, over the scored predictions."""
    constructs: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    tables: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p in predictions:
        facts = query_facts(_text(p, "gold_sql"), dialect, schema)
        if facts is None:
            continue
        hit = int(p.get("match") is True)
        for bucket, names in ((constructs, facts.constructs), (tables, facts.tables)):
            for name in names:
                bucket[name][0] += hit
                bucket[name][1] += 1

    def ranked(bucket: Mapping[str, list[int]]) -> tuple[Accuracy, ...]:
        rows = (Accuracy(name, c, n) for name, (c, n) in bucket.items())
        return tuple(sorted(rows, key=lambda a: (-a.scored, a.name)))

    return ranked(constructs), ranked(tables)


def _prediction(p: Mapping[str, Any]) -> Prediction:
    predicted = p.get("predicted_sql")
    return Prediction(
        id=_text(p, "id"),
        question=_text(p, "question"),
        gold_sql=_text(p, "gold_sql"),
        predicted_sql=predicted if isinstance(predicted, str) else None,
        answer=_text(p, "answer"),
        outcome=_text(p, "reason"),
        message=_text(p, "message"),
        gold_result=_result_text(p.get("gold_result")),
        predicted_result=_result_text(p.get("predicted_result")),
    )


def _scores(
    name: str,
    metrics: Mapping[str, Any],
    predictions: Sequence[Mapping[str, Any]],
    dialect: str,
    schema: SchemaInfo | None,
) -> Scores:
    """One evaluation set's scores: the totals as the stage computed them, the slices and the
    wrong predictions from its predictions file."""
    scored = [p for p in predictions if _text(p, "reason") not in UNSCORED]
    wrong = [p for p in scored if p.get("match") is not True]
    by_construct, by_table = _slices(scored, dialect, schema)
    outcomes = {str(k): v for k, v in _mapping(metrics.get("by_reason")).items()}
    return Scores(
        name=name,
        execution_accuracy=_number(metrics, "execution_accuracy") or 0.0,
        examples=_count(metrics, "examples") or 0,
        scored=_count(metrics, "scored") or 0,
        correct=_count(metrics, "correct") or 0,
        unjudgeable=_count(metrics, "unjudgeable") or 0,
        gold_empty=_count(metrics, "gold_empty") or 0,
        comparison=_text(metrics, "comparison") or str(ComparisonMode.STRICT),
        warnings=_texts(metrics, "warnings"),
        outcomes=tuple(
            Uses(k, v)
            for k, v in sorted(outcomes.items(), key=lambda i: (-i[1], i[0]))
            if isinstance(v, int)
        ),
        by_construct=by_construct,
        by_table=by_table,
        wrong=tuple(_prediction(p) for p in wrong[:WRONG_PREDICTIONS_SHOWN]),
        wrong_total=len(wrong),
    )


def _contender(name: str, scores: Any) -> Contender | None:
    """A model scored beside the student (metrics' `base` or `teacher`), when it was."""
    if not isinstance(scores, Mapping) or not isinstance(scores.get("holdout"), Mapping):
        return None

    def accuracy(part: Any) -> Accuracy | None:
        if not isinstance(part, Mapping):
            return None
        return Accuracy(name, _count(part, "correct") or 0, _count(part, "scored") or 0)

    holdout = accuracy(scores["holdout"])
    assert holdout is not None
    model = scores.get("model")
    return Contender(
        name=name,
        model=model if isinstance(model, str) else None,
        holdout=holdout,
        gold_set=accuracy(scores.get("gold_set")),
        usd=_number(scores, "usd"),
    )


def _quality(store: Store, run: DistillRun | None, schema: SchemaInfo | None) -> Quality | None:
    if not store.exists(layout.METRICS_KEY):
        return None
    metrics = _mapping(store.get_json(layout.METRICS_KEY))
    dialect = _dialect(run)

    def predictions(key: str) -> list[dict[str, Any]]:
        return store.read_jsonl(key) if store.exists(key) else []

    holdout = _scores("holdout", metrics, predictions(layout.PREDICTIONS_KEY), dialect, schema)
    gold_metrics = metrics.get("gold_set")
    gold = (
        _scores(
            "gold set",
            gold_metrics,
            predictions(layout.GOLD_PREDICTIONS_KEY),
            dialect,
            schema,
        )
        if isinstance(gold_metrics, Mapping)
        else None
    )
    asked = run.spec.evaluation.gold_set if run is not None else None
    return Quality(
        contenders=tuple(
            c
            for c in (
                _contender("base model, before training", metrics.get("base")),
                _contender("teacher", metrics.get("teacher")),
            )
            if c is not None
        ),
        holdout=holdout,
        gold_set=gold,
        threshold=run.spec.evaluation.min_execution_accuracy if run is not None else None,
        gold_set_note=(
            f"spec.evaluation.goldSet is set ({asked.uri}), but the stored scores have no "
            "gold-set part (scored before the gold set was added?)"
            if asked is not None and gold is None
            else None
        ),
    )


# -- the whole report -----------------------------------------------------------------------


def read_run(
    store: Store, *, schema: SchemaInfo | None = None, with_coverage: bool = True
) -> RunReport:
    """The report of the run whose artifacts are under `store`.

    `schema` is the run's parsed schema when the caller has it (the runner does); otherwise it
    is resolved from spec.json (`resolve_schema`). `with_coverage=False` skips the schema
    coverage analysis, which parses every accepted query (`distillrun status` has no use for
    it). Raises RunNotFound when `store` is not a run's prefix."""
    if not store.exists(layout.SPEC_KEY) and not store.exists(layout.STATUS_KEY):
        raise RunNotFound(
            f"{store.url()}: no DistillRun artifacts here (no spec.json or status.json); give "
            "the run's own prefix, <store>/<namespace>/<run name>/<uid> ('local' for local runs)"
        )
    problems: list[str] = []
    run = _stored_model(store, layout.SPEC_KEY, DistillRun, problems)
    status = _stored_model(store, layout.STATUS_KEY, DistillRunStatus, problems)
    note = None
    if schema is None and with_coverage:
        schema, note = resolve_schema(run)
    header = _header(store, run, status)
    shards, planned = _attempt(problems, "generate", lambda: _shards(store, run)) or ([], None)
    data = _attempt(
        problems,
        "validate",
        lambda: _data(store, run, shards, planned, schema, note, with_coverage=with_coverage),
    )
    accepted = data.accepted if data is not None else None
    return RunReport(
        header=header,
        data=data,
        money=_attempt(problems, "generate", lambda: _money(store, run, shards, accepted)),
        training=_attempt(problems, layout.TRAIN_METRICS_KEY, lambda: _training(store)),
        quality=_attempt(problems, layout.METRICS_KEY, lambda: _quality(store, run, schema)),
        problems=tuple(problems),
    )
