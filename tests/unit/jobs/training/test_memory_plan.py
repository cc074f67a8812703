"""The pre-flight memory estimate and the plan built on it: a table of configurations that fit,
fit after a downgrade, or are refused with the reason and what would fit; and how the profile
and the spec together choose the settings."""

from __future__ import annotations

from typing import Any

import pytest

from distillrun.api.profiles import load_profiles
from distillrun.api.spec import StudentSpec
from distillrun.jobs.training.memory import GIB, TrainingShape, estimate
from distillrun.jobs.training.plan import PlanRefused, TrainingPlan, make_plan
from distillrun.jobs.training.shapes import KNOWN_SHAPES, ModelShape

PROFILES = load_profiles()
QWEN3_06B = KNOWN_SHAPES["Qwen/Qwen3-0.6B"]
CODER_15B = KNOWN_SHAPES["Qwen/Qwen2.5-Coder-1.5B"]
QWEN3_8B = KNOWN_SHAPES["Qwen/Qwen3-8B"]


def plan(model: str, profile: str, *, flash: bool = True, **student: Any) -> TrainingPlan:
    fields: dict[str, Any] = {"model": model, "hardware_profile": profile, **student}
    if profile == "cpu":
        fields.setdefault("gpus_per_worker", 0)
    spec = StudentSpec(**fields)
    return make_plan(
        spec, PROFILES[profile], KNOWN_SHAPES[model], flash_attention=flash, profiles=PROFILES
    )


def test_shapes_count_the_published_parameters() -> None:
    assert 0.58e9 < QWEN3_06B.params < 0.62e9
    assert 1.50e9 < CODER_15B.params < 1.58e9
    assert 8.0e9 < QWEN3_8B.params < 8.4e9
    # LoRA r=16 on q, k, v, o of Qwen3-0.6B: 28 blocks x 16 x (in + out) summed.
    assert QWEN3_06B.lora_params(16, ["q_proj", "k_proj", "v_proj", "o_proj"]) == 28 * 16 * (
        (1024 + 2048) + 2 * (1024 + 1024) + (2048 + 1024)
    )
    config = {
        "model_type": "qwen3",
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    }
    assert ModelShape.from_config(config) == QWEN3_06B


# (model, profile, method, workers, maxSeqLength) -> what the plan must say.
FITS = [
    ("Qwen/Qwen3-0.6B", "rtx4090", "lora", 1, 2048),
    ("Qwen/Qwen3-0.6B", "a100-80gb", "full", 1, 2048),
    ("Qwen/Qwen2.5-Coder-1.5B", "a100-40gb", "lora", 1, 2048),
    ("Qwen/Qwen2.5-Coder-1.5B", "a100-80gb", "qlora", 4, 2048),
    ("Qwen/Qwen3-8B", "rtx4090", "qlora", 1, 2048),
    ("Qwen/Qwen3-8B", "a100-40gb", "qlora", 1, 2048),
]
DOWNGRADED = [
    # (..., a change the plan must have made, and the note that says so)
    ("Qwen/Qwen3-8B", "a100-80gb", "lora", 2, 2048, "zero2", "activation checkpointing on"),
    ("Qwen/Qwen2.5-Coder-1.5B", "rtx4090", "full", 1, 2048, "zero2-offload", "offloaded"),
    ("Qwen/Qwen3-8B", "a100-40gb", "full", 4, 2048, "zero3", "ZeRO-3"),
    ("Qwen/Qwen3-8B", "a100-80gb", "full", 4, 2048, "zero2", "activation checkpointing on"),
    ("Qwen/Qwen3-8B", "a100-80gb", "full", 2, 2048, "zero2", "micro batch 8 → 4"),
]
REFUSED = [
    # (..., words the refusal must contain: why, and what would fit)
    ("Qwen/Qwen3-8B", "rtx4090", "full", 1, 2048, ["offloaded to host memory", "method lora"]),
    ("Qwen/Qwen3-8B", "a100-80gb", "full", 1, 2048, ["2 GPUs in all", "method lora"]),
    ("Qwen/Qwen3-8B", "a100-40gb", "full", 1, 2048, ["4 GPUs in all"]),
]


@pytest.mark.parametrize(("model", "profile", "method", "workers", "seq"), FITS)
def test_configurations_that_fit_keep_the_profile_settings(
    model: str, profile: str, method: str, workers: int, seq: int
) -> None:
    chosen = plan(model, profile, method=method, workers=workers, max_seq_length=seq)
    assert chosen.memory is not None and chosen.memory["fits"]
    assert chosen.memory["total"] <= PROFILES[profile].gpu.memory_gib * 0.9 * GIB  # type: ignore[union-attr]
    assert chosen.micro_batch_size == PROFILES[profile].micro_batch_size
    assert not any("to fit" in note for note in chosen.notes)


@pytest.mark.parametrize(
    ("model", "profile", "method", "workers", "seq", "deepspeed", "said"), DOWNGRADED
)
def test_configurations_that_do_not_fit_are_downgraded_with_a_reason(
    model: str, profile: str, method: str, workers: int, seq: int, deepspeed: str, said: str
) -> None:
    chosen = plan(model, profile, method=method, workers=workers, max_seq_length=seq)
    assert chosen.memory is not None and chosen.memory["fits"]
    assert chosen.deepspeed == deepspeed
    why = next(note for note in chosen.notes if "to fit" in note)
    assert "GiB per GPU, more than" in why and said in why
    # The effective batch is kept while the micro batch shrinks.
    start = PROFILES[profile]
    world = workers
    assert chosen.effective_batch_size == (
        start.micro_batch_size * start.gradient_accumulation_steps * world
    )


@pytest.mark.parametrize(("model", "profile", "method", "workers", "seq", "words"), REFUSED)
def test_configurations_that_cannot_fit_are_refused_with_what_would(
    model: str, profile: str, method: str, workers: int, seq: int, words: list[str]
) -> None:
    with pytest.raises(PlanRefused) as refused:
        plan(model, profile, method=method, workers=workers, max_seq_length=seq)
    assert refused.value.reason == "InsufficientGPUMemory"
    message = refused.value.message
    assert f"does not fit on {profile}" in message and "What would fit:" in message
    for word in words:
        assert word in message


def test_estimate_parts_move_the_right_way() -> None:
    base = TrainingShape("full", "bf16", 4, 1024, False, world_size=4, zero_stage=2)
    plain = estimate(QWEN3_06B, base, None)
    checkpointed = estimate(
        QWEN3_06B, TrainingShape(**{**base.__dict__, "gradient_checkpointing": True}), None
    )
    assert checkpointed.activations < plain.activations / 5
    zero3 = estimate(QWEN3_06B, TrainingShape(**{**base.__dict__, "zero_stage": 3}), None)
    assert zero3.weights < plain.weights / 2 and zero3.optimizer == plain.optimizer
    offloaded = estimate(
        QWEN3_06B, TrainingShape(**{**base.__dict__, "offload_optimizer": True}), None
    )
    assert offloaded.optimizer == 0 and offloaded.offloaded == plain.optimizer
    lora = estimate(QWEN3_06B, TrainingShape(**{**base.__dict__, "method": "lora"}), None)
    assert lora.trainable_params < plain.trainable_params / 50
    qlora = estimate(QWEN3_06B, TrainingShape(**{**base.__dict__, "method": "qlora"}), None)
    assert qlora.weights < lora.weights
    assert not estimate(QWEN3_8B, base, 10 * GIB).fits


def test_the_spec_pins_what_it_sets_and_the_profile_fills_the_rest() -> None:
    default = plan("Qwen/Qwen3-0.6B", "a100-40gb")
    assert (default.micro_batch_size, default.gradient_accumulation_steps) == (4, 4)
    assert default.gradient_checkpointing and default.precision == "bf16"
    assert default.packing and default.attention == "flash_attention_2"
    assert default.deepspeed is None  # one GPU: nothing to split
    assert any("one GPU" in note for note in default.notes)
    pinned = plan(
        "Qwen/Qwen3-0.6B",
        "a100-40gb",
        micro_batch_size=2,
        gradient_accumulation_steps=3,
        gradient_checkpointing=False,
        workers=2,
    )
    assert (pinned.micro_batch_size, pinned.gradient_accumulation_steps) == (2, 3)
    assert not pinned.gradient_checkpointing and pinned.deepspeed == "zero2"
    assert pinned.world_size == 2 and pinned.effective_batch_size == 12


def test_profile_limits_and_library_availability_are_applied_with_notes() -> None:
    long = plan("Qwen/Qwen3-0.6B", "rtx4090", max_seq_length=8192)
    assert long.max_seq_length == 2048
    assert any("above profile rtx4090's limit 2048" in note for note in long.notes)
    assert long.env == {"NCCL_P2P_DISABLE": "1", "NCCL_IB_DISABLE": "1"}

    no_flash = plan("Qwen/Qwen3-0.6B", "h100-80gb", flash=False)
    assert no_flash.attention == "sdpa"
    assert any("flash-attn is not installed" in note for note in no_flash.notes)

    qlora = plan("Qwen/Qwen3-8B", "a100-80gb", method="qlora", workers=4)
    assert qlora.deepspeed == "zero2"

    cpu = plan("Qwen/Qwen3-0.6B", "cpu", workers=2)
    assert cpu.accelerator == "cpu" and cpu.precision == "fp32" and cpu.deepspeed is None
    assert cpu.memory is not None and cpu.memory["budget"] is None  # no GPU to fit into
    assert not cpu.packing and cpu.world_size == 2


def test_packing_only_for_models_that_keep_packed_examples_apart() -> None:
    odd = ModelShape("gpt2", 768, 3072, 12, 12, 12, 64, 50257, True)
    spec = StudentSpec(model="gpt2", hardware_profile="a100-80gb")
    chosen = make_plan(spec, PROFILES["a100-80gb"], odd, flash_attention=True)
    assert not chosen.packing
    assert any("batches are padded" in note for note in chosen.notes)


def test_profile_and_method_mismatches_are_refused() -> None:
    custom_cpu = PROFILES["cpu"].model_copy(update={"name": "custom-cpu"})
    qlora = StudentSpec(hardware_profile="custom-cpu", method="qlora", gpus_per_worker=0)
    with pytest.raises(PlanRefused) as refused:
        make_plan(qlora, custom_cpu, QWEN3_06B, flash_attention=False)
    assert refused.value.reason == "QLoRAUnavailable"
    with pytest.raises(PlanRefused) as mismatch:
        make_plan(
            StudentSpec(hardware_profile="custom-a100", gpus_per_worker=0),
            PROFILES["a100-80gb"],
            QWEN3_06B,
            flash_attention=False,
        )
    assert mismatch.value.reason == "ProfileMismatch"
