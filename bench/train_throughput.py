"""Training throughput: distillrun's plan against a naive recipe, same model, same data, same run.
Not a test: it prints figures, and the goal next to them.

    .venv/bin/python bench/train_throughput.py [--models qwen3-0.6b,qwen2.5-coder-1.5b]
        [--profile h100-80gb] [--seq 1024] [--steps 20]

For Qwen3-0.6B- and Qwen2.5-Coder-1.5B-shaped models (built from their configs with random
weights: nothing is downloaded) it trains a LoRA adapter (r=16 on q/k/v/o) on synthetic
text-to-SQL-shaped examples (a prompt of 180-600 tokens, an answer of 30-150) twice:

- ours: the plan `distillrun.jobs.training.plan` makes for the hardware profile, trained with
  exactly the trl `SFTConfig` the train stage uses (`worker.training_arguments`): bf16, packed
  padding-free batches, loss on the answer only, the profile's micro batch, flash-attn when
  installed (SDPA otherwise), activation checkpointing if the memory estimate asks for it;
- naive, the recipe of a popular fine-tuning tutorial: transformers' `Trainer` with its
  defaults, fp16 mixed precision on fp32 weights, no packing, per-device batch 4, every example
  padded to the maximum length, loss on every token.

Reported per recipe: useful (non-padding) tokens per second per GPU, MFU, and peak GPU memory
(`torch.cuda.max_memory_allocated`). MFU = useful tokens/s x FLOPs per token / the GPU's dense
bf16 peak from the profile, with FLOPs per token by the PaLM convention (`ModelShape.
flops_per_token`: 4N for LoRA -- forward and backward to the activations, no gradient for the
frozen weights --, N the block weights and LM head, plus 12 x layers x seq x attention width
at the mean example length). Padding is not useful work, so it earns no FLOPs. The first steps
(warm-up: allocation, kernel selection) are not timed. Goal: ours >= 2x the naive tokens/s at
no more memory.

Without a GPU the same code runs a tiny model (the builtin student's shape) on the CPU, fp32
for both recipes, to check the path; the figures then say nothing about GPUs.
"""

# mypy: disable-error-code="no-untyped-call"
# (transformers' auto classes are untyped)

from __future__ import annotations

import argparse
import gc
import importlib.util
import platform
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from distillrun.api.profiles import HardwareProfile, load_profiles  # noqa: E402
from distillrun.api.spec import StudentSpec  # noqa: E402
from distillrun.jobs.student import (  # noqa: E402
    TinyQwen3Shape,
    quiet_library_progress,
    train_bpe_tokenizer,
)
from distillrun.jobs.training.memory import GIB  # noqa: E402
from distillrun.jobs.training.plan import TrainingPlan, make_plan  # noqa: E402
from distillrun.jobs.training.shapes import KNOWN_SHAPES, ModelShape  # noqa: E402
from distillrun.jobs.training.worker import (  # noqa: E402
    load_for_training,
    peft_config,
    training_arguments,
)

MODELS = {"qwen3-0.6b": "Qwen/Qwen3-0.6B", "qwen2.5-coder-1.5b": "Qwen/Qwen2.5-Coder-1.5B"}
NAIVE_BATCH = 4
GOAL = 2.0
PROMPT_TOKENS = (180, 600)
ANSWER_TOKENS = (30, 150)
SPECIAL_IDS = 3  # the tokenizer's <|endoftext|>, <|im_start|>, <|im_end|>


@dataclass(frozen=True)
class Measurement:
    recipe: str
    tokens_per_second: float
    peak_bytes: int | None
    mfu: float | None
    detail: str


def _device_profile(requested: str | None) -> str:
    import torch

    if requested:
        return requested
    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0)
    memory = torch.cuda.get_device_properties(0).total_memory / GIB
    if "H100" in name or "H200" in name:
        return "h100-80gb"
    if "4090" in name:
        return "rtx4090"
    return "a100-80gb" if memory > 60 else "a100-40gb"


def _hardware() -> str:
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return (
            f"{torch.cuda.get_device_name(0)} ({props.total_memory / GIB:.0f} GiB), "
            f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
            f"flash-attn {'yes' if importlib.util.find_spec('flash_attn') else 'no'}"
        )
    return f"CPU only: {platform.processor() or platform.machine()}, torch {torch.__version__}"


def _build_model(shape: ModelShape, out: Path) -> Path:
    """A model of `shape` with random weights, saved where `from_pretrained` can load it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        shape.model_type,
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        head_dim=shape.head_dim,
        tie_word_embeddings=shape.tie_word_embeddings,
        max_position_embeddings=8192,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    return out


def _examples(
    count: int, vocab: int, seq: int, rng: random.Random, scale: float
) -> list[dict[str, list[int]]]:
    """Token ids shaped like text-to-SQL examples; `completion_mask` marks the answer."""
    examples = []
    for _ in range(count):
        prompt = max(4, int(rng.randint(*PROMPT_TOKENS) * scale))
        answer = max(2, int(rng.randint(*ANSWER_TOKENS) * scale))
        prompt = min(prompt, seq - answer)
        ids = [rng.randrange(SPECIAL_IDS, vocab) for _ in range(prompt + answer)]
        examples.append({"input_ids": ids, "completion_mask": [0] * prompt + [1] * answer})
    return examples


def _tokenizer() -> Any:
    """Only its special tokens matter here (the data is already token ids)."""
    return train_bpe_tokenizer(["select count from where"], TinyQwen3Shape(vocab_size=300))


class _Timer:
    """Times the steps after `warmup` and counts their useful tokens."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.started = 0.0
        self.tokens_at_start = 0
        self.seconds = 0.0
        self.tokens = 0

    def callback(self) -> Any:
        from transformers import TrainerCallback

        timer = self

        class Timed(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                _synchronize()
                if state.global_step == timer.warmup:
                    timer.started = time.perf_counter()
                    timer.tokens_at_start = int(state.num_input_tokens_seen)
                elif state.global_step > timer.warmup:
                    timer.seconds = time.perf_counter() - timer.started
                    timer.tokens = int(state.num_input_tokens_seen) - timer.tokens_at_start

        return Timed()


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak() -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


def _mfu(
    tokens_per_second: float, shape: ModelShape, mean_length: float, peak: float | None
) -> float | None:
    if peak is None:
        return None
    flops = shape.flops_per_token(mean_length, weight_gradients=False)
    return tokens_per_second * flops / (peak * 1e12)


def _ours(
    model_dir: Path,
    examples: list[dict[str, list[int]]],
    plan: TrainingPlan,
    student: StudentSpec,
    steps: int,
    warmup: int,
    workdir: Path,
) -> _Timer:
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl.trainer.sft_trainer import SFTTrainer

    from distillrun.jobs.student import known_library_warnings

    timer = _Timer(warmup)
    model = load_for_training(str(model_dir), plan, plan.precision)
    arguments = training_arguments(
        plan,
        student.model_copy(update={"max_steps": warmup + steps}),
        plan.precision,
        workdir / "ours",
        deepspeed_config=None,
    )
    arguments.save_strategy = "no"
    arguments.logging_steps = 10_000
    with known_library_warnings():
        trainer = SFTTrainer(
            model=model,
            args=arguments,
            train_dataset=Dataset.from_list(examples),
            processing_class=_tokenizer(),
            peft_config=peft_config(student),
            callbacks=[timer.callback()],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return timer


def _naive(
    model_dir: Path,
    examples: list[dict[str, list[int]]],
    seq: int,
    steps: int,
    warmup: int,
    gpu: bool,
    workdir: Path,
) -> _Timer:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, PrinterCallback, Trainer, TrainingArguments

    from distillrun.jobs.student import known_library_warnings

    timer = _Timer(warmup)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with known_library_warnings():
        model = get_peft_model(
            base,
            LoraConfig(
                r=16,
                lora_alpha=32,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                task_type="CAUSAL_LM",
            ),
        )

    def pad_to_max_length(batch: list[dict[str, Any]]) -> dict[str, Any]:
        ids = torch.zeros((len(batch), seq), dtype=torch.long)
        mask = torch.zeros((len(batch), seq), dtype=torch.long)
        for row, example in enumerate(batch):
            tokens = example["input_ids"][:seq]
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    arguments = TrainingArguments(
        output_dir=str(workdir / "naive"),
        per_device_train_batch_size=NAIVE_BATCH,
        max_steps=warmup + steps,
        fp16=gpu,
        use_cpu=not gpu,
        report_to=[],
        save_strategy="no",
        logging_steps=10_000,
        disable_tqdm=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=Dataset.from_list([{"input_ids": e["input_ids"]} for e in examples]),
        data_collator=pad_to_max_length,
        callbacks=[timer.callback()],
    )
    trainer.remove_callback(PrinterCallback)
    with known_library_warnings():
        trainer.train()
    return timer


def bench_model(
    name: str,
    shape: ModelShape,
    profile: HardwareProfile,
    profiles: dict[str, HardwareProfile],
    seq: int,
    steps: int,
    warmup: int,
) -> list[Measurement]:
    import torch

    gpu = torch.cuda.is_available()
    scale = 1.0 if gpu else 0.1
    student = StudentSpec(
        model=name,
        hardware_profile=profile.name,
        gpus_per_worker=1 if profile.uses_gpu else 0,
        max_seq_length=seq,
        learning_rate=1e-4,
    )
    plan = make_plan(
        student,
        profile,
        shape,
        flash_attention=importlib.util.find_spec("flash_attn") is not None,
        profiles=profiles,
    )
    rng = random.Random(0)
    wanted = (warmup + steps) * max(
        plan.micro_batch_size * plan.gradient_accumulation_steps * 8, NAIVE_BATCH
    )
    examples = _examples(wanted, shape.vocab_size, seq, rng, scale)
    mean_length = sum(len(e["input_ids"]) for e in examples) / len(examples)
    peak_tflops = profile.gpu.peak_tflops if (profile.gpu is not None and gpu) else None
    results = []
    with tempfile.TemporaryDirectory(prefix="distillrun-bench-") as tmp:
        workdir = Path(tmp)
        model_dir = _build_model(shape, workdir / "model")
        for recipe in ("naive", "ours"):
            _reset_memory()
            if recipe == "ours":
                timer = _ours(model_dir, examples, plan, student, steps, warmup, workdir)
                detail = plan.describe()
            else:
                timer = _naive(model_dir, examples, seq, steps, warmup, gpu, workdir)
                detail = (
                    f"Trainer defaults, {'fp16' if gpu else 'fp32'}, batch {NAIVE_BATCH} padded to "
                    f"{seq}, no packing"
                )
            rate = timer.tokens / timer.seconds if timer.seconds else 0.0
            results.append(
                Measurement(
                    recipe, rate, _peak(), _mfu(rate, shape, mean_length, peak_tflops), detail
                )
            )
            gc.collect()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--profile", default=None, help="hardware profile (default: from the GPU)")
    parser.add_argument("--seq", type=int, default=None, help="maxSeqLength (GPU 1024, CPU 96)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (GPU 20, CPU 10)")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    import torch

    quiet_library_progress()
    gpu = torch.cuda.is_available()
    profiles = load_profiles()
    profile = profiles[_device_profile(args.profile)]
    seq = args.seq or (1024 if gpu else 96)
    steps = args.steps or (20 if gpu else 10)
    print(f"hardware: {_hardware()}")
    print(f"profile: {profile.name}; maxSeqLength {seq}; {steps} timed steps after {args.warmup}")
    if gpu:
        shapes = {name: KNOWN_SHAPES[MODELS[name]] for name in args.models.split(",")}
    else:
        tiny = TinyQwen3Shape()
        shapes = {
            "tiny-qwen3 (CPU path check)": ModelShape(
                "qwen3",
                tiny.hidden_size,
                tiny.intermediate_size,
                tiny.num_hidden_layers,
                tiny.num_attention_heads,
                tiny.num_key_value_heads,
                tiny.head_dim,
                tiny.vocab_size,
                True,
            )
        }
    for label, shape in shapes.items():
        results = bench_model(
            MODELS.get(label, "builtin:tiny-qwen3"),
            shape,
            profile,
            profiles,
            seq,
            steps,
            args.warmup,
        )
        print(f"\n{label} ({shape.params / 1e9:.2f}B parameters, LoRA r=16 q/k/v/o)")
        print(f"  {'recipe':<6} {'tokens/s/GPU':>13} {'MFU':>7} {'peak GiB':>9}  settings")
        for m in results:
            mfu = f"{m.mfu:.1%}" if m.mfu is not None else "n/a"
            peak = f"{m.peak_bytes / GIB:.1f}" if m.peak_bytes is not None else "n/a"
            print(f"  {m.recipe:<6} {m.tokens_per_second:>13,.0f} {mfu:>7} {peak:>9}  {m.detail}")
        naive, ours = results
        ratio = ours.tokens_per_second / naive.tokens_per_second if naive.tokens_per_second else 0
        memory_ok = (
            ours.peak_bytes is None
            or naive.peak_bytes is None
            or ours.peak_bytes <= naive.peak_bytes
        )
        if not gpu:
            print(f"  ours / naive: {ratio:.2f}x tokens/s (CPU: a check of the code path only)")
            continue
        verdict = "met" if ratio >= GOAL and memory_ok else "NOT met"
        print(
            f"  ours / naive: {ratio:.2f}x tokens/s, memory "
            f"{'not more' if memory_ok else 'MORE'} -- goal >= {GOAL:.0f}x at no more memory: "
            f"{verdict}"
        )


if __name__ == "__main__":
    main()
