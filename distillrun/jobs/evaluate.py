"""The evaluate stage: execution accuracy of the trained student, the gate, and publication.

The candidate adapter from `train/adapter/` answers every holdout question (and every question
of the user's gold set, `spec.evaluation.goldSet`, scored the same way and reported apart);
`training.scoring` runs each answer and the gold SQL in a sandbox of the run's schema and seed
rows and compares the results. The same questions are put to the base model before training
(`evaluation.scoreBase`: the adapter switched off, or the base beside a full fine-tune) and, for
an LLM teacher, to the teacher (`evaluation.askTeacher`, `jobs.teacher_answers`), scored the
same way: what distillation bought, and how close the student comes to its teacher. Writes
`evaluate/predictions.jsonl`, `evaluate/gold_predictions.jsonl` (with a gold set), the
`base_`/`teacher_` predictions beside them, and `evaluate/metrics.json`, then applies the gate
on the student's holdout accuracy:

- at or above `spec.evaluation.minExecutionAccuracy` the candidate is published: copied to
  `adapter/` with its model card rewritten to carry the accuracy (and, with
  `student.mergeWeights`, the base with the adapter merged in under `adapter/merged/`), and
  `adapter/_done.json` written last;
- below it the run fails with `AccuracyBelowThreshold`: the candidate stays in
  `train/adapter/` for inspection, and no adapter -- neither this one nor an older one -- is
  left under `adapter/` as the run's result.

Reuse: the metrics record a fingerprint of the candidate, the holdout, the gold set and the
generation and sandbox settings; the same fingerprint means the same predictions, so they are
not redone (the gate is still applied with the current threshold).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distillrun.api.failures import FailureReason
from distillrun.api.layout import (
    CANDIDATE_DONE_KEY,
    CANDIDATE_PREFIX,
    GOLD_PREDICTIONS_KEY,
    HOLDOUT_KEY,
    MERGED_DIR,
    METRICS_KEY,
    PREDICTIONS_KEY,
    PUBLISHED_DONE_KEY,
    PUBLISHED_PREFIX,
    compared_accuracies,
)
from distillrun.api.spec import TrainingMethod
from distillrun.api.status import StageName
from distillrun.jobs import teacher_answers
from distillrun.jobs.context import StageContext, StageFailed, StageResult, read_dataset
from distillrun.jobs.student import (
    known_library_warnings,
    limit_torch_threads,
    load_model,
    load_tokenizer,
    model_dtype,
    quiet_library_progress,
    resolve_student,
    seed_everything,
)
from distillrun.jobs.training import scoring
from distillrun.jobs.training.card import CardFacts, render
from distillrun.jobs.training.layout import SEED
from distillrun.store import StoreError, jsonl_values, read_uri

EVAL_FORMAT = 3
"""Bump when scoring changes: stored metrics are then recomputed."""


def _read_holdout(ctx: StageContext) -> tuple[bytes, list[dict[str, Any]]]:
    missing = (
        f"no holdout examples at {ctx.store.url(HOLDOUT_KEY)}: run the validate stage first; "
        "with very few accepted examples raise spec.teacher.targetExamples or "
        "spec.validation.holdoutFraction"
    )
    return read_dataset(
        ctx, HOLDOUT_KEY, StageName.EVALUATE, FailureReason.NO_HOLDOUT_DATA, missing
    )


def _read_gold_set(ctx: StageContext) -> tuple[bytes, list[dict[str, Any]]] | None:
    """The user's gold set (question/sql per JSONL line), or None when the spec has none."""
    gold = ctx.run.spec.evaluation.gold_set
    if gold is None:
        return None
    try:
        data = read_uri(gold.uri)
    except StoreError as exc:
        raise StageFailed(
            StageName.EVALUATE,
            FailureReason.INVALID_GOLD_SET,
            f"spec.evaluation.goldSet.uri: {exc}",
        ) from None
    records: list[dict[str, Any]] = []
    for number, record in jsonl_values(data):
        if not isinstance(record, dict) or not record.get("question") or not record.get("sql"):
            raise StageFailed(
                StageName.EVALUATE,
                FailureReason.INVALID_GOLD_SET,
                f"{gold.uri} line {number}: each line must be a JSON object with question and sql",
            )
        records.append({"id": record.get("id", f"gold-{number:04d}"), **record})
    if not records:
        raise StageFailed(
            StageName.EVALUATE, FailureReason.INVALID_GOLD_SET, f"{gold.uri} has no examples"
        )
    return data, records


def _candidate_marker(ctx: StageContext) -> dict[str, Any]:
    if not ctx.store.exists(CANDIDATE_DONE_KEY):
        raise StageFailed(
            StageName.EVALUATE,
            FailureReason.NO_ADAPTER,
            f"no finished adapter at {ctx.store.url(CANDIDATE_PREFIX)}: run the train stage first",
        )
    marker = ctx.store.get_json(CANDIDATE_DONE_KEY)
    if not isinstance(marker, dict) or "fingerprint" not in marker:
        raise StageFailed(
            StageName.EVALUATE,
            FailureReason.NO_ADAPTER,
            f"{ctx.store.url(CANDIDATE_DONE_KEY)} is not a done marker: run the train stage again",
        )
    return marker


def fingerprint(
    ctx: StageContext, adapter_fingerprint: str, holdout_bytes: bytes, gold_bytes: bytes | None
) -> str:
    """What the predictions depend on (the threshold is applied afterwards, so not it)."""
    spec = ctx.run.spec
    material = {
        "adapter": adapter_fingerprint,
        "holdout": hashlib.sha256(holdout_bytes).hexdigest(),
        "gold": hashlib.sha256(gold_bytes).hexdigest() if gold_bytes is not None else None,
        "max_new_tokens": spec.evaluation.max_new_tokens,
        "sandbox": spec.database.sandbox.model_dump(mode="json"),
        "comparison": spec.evaluation.comparison.model_dump(mode="json"),
        "seed_sql": hashlib.sha256((ctx.seed_sql or "").encode()).hexdigest(),
        "schema": ctx.schema.fingerprint,
        "with_schema": spec.student.schema_in_prompt,
        "score_base": spec.evaluation.score_base,
        "teacher": spec.teacher.model if teacher_answers.wanted(ctx) else None,
        "eval_format": EVAL_FORMAT,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def run(ctx: StageContext) -> StageResult:
    """Scores the candidate (or reuses the stored scores), then gates and publishes it."""
    holdout_bytes, records = _read_holdout(ctx)
    gold = _read_gold_set(ctx)
    marker = _candidate_marker(ctx)
    wanted = fingerprint(
        ctx, str(marker["fingerprint"]), holdout_bytes, gold[0] if gold is not None else None
    )

    stored = ctx.store.get_json(METRICS_KEY) if ctx.store.exists(METRICS_KEY) else None
    if isinstance(stored, dict) and stored.get("fingerprint") == wanted:
        ctx.progress.note(StageName.EVALUATE, "scores are up to date with the adapter; reused")
        metrics = stored
        reused = True
    else:
        metrics = _evaluate(ctx, records, gold[1] if gold is not None else None, marker, wanted)
        reused = False
    _gate(ctx, metrics)
    published = _publish(ctx, marker, metrics)
    return StageResult(StageName.EVALUATE, _summary(ctx, metrics, published), reused=reused)


def _evaluate(
    ctx: StageContext,
    records: list[dict[str, Any]],
    gold_records: list[dict[str, Any]] | None,
    marker: dict[str, Any],
    wanted: str,
) -> dict[str, Any]:
    questions = [str(r["question"]) for r in records + (gold_records or [])]
    with tempfile.TemporaryDirectory(prefix="distillrun-evaluate-") as tmp:
        answers = _generate(ctx, questions, marker, Path(tmp))

    def report(scored: int, correct: int) -> None:
        ctx.progress.counts(
            StageName.EVALUATE, {"scored": scored, "correct": correct}, total=len(records)
        )

    student = _score(ctx, STUDENT, records, gold_records, answers[STUDENT], report)
    metrics: dict[str, Any] = {
        **student["holdout"],
        "comparison": str(ctx.run.spec.evaluation.comparison.mode),
        "fingerprint": wanted,
        "adapter_fingerprint": marker["fingerprint"],
        "base_model": marker.get("base_model"),
        "gold_set": student["gold_set"],
        "base": None,
        "teacher": None,
    }
    if student["gold_set"] is not None:
        ctx.progress.note(
            StageName.EVALUATE,
            f"gold set: execution accuracy {student['gold_set']['execution_accuracy']:.3f} "
            f"on {len(gold_records or [])} examples",
        )
    for warning in metrics["warnings"]:
        ctx.progress.note(StageName.EVALUATE, f"warning: {warning}")
    if teacher_answers.wanted(ctx):
        asked = teacher_answers.ask(ctx, questions)
        metrics["teacher"] = {
            **_score(ctx, TEACHER, records, gold_records, asked.answers),
            "model": asked.model,
            "usd": asked.usage.usd,
            "usage": asked.usage.model_dump(),
            "skipped": asked.skipped,
        }
        ctx.progress.note(
            StageName.EVALUATE,
            f"teacher {asked.model}: execution accuracy "
            f"{metrics['teacher']['holdout']['execution_accuracy']:.3f} on the same questions "
            f"(${asked.usage.usd:.4f})" + (f"; {asked.skipped}" if asked.skipped else ""),
        )
    if BASE in answers:
        metrics["base"] = _score(ctx, BASE, records, gold_records, answers[BASE])
        before = metrics["base"]["holdout"]["execution_accuracy"]
        gain = 100 * (student["holdout"]["execution_accuracy"] - before)
        ctx.progress.note(
            StageName.EVALUATE,
            f"base model before training: execution accuracy {before:.3f}; "
            f"distillation: {gain:+.1f} points",
        )
    ctx.store.put_json(METRICS_KEY, metrics)
    return metrics


STUDENT = "student"
BASE = "base"
TEACHER = "teacher"


def predictions_keys(who: str) -> tuple[str, str]:
    """Where the holdout and gold-set predictions of `who` (student, base, teacher) are kept."""
    if who == STUDENT:
        return PREDICTIONS_KEY, GOLD_PREDICTIONS_KEY
    return f"evaluate/{who}_predictions.jsonl", f"evaluate/{who}_gold_predictions.jsonl"


def _score(
    ctx: StageContext,
    who: str,
    records: list[dict[str, Any]],
    gold_records: list[dict[str, Any]] | None,
    answers: Sequence[str],
    report: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Scores `who`'s answers (holdout first, then gold set) and stores its predictions; the
    holdout and gold-set accuracies."""
    limits = ctx.run.spec.database.sandbox
    comparison = ctx.run.spec.evaluation.comparison
    holdout_key, gold_key = predictions_keys(who)
    predictions = scoring.score(
        records,
        answers[: len(records)],
        ctx.schema,
        ctx.seed_sql,
        limits,
        report,
        comparison=comparison,
    )
    ctx.store.put_jsonl(holdout_key, predictions)
    scores: dict[str, Any] = {
        "holdout": {
            **scoring.accuracy(predictions),
            "warnings": scoring.warnings(predictions, ctx.seed_sql),
        },
        "gold_set": None,
    }
    if gold_records is not None:
        gold_predictions = scoring.score(
            gold_records,
            answers[len(records) :],
            ctx.schema,
            ctx.seed_sql,
            limits,
            comparison=comparison,
        )
        ctx.store.put_jsonl(gold_key, gold_predictions)
        scores["gold_set"] = {
            **scoring.accuracy(gold_predictions),
            "warnings": scoring.warnings(gold_predictions, ctx.seed_sql),
        }
    return scores


def _load_student(ctx: StageContext, marker: dict[str, Any], adapter_dir: Path) -> Any:
    """The base with the adapter applied (or the whole fine-tuned model), on the CPU."""
    spec = ctx.run.spec
    dtype = model_dtype(spec.student)
    if marker.get("method") == str(TrainingMethod.FULL):
        return load_model(str(adapter_dir), dtype=dtype)
    from peft import PeftModel

    base = load_model(_base_location(ctx, marker, adapter_dir.parent), dtype=dtype)
    with known_library_warnings():
        return PeftModel.from_pretrained(base, str(adapter_dir))


def _base_location(ctx: StageContext, marker: dict[str, Any], workdir: Path) -> str:
    """Where the base the candidate was trained from is, checked to be that base."""
    student = resolve_student(ctx.run.spec.student, ctx.store, workdir, stage=StageName.EVALUATE)
    if marker.get("base_model") not in (None, student.model_id):
        raise StageFailed(
            StageName.EVALUATE,
            FailureReason.ADAPTER_BASE_MISMATCH,
            f"the adapter was trained on {marker.get('base_model')} but the student base "
            f"is now {student.model_id}: run the train stage again",
        )
    return student.location


def _generate(
    ctx: StageContext, questions: Sequence[str], marker: dict[str, Any], workdir: Path
) -> dict[str, list[str]]:
    """The raw answers to every question, in order: the student's, and with
    `evaluation.scoreBase` the base model's before training (the adapter switched off, or the
    base loaded beside a full fine-tune)."""
    import torch

    spec = ctx.run.spec
    quiet_library_progress()
    limit_torch_threads()
    seed_everything(SEED)

    adapter_dir = ctx.store.get_tree(CANDIDATE_PREFIX, workdir / "adapter")
    tokenizer = load_tokenizer(str(adapter_dir))
    model = _load_student(ctx, marker, adapter_dir)
    on_gpu = torch.cuda.is_available() and model_dtype(spec.student) != torch.float32
    if on_gpu:
        model.to("cuda")
    model.eval()

    def answer(who: str, model: Any) -> list[str]:
        return scoring.generate_answers(
            model,
            tokenizer,
            ctx.schema,
            questions,
            reasoning=spec.teacher.reasoning,
            with_schema=spec.student.schema_in_prompt,
            max_new_tokens=spec.evaluation.max_new_tokens,
            on_batch=lambda done: ctx.progress.counts(
                StageName.EVALUATE, {f"{who} generated": done}, total=len(questions)
            ),
        )

    answers = {STUDENT: answer(STUDENT, model)}
    if not spec.evaluation.score_base:
        return answers
    if marker.get("method") == str(TrainingMethod.FULL):
        del model
        base: Any = load_model(
            _base_location(ctx, marker, workdir), dtype=model_dtype(spec.student)
        )
        if on_gpu:
            base.to("cuda")
        base.eval()
        answers[BASE] = answer(BASE, base)
    else:
        with model.disable_adapter():
            answers[BASE] = answer(BASE, model)
    return answers


def _withdraw(ctx: StageContext) -> None:
    """Removes the published adapter (marker first): what is under `adapter/` is the run's
    result, and after a failed gate the run has none."""
    ctx.store.delete(PUBLISHED_DONE_KEY)
    for key in ctx.store.list_keys(PUBLISHED_PREFIX):
        ctx.store.delete(key)


def _gate(ctx: StageContext, metrics: dict[str, Any]) -> None:
    threshold = ctx.run.spec.evaluation.min_execution_accuracy
    accuracy = float(metrics["execution_accuracy"])
    if accuracy < threshold:
        _withdraw(ctx)
        raise StageFailed(
            StageName.EVALUATE,
            FailureReason.ACCURACY_BELOW_THRESHOLD,
            f"execution accuracy {accuracy:.2f} < {threshold:.2f} "
            f"(spec.evaluation.minExecutionAccuracy) on {metrics['scored']} scored of "
            f"{metrics['examples']} holdout examples; "
            f"the adapter is kept, unpublished, at {ctx.store.url(CANDIDATE_PREFIX)}; see "
            f"{ctx.store.url(PREDICTIONS_KEY)} for what the student got wrong",
            summary=_summary(ctx, metrics, None),  # the accuracy, for the status; none published
        )


def _publish(ctx: StageContext, marker: dict[str, Any], metrics: dict[str, Any]) -> str:
    """Copies the candidate under `adapter/` with its accuracy (once per candidate and scores)."""
    merge = ctx.run.spec.student.merge_weights and marker.get("method") != str(TrainingMethod.FULL)
    record = {
        "fingerprint": marker["fingerprint"],
        "evaluation": metrics["fingerprint"],
        "execution_accuracy": metrics["execution_accuracy"],
        "gold_execution_accuracy": (metrics.get("gold_set") or {}).get("execution_accuracy"),
        "merged": merge,
        "base_model": marker.get("base_model"),
        "method": marker.get("method"),
        "source": ctx.store.url(CANDIDATE_PREFIX),
    }
    url = ctx.store.url(PUBLISHED_PREFIX)
    if ctx.store.exists(PUBLISHED_DONE_KEY) and ctx.store.get_json(PUBLISHED_DONE_KEY) == record:
        return url
    _withdraw(ctx)
    with tempfile.TemporaryDirectory(prefix="distillrun-publish-") as tmp:
        local = ctx.store.get_tree(CANDIDATE_PREFIX, Path(tmp) / "adapter")
        (local / Path(CANDIDATE_DONE_KEY).name).unlink()
        facts: CardFacts | None = marker.get("card")
        if facts is not None:
            card = render(facts, holdout=metrics, gold=metrics.get("gold_set"))
            (local / "README.md").write_text(card, encoding="utf-8")
        if merge:
            _merge_into(ctx, marker, local, local / MERGED_DIR)
        ctx.store.put_tree(PUBLISHED_PREFIX, local)
    ctx.store.put_json(PUBLISHED_DONE_KEY, record)  # last: published once this exists
    ctx.progress.note(StageName.EVALUATE, f"adapter published at {url}")
    return url


def _merge_into(ctx: StageContext, marker: dict[str, Any], adapter_dir: Path, out: Path) -> None:
    """The base with the adapter folded into its weights, loadable without peft."""
    model = _load_student(ctx, marker, adapter_dir)
    merged = model.merge_and_unload()
    merged.save_pretrained(out)
    load_tokenizer(str(adapter_dir)).save_pretrained(out)


def _summary(ctx: StageContext, metrics: dict[str, Any], published: str | None) -> dict[str, Any]:
    return {
        "execution_accuracy": metrics["execution_accuracy"],
        **compared_accuracies(metrics),
        "examples": metrics["examples"],
        "correct": metrics["correct"],
        "scored": metrics["scored"],
        "unjudgeable": metrics["unjudgeable"],
        "gold_empty": metrics["gold_empty"],
        "metrics": ctx.store.url(METRICS_KEY),
        "adapter": published,
    }
