"""The train stage on real GPUs with the builtin tiny student: LoRA in bf16 on one GPU, QLoRA
(4-bit, when bitsandbytes is installed), and DeepSpeed ZeRO-2 / ZeRO-3 across two GPUs on Ray
Train. Skipped cleanly where there is no CUDA GPU (every CPU-only machine, CI included)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

ROOT = Path(__file__).parents[2]


def _records(count: int) -> list[dict[str, Any]]:
    """Questions about the shop schema with SQL that runs on its seed rows."""
    records = []
    for i in range(count):
        customer = i % 40 + 1
        if i % 2:
            question = f"What is the email of customer {customer}?"
            sql = f"SELECT email FROM customers WHERE id = {customer}"
        else:
            question = f"How many orders did customer {customer} place?"
            sql = f"SELECT COUNT(*) FROM orders WHERE customer_id = {customer}"
        records.append({"id": f"g-{i:03d}", "question": question, "sql": sql, "explanation": ""})
    return records


@pytest.fixture
def gpu_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import yaml

    from distillrun.api.resource import parse_run
    from distillrun.jobs.context import StageContext
    from distillrun.jobs.inputs import load_inputs
    from distillrun.store import open_store

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("DISTILLRUN_CACHE_DIR", str(tmp_path / "cache"))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "zero3.yaml").write_text(
        "name: custom-gpu-zero3\nextends: a100-80gb\ndeepspeed: zero3\n"
        "gpu: {memoryGiB: 16}\nattention: sdpa\n"
    )
    monkeypatch.setenv("DISTILLRUN_PROFILES_DIR", str(profiles))

    def make(student: dict[str, Any]) -> StageContext:
        manifest = yaml.safe_load((ROOT / "examples" / "shop-tiny.yaml").read_text())
        manifest["spec"]["student"].update(student)
        manifest["spec"]["evaluation"] = {"minExecutionAccuracy": 0.0, "maxNewTokens": 24}
        run = parse_run(manifest)
        schema, seed = load_inputs(run, ROOT / "examples", "shop-tiny.yaml")
        store = open_store(str(tmp_path / "store"))
        store.put_jsonl("dataset/train.jsonl", _records(64))
        store.put_jsonl("dataset/holdout.jsonl", _records(70)[64:])
        return StageContext(run=run, store=store, schema=schema, seed_sql=seed)

    yield make


def _losses(ctx: Any) -> list[float]:
    metrics = ctx.store.get_json("train/metrics.json")
    return [point["loss"] for point in metrics["loss_history"]]


def test_lora_in_bf16_on_one_gpu(gpu_context: Any) -> None:
    from distillrun.jobs import evaluate, train

    ctx = gpu_context(
        {"hardwareProfile": "a100-80gb", "gpusPerWorker": 1, "maxSteps": 30, "microBatchSize": 4}
    )
    result = train.run(ctx)
    plan = ctx.store.get_json("train/metrics.json")["plan"]
    assert plan["precision"] in ("bf16", "fp16") and plan["accelerator"] == "cuda"
    losses = _losses(ctx)
    assert result.summary["steps"] == 30 and losses[-1] < losses[0]
    assert evaluate.run(ctx).summary["adapter"] == ctx.store.url("adapter/")


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")
def test_qlora_trains_a_4bit_base(gpu_context: Any) -> None:
    from distillrun.jobs import train

    ctx = gpu_context(
        {
            "method": "qlora",
            "hardwareProfile": "a100-80gb",
            "gpusPerWorker": 1,
            "maxSteps": 20,
            "microBatchSize": 4,
        }
    )
    train.run(ctx)
    config = json.loads(ctx.store.get_bytes("train/adapter/adapter_config.json"))
    assert config["peft_type"] == "LORA"
    assert _losses(ctx)[-1] < _losses(ctx)[0]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
@pytest.mark.parametrize(
    ("profile", "stage"), [("a100-80gb", "zero2"), ("custom-gpu-zero3", "zero3")]
)
def test_deepspeed_across_two_gpus(gpu_context: Any, profile: str, stage: str) -> None:
    from distillrun.jobs import train

    ctx = gpu_context(
        {
            "hardwareProfile": profile,
            "gpusPerWorker": 2,
            "maxSteps": 20,
            "microBatchSize": 4,
            "checkpointEverySteps": 10,
        }
    )
    train.run(ctx)
    plan = ctx.store.get_json("train/metrics.json")["plan"]
    assert plan["world_size"] == 2 and plan["deepspeed"] == stage
    assert _losses(ctx)[-1] < _losses(ctx)[0]
