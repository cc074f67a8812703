"""The train and evaluate stages in-process (one CPU worker) on the builtin tiny student, a file
store and the shop schema in a real SQLite sandbox: the candidate adapter with its card, loss
and sample-accuracy curves, checkpoints, reuse, a driver killed mid-training that resumes, the
accuracy gate publishing or withholding the adapter, the gold set scored apart, and named
failures (no data, qlora without a GPU, no adapter)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from distillrun.api.status import StageName
from distillrun.jobs import evaluate, train
from distillrun.jobs.context import StageContext, StageFailed, StageResult
from distillrun.store import Store

pytestmark = pytest.mark.usefixtures("offline_hub")

Record = dict[str, Any]
WriteDataset = Callable[[Store, list[Record], list[Record]], None]
ContextAt = Callable[[Path, dict[str, Any]], StageContext]
ProgressOf = Callable[[StageContext], Any]

ROOT = Path(__file__).parents[3]

# Small and quick: ~10 optimizer steps on two cores, a checkpoint every 4, a holdout sample
# scored every 5.
TINY_TRAINING: dict[str, Any] = {
    "student": {
        "maxSteps": 10,
        "microBatchSize": 4,
        "maxSeqLength": 256,
        "checkpointEverySteps": 4,
    },
    "evaluation": {"maxNewTokens": 24, "duringTraining": {"everySteps": 5, "examples": 4}},
}


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, context_at: ContextAt, shop_records: list[Record]
) -> Iterator[tuple[StageContext, StageResult]]:
    """One 10-step training shared by the tests that only read what it left."""
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv("TRANSFORMERS_OFFLINE", "1")
    ctx = context_at(tmp_path_factory.mktemp("trained") / "store", TINY_TRAINING)
    ctx.store.put_jsonl("dataset/train.jsonl", shop_records[:40])
    ctx.store.put_jsonl("dataset/holdout.jsonl", shop_records[40:46])
    try:
        yield ctx, train.run(ctx)
    finally:
        patch.undo()


def test_train_writes_candidate_metrics_card_and_marker(
    trained: tuple[StageContext, StageResult], progress_of: ProgressOf
) -> None:
    ctx, result = trained
    assert result.stage == StageName.TRAIN and not result.reused
    assert result.summary["steps"] == 10
    assert result.summary["examples"] == 40
    assert isinstance(result.summary["final_loss"], float)
    assert result.summary["adapter"] == ctx.store.url("train/adapter/")
    assert result.summary["resumed_from_step"] == 0
    keys = set(ctx.store.list_keys("train/adapter/"))
    for name in ("adapter_model.safetensors", "adapter_config.json", "README.md", "_done.json"):
        assert f"train/adapter/{name}" in keys
    assert "train/adapter/tokenizer.json" in keys
    assert "train/adapter/training_args.bin" not in keys
    assert ctx.store.exists("student/base/_done.json")
    # Not published: that is the gate's decision.
    assert not ctx.store.list_keys("adapter/")
    # Checkpoints were written along the way and removed once the adapter was stored.
    notes = [message for stage, message in progress_of(ctx).notes if stage == StageName.TRAIN]
    assert "checkpoint at step 4 stored" in notes and "checkpoint at step 8 stored" in notes
    assert ctx.store.list_keys("train/checkpoints/") == []

    metrics = ctx.store.get_json("train/metrics.json")
    assert metrics["steps"] == 10
    assert [p["step"] for p in metrics["loss_history"]] == list(range(1, 11))
    assert all(p["loss"] > 0 for p in metrics["loss_history"])
    assert [s["step"] for s in metrics["sample_accuracy_history"]] == [5, 10]
    assert metrics["plan"]["profile"] == "cpu" and metrics["plan"]["deepspeed"] is None
    config = json.loads(ctx.store.get_bytes("train/adapter/adapter_config.json"))
    assert config["base_model_name_or_path"] == ctx.store.url("student/base/")
    card = ctx.store.get_bytes("train/adapter/README.md").decode()
    assert "builtin:tiny-qwen3@" in card and "Hardware profile: cpu" in card

    steps = [c for c in progress_of(ctx).counts_seen if c[0] == StageName.TRAIN]
    assert steps[-1][1]["step"] == 10 and steps[-1][2] == 10
    assert "loss" in steps[-1][1]


def test_train_reuses_an_up_to_date_adapter(
    trained: tuple[StageContext, StageResult], context_at: ContextAt
) -> None:
    ctx, result = trained
    again = train.run(context_at(Path(ctx.store.url().removeprefix("file://")), TINY_TRAINING))
    assert again.reused
    assert again.summary == result.summary


def test_the_adapter_reloads_with_peft(
    trained: tuple[StageContext, StageResult], tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from distillrun.jobs.student import known_library_warnings

    ctx, _ = trained
    base_dir = ctx.store.get_tree("student/base/", tmp_path / "base")
    adapter_dir = ctx.store.get_tree("train/adapter/", tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    with known_library_warnings():
        model = PeftModel.from_pretrained(base, adapter_dir)
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_gate_publishes_only_at_or_above_the_threshold(
    trained: tuple[StageContext, StageResult],
    context_at: ContextAt,
    shop_records: list[Record],
    tmp_path: Path,
) -> None:
    ctx, _ = trained
    store_dir = Path(ctx.store.url().removeprefix("file://"))
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        "".join(
            json.dumps({"question": r["question"], "sql": r["sql"]}) + "\n"
            for r in shop_records[50:53]
        )
    )

    def spec(threshold: float, merge: bool = False) -> dict[str, Any]:
        return {
            **TINY_TRAINING,
            "student": {**TINY_TRAINING["student"], "mergeWeights": merge},
            "evaluation": {
                "minExecutionAccuracy": threshold,
                "maxNewTokens": 24,
                "duringTraining": TINY_TRAINING["evaluation"]["duringTraining"],
                "goldSet": {"uri": str(gold)},
            },
        }

    passing = context_at(store_dir, spec(0.0, merge=True))
    result = evaluate.run(passing)
    assert not result.reused
    metrics = ctx.store.get_json("evaluate/metrics.json")
    assert result.summary["execution_accuracy"] == metrics["execution_accuracy"]
    assert result.summary["adapter"] == ctx.store.url("adapter/")
    assert metrics["examples"] == 6 and sum(metrics["by_reason"].values()) == 6
    predictions = ctx.store.read_jsonl("evaluate/predictions.jsonl")
    assert [p["id"] for p in predictions] == [r["id"] for r in shop_records[40:46]]
    assert all(p["gold_result"]["columns"] for p in predictions)
    # The gold set is scored the same way and reported on its own.
    assert metrics["gold_set"]["examples"] == 3
    assert result.summary["gold_execution_accuracy"] == metrics["gold_set"]["execution_accuracy"]
    assert len(ctx.store.read_jsonl("evaluate/gold_predictions.jsonl")) == 3
    # Published: the adapter, its card with the accuracy, merged weights, the marker last.
    published = ctx.store.get_json("adapter/_done.json")
    assert published["fingerprint"] == ctx.store.get_json("train/adapter/_done.json")["fingerprint"]
    card = ctx.store.get_bytes("adapter/README.md").decode()
    assert f"execution accuracy {metrics['execution_accuracy']:.3f}" in card
    assert "Gold set (user-written)" in card
    assert ctx.store.exists("adapter/adapter_model.safetensors")
    assert ctx.store.exists("adapter/merged/model.safetensors")
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(
        ctx.store.get_tree("adapter/merged/", tmp_path / "m")
    )
    assert not any("lora" in name for name, _ in merged.named_parameters())

    # Ten steps leave the model bad: under a gate of 1.0 the run fails, the scores are reused,
    # nothing stays published, and the candidate is kept for inspection.
    assert metrics["execution_accuracy"] < 1.0
    with pytest.raises(StageFailed) as gated:
        evaluate.run(context_at(store_dir, spec(1.0, merge=True)))
    assert gated.value.reason == "AccuracyBelowThreshold"
    assert gated.value.stage == StageName.EVALUATE
    assert f"{metrics['execution_accuracy']:.2f} < 1.00" in str(gated.value)
    assert ctx.store.list_keys("adapter/") == []
    assert ctx.store.exists("train/adapter/_done.json")
    assert ctx.store.get_json("evaluate/metrics.json")["examples"] == 6

    # Back at or above the gate: published again from the stored scores.
    again = evaluate.run(context_at(store_dir, spec(metrics["execution_accuracy"])))
    assert again.reused and ctx.store.exists("adapter/_done.json")
    assert not ctx.store.exists("adapter/merged/model.safetensors")


def test_train_again_when_the_dataset_changes(
    jobs_context: Callable[..., Any], shop_records: list[Record], write_dataset: WriteDataset
) -> None:
    spec = {"student": {"maxSteps": 2, "microBatchSize": 4}}
    ctx = jobs_context(spec)
    write_dataset(ctx.store, shop_records[:20], shop_records[40:44])
    train.run(ctx)
    first = ctx.store.get_json("train/adapter/_done.json")
    write_dataset(ctx.store, shop_records[:24], shop_records[40:44])
    second = train.run(jobs_context(spec))
    assert not second.reused
    assert ctx.store.get_json("train/adapter/_done.json")["fingerprint"] != first["fingerprint"]


def test_full_fine_tune_writes_a_whole_model(
    jobs_context: Callable[..., Any], shop_records: list[Record], write_dataset: WriteDataset
) -> None:
    ctx = jobs_context({"student": {"method": "full", "maxSteps": 2, "microBatchSize": 4}})
    write_dataset(ctx.store, shop_records[:12], shop_records[40:44])
    result = train.run(ctx)
    assert result.summary["steps"] == 2
    assert ctx.store.exists("train/adapter/model.safetensors")
    assert not ctx.store.exists("train/adapter/adapter_config.json")


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
    assert not ctx.store.exists("train/adapter/_done.json")


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


# A driver that trains and is killed: the stage run as its own process.
DRIVER = """
import json, sys
from pathlib import Path
import yaml
from distillrun.api.resource import parse_run
from distillrun.jobs import train
from distillrun.jobs.context import StageContext
from distillrun.jobs.inputs import load_inputs
from distillrun.store import open_store

root, store_dir, spec = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
manifest = yaml.safe_load((root / "examples" / "shop-tiny.yaml").read_text())
manifest["spec"]["student"].update(spec["student"])
run = parse_run(manifest)
schema, seed = load_inputs(run, root / "examples", "shop-tiny.yaml")
train.run(StageContext(run=run, store=open_store(store_dir), schema=schema, seed_sql=seed))
"""


def test_a_killed_driver_resumes_from_the_latest_complete_checkpoint(
    context_at: ContextAt, progress_of: ProgressOf, shop_records: list[Record], tmp_path: Path
) -> None:
    spec = {
        "student": {
            "model": "builtin:tiny-qwen3",  # as context_at's: the driver reads shop-tiny.yaml
            "maxSteps": 24,
            "microBatchSize": 4,
            "checkpointEverySteps": 4,
        }
    }
    store_dir = tmp_path / "store"
    ctx = context_at(store_dir, spec)
    ctx.store.put_jsonl("dataset/train.jsonl", shop_records[:48])
    ctx.store.put_jsonl("dataset/holdout.jsonl", shop_records[48:50])
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(ROOT), str(store_dir), json.dumps(spec)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not ctx.store.list_keys("train/checkpoints/step-00000004/_done.json"):
            assert driver.poll() is None, "the driver ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait()
    markers = [k for k in ctx.store.list_keys("train/checkpoints/") if k.endswith("_done.json")]
    assert markers, "no complete checkpoint survived the kill"
    last = max(int(k.split("/")[2].removeprefix("step-")) for k in markers)
    assert not ctx.store.exists("train/adapter/_done.json")

    result = train.run(ctx)

    assert result.summary["resumed_from_step"] == last
    assert result.summary["steps"] == 24
    history = ctx.store.get_json("train/metrics.json")["loss_history"]
    assert [p["step"] for p in history] == list(range(1, 25))
    notes = [message for _, message in progress_of(ctx).notes]
    assert f"resuming from the checkpoint at step {last}" in notes


def test_the_gate_refuses_an_untrained_student(
    trained: tuple[StageContext, StageResult], context_at: ContextAt
) -> None:
    """Ten LoRA steps on random weights teach nothing: under a gate the run fails by name,
    nothing is published, and the base before training was scored beside it."""
    ctx, _ = trained
    store_dir = Path(ctx.store.url().removeprefix("file://"))
    gate = {
        **TINY_TRAINING,
        "evaluation": {**TINY_TRAINING["evaluation"], "minExecutionAccuracy": 0.5},
    }
    with pytest.raises(StageFailed) as refused:
        evaluate.run(context_at(store_dir, gate))
    assert refused.value.reason == "AccuracyBelowThreshold"
    assert "< 0.50 (spec.evaluation.minExecutionAccuracy)" in str(refused.value)
    metrics = ctx.store.get_json("evaluate/metrics.json")
    assert metrics["execution_accuracy"] < 0.5
    assert metrics["base"]["holdout"]["examples"] == metrics["examples"]
    assert metrics["base"]["holdout"]["execution_accuracy"] < 0.5
    assert ctx.store.list_keys("adapter/") == []
    # the scores travel with the failure, for the status; nothing published
    scores = refused.value.summary
    assert scores is not None
    assert scores["execution_accuracy"] == metrics["execution_accuracy"]
    assert scores["base_execution_accuracy"] == metrics["base"]["holdout"]["execution_accuracy"]
    assert scores["adapter"] is None
