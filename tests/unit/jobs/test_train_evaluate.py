"""The train and evaluate stages on the builtin tiny student, a file store and the shop schema
in a real SQLite sandbox: an adapter that peft can load, a loss history, reuse on a second
call, named failures (no data, qlora without a GPU, the accuracy gate)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from distillrun.api.status import StageName
from distillrun.jobs import evaluate, train
from distillrun.jobs.context import StageFailed
from distillrun.store import Store

pytestmark = pytest.mark.usefixtures("offline_hub")

Record = dict[str, Any]
WriteDataset = Callable[[Store, list[Record], list[Record]], None]

# Small and quick: ~10 optimizer steps on two cores.
TINY_TRAINING = {"student": {"maxSteps": 10, "microBatchSize": 4, "maxSeqLength": 256}}


def test_train_writes_adapter_metrics_and_marker_then_reuses(
    jobs_context: Callable[..., Any],
    shop_records: list[Record],
    write_dataset: WriteDataset,
    recorded_progress: Any,
    tmp_path: Path,
) -> None:
    ctx = jobs_context(TINY_TRAINING)
    write_dataset(ctx.store, shop_records[:40], shop_records[40:48])

    result = train.run(ctx)

    assert result.stage == StageName.TRAIN and not result.reused
    assert result.summary["steps"] == 10
    assert result.summary["examples"] == 40
    assert isinstance(result.summary["final_loss"], float)
    assert result.summary["adapter"] == ctx.store.url("adapter/")
    keys = set(ctx.store.list_keys("adapter/"))
    for name in ("adapter_model.safetensors", "adapter_config.json", "README.md", "_done.json"):
        assert f"adapter/{name}" in keys
    assert "adapter/tokenizer.json" in keys
    assert ctx.store.exists("student/base/_done.json")
    assert ctx.store.exists("student/base/model.safetensors")

    metrics = ctx.store.get_json("train/metrics.json")
    assert metrics["steps"] == 10
    assert [p["step"] for p in metrics["loss_history"]] == list(range(1, 11))
    assert all(p["loss"] > 0 for p in metrics["loss_history"])
    assert metrics["examples"] == 40
    card = ctx.store.get_bytes("adapter/README.md").decode()
    assert "builtin:tiny-qwen3@" in card and "cpu" in card

    steps = [c for c in recorded_progress.counts_seen if c[0] == StageName.TRAIN]
    assert steps[-1][1]["step"] == 10 and steps[-1][2] == 10
    assert "loss" in steps[-1][1]

    # The stored adapter loads with plain peft onto the stored base.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from distillrun.jobs.student import known_library_warnings

    base_dir = ctx.store.get_tree("student/base/", tmp_path / "base")
    adapter_dir = ctx.store.get_tree("adapter/", tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    with known_library_warnings():
        model = PeftModel.from_pretrained(base, adapter_dir)
    assert any("lora_A" in name for name, _ in model.named_parameters())

    again = train.run(jobs_context(TINY_TRAINING))
    assert again.reused
    assert again.summary == result.summary


def test_train_again_when_the_dataset_changes(
    jobs_context: Callable[..., Any], shop_records: list[Record], write_dataset: WriteDataset
) -> None:
    spec = {"student": {"maxSteps": 2, "microBatchSize": 4}}
    ctx = jobs_context(spec)
    write_dataset(ctx.store, shop_records[:20], shop_records[40:44])
    first = ctx.store.get_json("adapter/_done.json") if train.run(ctx) else None
    write_dataset(ctx.store, shop_records[:24], shop_records[40:44])
    second = train.run(jobs_context(spec))
    assert not second.reused
    assert first is not None
    assert ctx.store.get_json("adapter/_done.json")["fingerprint"] != first["fingerprint"]


def test_full_fine_tune_writes_a_whole_model(
    jobs_context: Callable[..., Any], shop_records: list[Record], write_dataset: WriteDataset
) -> None:
    ctx = jobs_context({"student": {"method": "full", "maxSteps": 2, "microBatchSize": 4}})
    write_dataset(ctx.store, shop_records[:12], shop_records[40:44])
    result = train.run(ctx)
    assert result.summary["steps"] == 2
    assert ctx.store.exists("adapter/model.safetensors")
    assert not ctx.store.exists("adapter/adapter_config.json")


def test_train_without_data_says_what_to_do(
    jobs_context: Callable[..., Any], write_dataset: WriteDataset
) -> None:
    ctx = jobs_context()
    with pytest.raises(StageFailed) as missing:
        train.run(ctx)
    assert missing.value.reason == "NoTrainingData"
    assert "validate" in str(missing.value)

    write_dataset(ctx.store, [], [])
    with pytest.raises(StageFailed) as empty:
        train.run(ctx)
    assert empty.value.reason == "NoTrainingData"


def test_qlora_without_a_gpu_fails_with_a_named_reason(
    jobs_context: Callable[..., Any], shop_records: list[Record], write_dataset: WriteDataset
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    ctx = jobs_context(
        {"student": {"method": "qlora", "hardwareProfile": "a100-80gb", "gpusPerWorker": 1}}
    )
    write_dataset(ctx.store, shop_records[:8], shop_records[40:44])
    with pytest.raises(StageFailed) as failed:
        train.run(ctx)
    assert failed.value.reason == "QLoRAUnavailable"
    assert failed.value.stage == StageName.TRAIN
    assert "GPU" in str(failed.value)
    assert not ctx.store.exists("adapter/_done.json")


def test_evaluate_scores_holdout_writes_predictions_and_gates(
    jobs_context: Callable[..., Any],
    shop_records: list[Record],
    write_dataset: WriteDataset,
    recorded_progress: Any,
) -> None:
    spec: dict[str, Any] = {
        **TINY_TRAINING,
        "evaluation": {"minExecutionAccuracy": 0.0, "maxNewTokens": 24},
    }
    ctx = jobs_context(spec)
    holdout = shop_records[40:46]
    write_dataset(ctx.store, shop_records[:40], holdout)
    train.run(ctx)

    result = evaluate.run(ctx)

    assert result.stage == StageName.EVALUATE and not result.reused
    metrics = ctx.store.get_json("evaluate/metrics.json")
    assert metrics["examples"] == len(holdout)
    assert 0.0 <= metrics["execution_accuracy"] <= 1.0
    assert result.summary["execution_accuracy"] == metrics["execution_accuracy"]
    assert sum(metrics["by_reason"].values()) == len(holdout)
    predictions = ctx.store.read_jsonl("evaluate/predictions.jsonl")
    assert [p["id"] for p in predictions] == [r["id"] for r in holdout]
    for prediction, record in zip(predictions, holdout, strict=True):
        assert prediction["gold_sql"] == record["sql"]
        assert prediction["question"] == record["question"]
        assert isinstance(prediction["match"], bool)
        assert "ok" in prediction and "reason" in prediction
    correct = sum(p["match"] for p in predictions)
    assert metrics["correct"] == correct
    scored = [c for c in recorded_progress.counts_seen if c[0] == StageName.EVALUATE]
    assert scored[-1][1] == {"scored": len(holdout), "correct": correct}
    assert scored[-1][2] == len(holdout)

    # Same adapter, same holdout: the metrics are reused.
    assert evaluate.run(jobs_context(spec)).reused

    # Ten steps leave the model bad: under a gate of 1.0 it fails, after writing its metrics.
    assert metrics["execution_accuracy"] < 1.0
    strict = jobs_context({**spec, "evaluation": {"minExecutionAccuracy": 1.0, "maxNewTokens": 24}})
    with pytest.raises(StageFailed) as gated:
        evaluate.run(strict)
    assert gated.value.reason == "AccuracyBelowThreshold"
    assert gated.value.stage == StageName.EVALUATE
    assert f"{metrics['execution_accuracy']:.2f} < 1.00" in str(gated.value)
    assert ctx.store.get_json("evaluate/metrics.json")["examples"] == len(holdout)


def test_evaluate_without_holdout_or_adapter_fails_by_name(
    jobs_context: Callable[..., Any], shop_records: list[Record], write_dataset: WriteDataset
) -> None:
    ctx = jobs_context()
    write_dataset(ctx.store, shop_records[:8], [])
    with pytest.raises(StageFailed) as empty:
        evaluate.run(ctx)
    assert empty.value.reason == "NoHoldoutData"

    write_dataset(ctx.store, shop_records[:8], shop_records[40:42])
    with pytest.raises(StageFailed) as no_adapter:
        evaluate.run(ctx)
    assert no_adapter.value.reason == "NoAdapter"
