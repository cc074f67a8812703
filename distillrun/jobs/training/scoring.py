"""Execution accuracy: generate answers with the student, run them, compare with the gold rows.

Shared by the evaluate stage (the whole holdout and the gold set, after training) and the
training loop (a sample of the holdout every N steps), so the number watched during training
is computed exactly as the number the gate applies. Generation is batched and greedy with left
padding; `extract_sql` takes the SQL out of each answer; both the prediction and the gold SQL
pass the static checks and run in a sandbox of the run's schema and seed rows; a prediction is
correct when its result matches the gold result under `spec.evaluation.comparison`
(`sql.pairs`: strict by default, or the Spider evaluator's rules). Pairs whose gold failed, whose
gold result is empty (strict) or that cannot be judged whole are counted apart, never correct.
The first rows of both results are kept with each prediction, so a reader sees how a wrong
answer differs.
"""

# mypy: disable-error-code="no-untyped-call"
# (GenerationConfig is untyped)

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from distillrun.api.spec import ComparisonSpec, SandboxSpec
from distillrun.jobs import prompting
from distillrun.jobs.empty_results import empty_data_warnings
from distillrun.sql.pairs import (
    GOLD_EMPTY,
    GOLD_FAILED,
    UNJUDGEABLE,
    UNSCORED,
    comparison_limits,
    judge_pair,
)
from distillrun.sql.sandbox import ResultSet, open_sandbox
from distillrun.sql.schema import SchemaInfo

GENERATION_BATCH = 8
"""Questions generated for at once (left-padded)."""


def generate_answers(
    model: Any,
    tokenizer: Any,
    schema: SchemaInfo,
    questions: Sequence[str],
    *,
    reasoning: bool,
    max_new_tokens: int,
    with_schema: bool = True,
    synced_gpus: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """The model's raw answer to every question, in order. `synced_gpus` keeps every rank
    stepping together (ZeRO-3, where each forward pass gathers weights from all ranks)."""
    import torch
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    eos_ids: list[int] = [tokenizer.eos_token_id]
    configured = getattr(model.generation_config, "eos_token_id", None)
    for extra in configured if isinstance(configured, list) else [configured]:
        if extra is not None and extra not in eos_ids:
            eos_ids.append(extra)
    generation = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=eos_ids,
        pad_token_id=tokenizer.pad_token_id,
    )
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    answers: list[str] = []
    try:
        for start in range(0, len(questions), GENERATION_BATCH):
            batch = questions[start : start + GENERATION_BATCH]
            prompts = [
                prompting.render_prompt(
                    tokenizer, schema, q, reasoning=reasoning, with_schema=with_schema
                )
                for q in batch
            ]
            encoded = tokenizer(
                prompts, return_tensors="pt", padding=True, add_special_tokens=False
            ).to(device)
            with torch.inference_mode():
                output = model.generate(
                    **encoded, generation_config=generation, synced_gpus=synced_gpus
                )
            prompt_length = encoded["input_ids"].shape[1]
            answers.extend(
                str(tokenizer.decode(row[prompt_length:], skip_special_tokens=True))
                for row in output
            )
            if on_batch is not None:
                on_batch(len(answers))
    finally:
        tokenizer.padding_side = padding_side
    return answers


PREVIEW_ROWS = 5
"""Rows of each result kept beside a prediction, for the report's side-by-side view."""


def _preview(result: ResultSet) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float | str):
            return value
        return str(value)

    return {
        "columns": list(result.columns),
        "rows": [[plain(v) for v in row] for row in result.rows[:PREVIEW_ROWS]],
        "row_count": len(result.rows),
        "truncated": result.truncated,
    }


def score(
    records: Sequence[Mapping[str, Any]],
    answers: Sequence[str],
    schema: SchemaInfo,
    seed_sql: str | None,
    limits: SandboxSpec,
    on_scored: Callable[[int, int], None] | None = None,
    *,
    comparison: ComparisonSpec,
) -> list[dict[str, Any]]:
    """Judges every answer against its gold SQL (`sql.pairs.judge_pair`, under `comparison`);
    one line per record. `on_scored(scored, correct)` is called after each one."""
    predictions: list[dict[str, Any]] = []
    correct = 0
    with open_sandbox(schema, seed_sql, comparison_limits(limits, comparison)) as sandbox:
        for number, (record, answer) in enumerate(zip(records, answers, strict=True)):
            gold_sql = str(record["sql"])
            predicted = prompting.extract_sql(answer)
            started = time.monotonic()
            pair = judge_pair(gold_sql, predicted, schema, sandbox, comparison)
            line: dict[str, Any] = {
                "id": record.get("id", f"#{number}"),
                "question": record["question"],
                "gold_sql": gold_sql,
                "predicted_sql": predicted,
                "answer": answer,
                "ok": False,
            }
            if pair.predicted is not None:
                line.update(pair.predicted.model_dump(mode="json"))
            line.update(reason=pair.outcome, message=pair.message, match=pair.match)
            if pair.predicted_result is not None:
                line["predicted_result"] = _preview(pair.predicted_result)
            if pair.gold_result is not None:
                line["gold_result"] = _preview(pair.gold_result)
            line["judge_ms"] = round((time.monotonic() - started) * 1000, 2)
            correct += int(pair.match)
            predictions.append(line)
            if on_scored is not None:
                on_scored(len(predictions), correct)
    return predictions


def accuracy(predictions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Execution accuracy over the scored predictions (not `UNSCORED`: the gold failed, the
    gold result is empty, or the pair is unjudgeable), with counts by outcome."""
    scored = [p for p in predictions if p["reason"] not in UNSCORED]
    correct = sum(1 for p in scored if p["match"])
    by_reason = Counter(str(p["reason"]) for p in predictions)
    return {
        "execution_accuracy": round(correct / len(scored), 6) if scored else 0.0,
        "examples": len(predictions),
        "scored": len(scored),
        "correct": correct,
        "unjudgeable": by_reason[UNJUDGEABLE],
        "gold_empty": by_reason[GOLD_EMPTY],
        "by_reason": dict(sorted(by_reason.items())),
    }


def warnings(predictions: Sequence[Mapping[str, Any]], seed_sql: str | None) -> list[str]:
    """What makes the scores weaker evidence than they look, in words for the user: empty seed
    data, many empty gold results (`jobs.empty_results`), unjudgeable pairs."""
    ran = [p for p in predictions if p["reason"] != GOLD_FAILED]
    empty = sum(1 for p in ran if (p.get("gold_result") or {}).get("row_count") == 0)
    found = empty_data_warnings(seed_sql, len(ran), empty)
    unjudgeable = sum(1 for p in predictions if p["reason"] == UNJUDGEABLE)
    if unjudgeable:
        found.append(
            f"{unjudgeable} pairs are unjudgeable (both results longer than "
            "spec.evaluation.comparison.maxRows rows) and left out of the accuracy"
        )
    return found
