"""Execution accuracy: generate answers with the student, run them, compare with the gold rows.

Shared by the evaluate stage (the whole holdout and the gold set, after training) and the
training loop (a sample of the holdout every N steps), so the number watched during training
is computed exactly as the number the gate applies. Generation is batched and greedy with left
padding; `extract_sql` takes the SQL out of each answer; both the prediction and the gold SQL
pass the static checks and run in a sandbox of the run's schema and seed rows; a prediction is
correct when its result matches the gold result (row order counts only when the gold SQL has a
top-level ORDER BY). The first rows of both results are kept with each prediction, so a reader
sees how a wrong answer differs.
"""

# mypy: disable-error-code="no-untyped-call"
# (GenerationConfig is untyped)

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from distillrun.api.spec import SandboxSpec
from distillrun.jobs import prompting
from distillrun.sql.compare import results_match
from distillrun.sql.judge import judge
from distillrun.sql.sandbox import ResultSet, open_sandbox
from distillrun.sql.schema import SchemaInfo

GENERATION_BATCH = 8
"""Questions generated for at once (left-padded)."""

# Outcome classes besides the SQL layer's rejection reasons (parse, unknown_column, ...).
CORRECT = "correct"
WRONG_RESULT = "wrong_result"
NO_SQL = "no_sql"
GOLD_FAILED = "gold_failed"


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
) -> list[dict[str, Any]]:
    """Judges every answer and compares its result with the gold SQL's; one line per record.
    `on_scored(scored, correct)` is called after each one."""
    predictions: list[dict[str, Any]] = []
    correct = 0
    with open_sandbox(schema, seed_sql, limits) as sandbox:
        for number, (record, answer) in enumerate(zip(records, answers, strict=True)):
            gold_sql = str(record["sql"])
            predicted = prompting.extract_sql(answer)
            started = time.monotonic()
            line: dict[str, Any] = {
                "id": record.get("id", f"#{number}"),
                "question": record["question"],
                "gold_sql": gold_sql,
                "predicted_sql": predicted,
                "answer": answer,
            }
            gold_verdict, gold_checked, gold_result = judge(gold_sql, schema, sandbox)
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
                verdict, _, result = judge(predicted, schema, sandbox)
                line.update(verdict.model_dump(mode="json"))
                if result is not None:
                    line["predicted_result"] = _preview(result)
                if verdict.ok and result is not None:
                    match = results_match(gold_result, result, ordered=gold_checked.ordered)
                    line["match"] = match
                    line["reason"] = CORRECT if match else WRONG_RESULT
                    if not match:
                        line["message"] = "runs, but its result differs from the gold result"
                else:
                    line["match"] = False
                    line["message"] = verdict.message or "the query returned no result"
            if gold_verdict.ok and gold_result is not None:
                line["gold_result"] = _preview(gold_result)
            line["judge_ms"] = round((time.monotonic() - started) * 1000, 2)
            correct += int(line["match"])
            predictions.append(line)
            if on_scored is not None:
                on_scored(len(predictions), correct)
    return predictions


def accuracy(predictions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Execution accuracy over the predictions whose gold SQL ran, with counts by outcome."""
    scored = [p for p in predictions if p["reason"] != GOLD_FAILED]
    correct = sum(1 for p in scored if p["match"])
    by_reason = Counter(str(p["reason"]) for p in predictions)
    return {
        "execution_accuracy": round(correct / len(scored), 6) if scored else 0.0,
        "examples": len(predictions),
        "scored": len(scored),
        "correct": correct,
        "by_reason": dict(sorted(by_reason.items())),
    }
