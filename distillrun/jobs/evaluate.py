"""The evaluate stage: execution accuracy of the trained student on the holdout, and the gate.

For every holdout record the student (base + adapter from `adapter/`) answers the question by
greedy generation, `extract_sql` takes the SQL out of the answer, and both the prediction and
the gold SQL run in a sandbox built from the run's schema and seed rows. A prediction is
correct when it passes the same checks as training data and its result matches the gold
result (row order counts only when the gold SQL has a top-level ORDER BY). Writes
`evaluate/predictions.jsonl` (one line per holdout record) and `evaluate/metrics.json`, then
fails with `AccuracyBelowThreshold` when the accuracy is under
`spec.evaluation.minExecutionAccuracy` -- after writing the metrics, so the report still shows
what the gate saw.

Reuse: the metrics record a fingerprint of the adapter, the holdout and the generation and
sandbox settings; the same fingerprint means the same predictions, so they are not redone (the
gate is still applied with the current threshold).
"""

# mypy: disable-error-code="no-untyped-call"
# (GenerationConfig and torch's Module.eval are untyped)

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distillrun.api.spec import HardwareProfileName, TrainingMethod
from distillrun.api.status import StageName
from distillrun.jobs import prompting
from distillrun.jobs.context import StageContext, StageFailed, StageResult
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
from distillrun.jobs.train import ADAPTER_DONE_KEY, ADAPTER_PREFIX, SEED
from distillrun.sql.compare import results_match
from distillrun.sql.judge import judge
from distillrun.sql.sandbox import open_sandbox

HOLDOUT_KEY = "dataset/holdout.jsonl"
PREDICTIONS_KEY = "evaluate/predictions.jsonl"
METRICS_KEY = "evaluate/metrics.json"

EVAL_FORMAT = 1
"""Bump when scoring changes: stored metrics are then recomputed."""

GENERATION_BATCH = 8
"""Questions generated for at once (left-padded)."""

# Outcome classes besides the SQL layer's rejection reasons (parse, unknown_column, ...).
CORRECT = "correct"
WRONG_RESULT = "wrong_result"
NO_SQL = "no_sql"
GOLD_FAILED = "gold_failed"


def _read_holdout(ctx: StageContext) -> tuple[bytes, list[dict[str, Any]]]:
    missing = (
        f"no holdout examples at {ctx.store.url(HOLDOUT_KEY)}: run the validate stage first; "
        "with very few accepted examples raise spec.teacher.targetExamples or "
        "spec.validation.holdoutFraction"
    )
    if not ctx.store.exists(HOLDOUT_KEY):
        raise StageFailed(StageName.EVALUATE, "NoHoldoutData", missing)
    data = ctx.store.get_bytes(HOLDOUT_KEY)
    records = [json.loads(line) for line in data.splitlines() if line.strip()]
    if not records:
        raise StageFailed(StageName.EVALUATE, "NoHoldoutData", missing)
    return data, records


def _adapter_marker(ctx: StageContext) -> dict[str, Any]:
    if not ctx.store.exists(ADAPTER_DONE_KEY):
        raise StageFailed(
            StageName.EVALUATE,
            "NoAdapter",
            f"no finished adapter at {ctx.store.url(ADAPTER_PREFIX)}: run the train stage first",
        )
    marker = ctx.store.get_json(ADAPTER_DONE_KEY)
    if not isinstance(marker, dict) or "fingerprint" not in marker:
        raise StageFailed(
            StageName.EVALUATE,
            "NoAdapter",
            f"{ctx.store.url(ADAPTER_DONE_KEY)} is not a done marker: run the train stage again",
        )
    return marker


def fingerprint(ctx: StageContext, adapter_fingerprint: str, holdout_bytes: bytes) -> str:
    """What the predictions depend on (the threshold is applied afterwards, so not it)."""
    spec = ctx.run.spec
    material = {
        "adapter": adapter_fingerprint,
        "holdout": hashlib.sha256(holdout_bytes).hexdigest(),
        "max_new_tokens": spec.evaluation.max_new_tokens,
        "sandbox": spec.database.sandbox.model_dump(mode="json"),
        "seed_sql": hashlib.sha256((ctx.seed_sql or "").encode()).hexdigest(),
        "schema": ctx.schema.fingerprint,
        "eval_format": EVAL_FORMAT,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _gate(ctx: StageContext, metrics: dict[str, Any]) -> None:
    threshold = ctx.run.spec.evaluation.min_execution_accuracy
    accuracy = float(metrics["execution_accuracy"])
    if accuracy < threshold:
        raise StageFailed(
            StageName.EVALUATE,
            "AccuracyBelowThreshold",
            f"execution accuracy {accuracy:.2f} < {threshold:.2f} "
            f"(spec.evaluation.minExecutionAccuracy) on {metrics['examples']} holdout examples; "
            f"see {ctx.store.url(PREDICTIONS_KEY)} for what the student got wrong",
        )


def _summary(ctx: StageContext, metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "execution_accuracy": metrics["execution_accuracy"],
        "examples": metrics["examples"],
        "correct": metrics["correct"],
        "metrics": ctx.store.url(METRICS_KEY),
    }


def run(ctx: StageContext) -> StageResult:
    """Scores the adapter on the holdout (or reuses the stored scores), then applies the gate."""
    holdout_bytes, records = _read_holdout(ctx)
    marker = _adapter_marker(ctx)
    wanted = fingerprint(ctx, str(marker["fingerprint"]), holdout_bytes)

    if ctx.store.exists(METRICS_KEY):
        stored = ctx.store.get_json(METRICS_KEY)
        if isinstance(stored, dict) and stored.get("fingerprint") == wanted:
            ctx.progress.note(StageName.EVALUATE, "scores are up to date with the adapter; reused")
            _gate(ctx, stored)
            return StageResult(StageName.EVALUATE, _summary(ctx, stored), reused=True)

    with tempfile.TemporaryDirectory(prefix="distillrun-evaluate-") as tmp:
        answers = _generate(ctx, records, marker, Path(tmp))
    predictions = _score(ctx, records, answers)
    metrics = _metrics(predictions, wanted, marker)
    ctx.store.put_jsonl(PREDICTIONS_KEY, predictions)
    ctx.store.put_json(METRICS_KEY, metrics)
    _gate(ctx, metrics)
    return StageResult(StageName.EVALUATE, _summary(ctx, metrics))


def _generate(
    ctx: StageContext, records: Sequence[dict[str, Any]], marker: dict[str, Any], workdir: Path
) -> list[str]:
    """The student's raw answer to every holdout question, in order."""
    import torch
    from transformers import GenerationConfig

    spec = ctx.run.spec
    quiet_library_progress()
    limit_torch_threads()
    seed_everything(SEED)

    adapter_dir = ctx.store.get_tree(ADAPTER_PREFIX, workdir / "adapter")
    tokenizer = load_tokenizer(str(adapter_dir), padding_side="left")
    dtype = model_dtype(spec.student)
    model: Any
    if marker.get("method") == str(TrainingMethod.FULL):
        model = load_model(str(adapter_dir), dtype=dtype)
    else:
        from peft import PeftModel

        student = resolve_student(spec.student, ctx.store, workdir, stage=StageName.EVALUATE)
        if marker.get("base_model") not in (None, student.model_id):
            raise StageFailed(
                StageName.EVALUATE,
                "AdapterBaseMismatch",
                f"the adapter was trained on {marker.get('base_model')} but the student base "
                f"is now {student.model_id}: run the train stage again",
            )
        base = load_model(student.location, dtype=dtype)
        with known_library_warnings():
            model = PeftModel.from_pretrained(base, str(adapter_dir))
    use_gpu = spec.student.hardware_profile != HardwareProfileName.CPU and torch.cuda.is_available()
    device = torch.device("cuda" if use_gpu else "cpu")
    model.to(device)
    model.eval()

    eos_ids: list[int] = [tokenizer.eos_token_id]
    configured = getattr(model.generation_config, "eos_token_id", None)
    for extra in configured if isinstance(configured, list) else [configured]:
        if extra is not None and extra not in eos_ids:
            eos_ids.append(extra)
    generation = GenerationConfig(
        max_new_tokens=spec.evaluation.max_new_tokens,
        do_sample=False,
        eos_token_id=eos_ids,
        pad_token_id=tokenizer.pad_token_id,
    )
    reasoning = spec.teacher.reasoning
    answers: list[str] = []
    for start in range(0, len(records), GENERATION_BATCH):
        batch = records[start : start + GENERATION_BATCH]
        prompts = [
            prompting.render_prompt(tokenizer, ctx.schema, str(r["question"]), reasoning=reasoning)
            for r in batch
        ]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = encoded.to(device)
        with torch.inference_mode():
            output = model.generate(**encoded, generation_config=generation)
        prompt_length = encoded["input_ids"].shape[1]
        answers.extend(
            str(tokenizer.decode(row[prompt_length:], skip_special_tokens=True)) for row in output
        )
        ctx.progress.counts(StageName.EVALUATE, {"generated": len(answers)}, total=len(records))
    return answers


def _score(
    ctx: StageContext, records: Sequence[dict[str, Any]], answers: Sequence[str]
) -> list[dict[str, Any]]:
    """Judges every prediction and compares its result with the gold SQL's."""
    predictions: list[dict[str, Any]] = []
    correct = 0
    limits = ctx.run.spec.database.sandbox
    with open_sandbox(ctx.schema, ctx.seed_sql, limits) as sandbox:
        for record, answer in zip(records, answers, strict=True):
            gold_sql = str(record["sql"])
            predicted = prompting.extract_sql(answer)
            started = time.monotonic()
            line: dict[str, Any] = {
                "id": record["id"],
                "question": record["question"],
                "gold_sql": gold_sql,
                "predicted_sql": predicted,
                "answer": answer,
            }
            gold_verdict, gold_checked, gold_result = judge(gold_sql, ctx.schema, sandbox)
            if not gold_verdict.ok or gold_checked is None or gold_result is None:
                line.update(
                    ok=False,
                    reason=GOLD_FAILED,
                    message=f"the gold SQL failed: {gold_verdict.message}",
                    match=False,
                )
            elif predicted is None:
                line.update(
                    ok=False, reason=NO_SQL, message="no SQL found in the answer", match=False
                )
            else:
                verdict, _, result = judge(predicted, ctx.schema, sandbox)
                line.update(verdict.model_dump(mode="json"))
                if verdict.ok and result is not None:
                    match = results_match(gold_result, result, ordered=gold_checked.ordered)
                    line["match"] = match
                    line["reason"] = CORRECT if match else WRONG_RESULT
                    if not match:
                        line["message"] = "runs, but its result differs from the gold result"
                else:
                    line["match"] = False
                    line["message"] = verdict.message or "the query returned no result"
            line["judge_ms"] = round((time.monotonic() - started) * 1000, 2)
            correct += int(line["match"])
            predictions.append(line)
            ctx.progress.counts(
                StageName.EVALUATE,
                {"scored": len(predictions), "correct": correct},
                total=len(records),
            )
    return predictions


def _metrics(
    predictions: Sequence[dict[str, Any]], wanted: str, marker: dict[str, Any]
) -> dict[str, Any]:
    scored = [p for p in predictions if p["reason"] != GOLD_FAILED]
    correct = sum(1 for p in scored if p["match"])
    by_reason = Counter(str(p["reason"]) for p in predictions)
    return {
        "execution_accuracy": round(correct / len(scored), 6) if scored else 0.0,
        "examples": len(predictions),
        "scored": len(scored),
        "correct": correct,
        "by_reason": dict(sorted(by_reason.items())),
        "fingerprint": wanted,
        "adapter_fingerprint": marker["fingerprint"],
        "base_model": marker.get("base_model"),
    }
