"""The builtin SQL base (`builtin:sql-qwen3`): its pretraining corpus over the bundled schemas,
its one-time build and cache, pretraining that learns, and LoRA on it that learns in a run,
with evaluation scoring the base before training beside the trained student."""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from distillrun.api.spec import Dialect
from distillrun.jobs import evaluate, train
from distillrun.jobs.builtin import cache
from distillrun.jobs.builtin.cache import MARKER, base_directory, cached_base, ensure_base
from distillrun.jobs.builtin.corpus import bundled_schema_texts, pretraining_examples
from distillrun.jobs.builtin.pretrain import Schedule, pretrain
from distillrun.jobs.student import TinyQwen3Shape, build_tiny_qwen3, load_model, load_tokenizer
from distillrun.sql.schema import SchemaInfo
from tests.unit.conftest import SMALL_RECIPE

ROOT = Path(__file__).parents[3]


def test_the_corpus_covers_every_bundled_schema_and_dialect_never_the_shop(
    shop_schema: SchemaInfo,
) -> None:
    first = pretraining_examples(4, 0.3, 0)
    again = pretraining_examples(4, 0.3, 0)
    assert [(e.question, e.sql, e.with_schema) for e in first] == [
        (e.question, e.sql, e.with_schema) for e in again
    ]
    assert len(bundled_schema_texts()) >= 6
    assert {e.schema.dialect for e in first} == set(Dialect)
    tables = {t.name for e in first for t in e.schema.tables}
    assert len(tables) >= 24
    # the quickstart's schema is not among them: the base never saw the questions a run holds out
    assert not tables & {t.name for t in shop_schema.tables}
    share = sum(e.with_schema for e in first) / len(first)
    assert 0.2 < share < 0.4


def test_the_base_is_built_once_per_recipe_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes: list[str] = []
    folder = ensure_base(tmp_path, SMALL_RECIPE, notes.append)
    marker = json.loads((folder / MARKER).read_text())
    assert marker["fingerprint"] == SMALL_RECIPE.fingerprint()
    assert marker["examples"] > 100 and isinstance(marker["final_loss"], float)
    assert any("building the builtin SQL base" in note for note in notes)
    assert load_model(str(folder), dtype=torch.float32).config.hidden_size == 64

    def no_second_build(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the cached base was built again")

    monkeypatch.setattr(cache, "build_base", no_second_build)
    assert ensure_base(tmp_path, SMALL_RECIPE) == folder
    longer = replace(SMALL_RECIPE, schedule=replace(SMALL_RECIPE.schedule, steps=7))
    assert base_directory(tmp_path, longer) != folder
    assert cached_base(tmp_path, longer) is None


def test_pretraining_lowers_the_loss(tmp_path: Path) -> None:
    examples = pretraining_examples(1, 0.0, 0)[:96]
    texts = [e.question for e in examples] + [e.sql for e in examples]
    shape = TinyQwen3Shape(
        vocab_size=512, hidden_size=64, intermediate_size=128, merge_across_spaces=False
    )
    build_tiny_qwen3(texts, tmp_path, shape=shape)
    model = load_model(str(tmp_path), dtype=torch.float32)
    schedule = Schedule(
        steps=40, batch_size=8, learning_rate=3e-3, warmup_steps=4, max_length=128, seed=0
    )
    losses = pretrain(model, load_tokenizer(str(tmp_path)), examples, schedule)
    assert len(losses) == 40
    assert statistics.mean(losses[-5:]) < 0.6 * statistics.mean(losses[:5])


def test_lora_on_the_sql_base_learns_and_the_base_is_scored_beside_it(
    small_sql_base: Path, context_at: Any, shop_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    spec = {
        "student": {
            "model": "builtin:sql-qwen3",
            "schemaInPrompt": False,
            "maxSteps": 24,
            "microBatchSize": 8,
            "learningRate": 0.01,
        },
        "evaluation": {
            "minExecutionAccuracy": 0.0,
            "maxNewTokens": 24,
            "duringTraining": {"everySteps": 0},
        },
    }
    ctx = context_at(tmp_path / "store", spec)
    ctx.store.put_jsonl("dataset/train.jsonl", shop_records[:48])
    ctx.store.put_jsonl("dataset/holdout.jsonl", shop_records[48:54])
    trained = train.run(ctx)
    assert trained.summary["steps"] == 24
    losses = [p["loss"] for p in ctx.store.get_json("train/metrics.json")["loss_history"]]
    assert statistics.mean(losses[-3:]) < 0.8 * statistics.mean(losses[:3])
    assert ctx.store.get_json("student/base/_done.json")["model"] == "builtin:sql-qwen3"

    result = evaluate.run(ctx)
    metrics = ctx.store.get_json("evaluate/metrics.json")
    assert metrics["base"]["holdout"]["examples"] == 6
    assert (
        result.summary["base_execution_accuracy"]
        == (metrics["base"]["holdout"]["execution_accuracy"])
    )
    base_predictions = ctx.store.read_jsonl("evaluate/base_predictions.jsonl")
    student_predictions = ctx.store.read_jsonl("evaluate/predictions.jsonl")
    # the same questions, the same gold SQL, two models
    assert [(p["id"], p["gold_sql"]) for p in base_predictions] == [
        (p["id"], p["gold_sql"]) for p in student_predictions
    ]
    assert [p["answer"] for p in base_predictions] != [p["answer"] for p in student_predictions]
