"""The train stage: fine-tune the student on the validated dataset with trl's SFTTrainer.

Reads `dataset/train.jsonl`, formats every record as a conversational prompt-completion example
(`distillrun.jobs.prompting`, loss on the completion only) and trains a LoRA adapter (peft,
shaped by `spec.student.lora`) or, with `method: full`, every weight. Writes:

- `adapter/`: the adapter (`adapter_model.safetensors`, `adapter_config.json`) or, for a full
  fine-tune, the whole model, plus the tokenizer and a model card `README.md`;
- `train/metrics.json`: the loss at every logged step, steps, runtime, examples;
- `adapter/_done.json` last: the fingerprint (sha256 of the train dataset's bytes, the student
  spec, the base model's identity and the prompt format), so a rerun with the same inputs
  returns at once (`reused=True`) and anything else trains again.

This first depth trains in one process (CPU, or one GPU in bf16); multi-worker DeepSpeed is
the Ray entrypoint's business. QLoRA needs CUDA and bitsandbytes and fails with
`QLoRAUnavailable` without them.
"""

# mypy: disable-error-code="no-untyped-call"
# (transformers, peft and bitsandbytes configs have untyped constructors)

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillrun.api.spec import HardwareProfileName, StudentSpec, TrainingMethod
from distillrun.api.status import StageName
from distillrun.jobs import prompting
from distillrun.jobs.context import ProgressSink, StageContext, StageFailed, StageResult
from distillrun.jobs.student import (
    BASE_PREFIX,
    BUILTIN_SCHEME,
    Student,
    known_library_warnings,
    limit_torch_threads,
    load_model,
    load_tokenizer,
    model_dtype,
    quiet_library_progress,
    resolve_student,
    seed_everything,
    student_model_id,
)

if TYPE_CHECKING:
    from transformers import TrainerCallback

TRAIN_KEY = "dataset/train.jsonl"
ADAPTER_PREFIX = "adapter/"
ADAPTER_DONE_KEY = "adapter/_done.json"
METRICS_KEY = "train/metrics.json"

SEED = 0
"""Seeds weight init of the builtin student, adapter init, data order and dropout."""

PROMPT_FORMAT = 1
"""Bump when `prompting` renders examples differently: finished adapters then train again."""


def _is_cpu(spec: StudentSpec) -> bool:
    import torch

    return spec.hardware_profile == HardwareProfileName.CPU or not torch.cuda.is_available()


def _check_method(spec: StudentSpec) -> None:
    """QLoRA loads the base in 4 bits with bitsandbytes, which needs a CUDA GPU."""
    if spec.method != TrainingMethod.QLORA:
        return
    import torch

    if not torch.cuda.is_available():
        raise StageFailed(
            StageName.TRAIN,
            "QLoRAUnavailable",
            "method qlora needs a CUDA GPU (4-bit weights through bitsandbytes) and this "
            "worker has none; use method lora or full, or run on a GPU hardwareProfile",
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise StageFailed(
            StageName.TRAIN,
            "QLoRAUnavailable",
            "method qlora needs the bitsandbytes package, which is not installed in this "
            "image; use method lora, or install bitsandbytes",
        )


def _read_train_set(ctx: StageContext) -> tuple[bytes, list[dict[str, Any]]]:
    missing = (
        f"no training examples at {ctx.store.url(TRAIN_KEY)}: run the generate and validate "
        "stages first, or raise spec.teacher.targetExamples if validation rejected everything"
    )
    if not ctx.store.exists(TRAIN_KEY):
        raise StageFailed(StageName.TRAIN, "NoTrainingData", missing)
    data = ctx.store.get_bytes(TRAIN_KEY)
    records = [json.loads(line) for line in data.splitlines() if line.strip()]
    if not records:
        raise StageFailed(StageName.TRAIN, "NoTrainingData", missing)
    return data, records


def fingerprint(
    train_bytes: bytes, spec: StudentSpec, base_model_id: str, schema_fp: str, reasoning: bool
) -> str:
    """What a finished adapter depends on; equal fingerprints mean training would redo it."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(train_bytes).digest())
    material = {
        "student": spec.model_dump(mode="json"),
        "base": base_model_id,
        "schema": schema_fp,
        "reasoning": reasoning,
        "prompt_format": PROMPT_FORMAT,
        "seed": SEED,
    }
    digest.update(json.dumps(material, sort_keys=True).encode())
    return digest.hexdigest()


def _builtin_corpus(
    ctx: StageContext, records: Sequence[Mapping[str, Any]], reasoning: bool
) -> list[str] | None:
    if not ctx.run.spec.student.model.startswith(BUILTIN_SCHEME):
        return None
    return prompting.builtin_tokenizer_corpus(records, ctx.schema, reasoning=reasoning)


def _progress_callback(sink: ProgressSink) -> TrainerCallback:
    """A TrainerCallback that reports every logged step to the stage's ProgressSink and keeps
    the loss history."""
    from transformers import TrainerCallback

    class ProgressReporter(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict[str, float | int]] = []

        def on_log(
            self,
            args: Any,
            state: Any,
            control: Any,
            logs: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            if not logs or "loss" not in logs:
                return
            point: dict[str, float | int] = {"step": int(state.global_step)}
            for name in ("loss", "grad_norm", "learning_rate"):
                if name in logs:
                    point[name] = float(logs[name])
            self.history.append(point)
            sink.counts(
                StageName.TRAIN,
                {"step": point["step"], "loss": point["loss"]},
                total=int(state.max_steps) or None,
            )

    return ProgressReporter()


def _peft_config(spec: StudentSpec) -> Any:
    if spec.method == TrainingMethod.FULL:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=spec.lora.r,
        lora_alpha=spec.lora.alpha,
        lora_dropout=spec.lora.dropout,
        target_modules=list(spec.lora.target_modules),
        task_type="CAUSAL_LM",
    )


def _load_base(student: Student, spec: StudentSpec) -> Any:
    if spec.method != TrainingMethod.QLORA:
        return load_model(student.location, dtype=model_dtype(spec))
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        student.location, quantization_config=quantization, dtype=torch.bfloat16
    )
    return prepare_model_for_kbit_training(model)


def _count_truncated(tokenizer: Any, examples: Sequence[Mapping[str, Any]], max_length: int) -> int:
    truncated = 0
    for example in examples:
        ids = tokenizer.apply_chat_template(
            list(example["prompt"]) + list(example["completion"]),
            tokenize=True,
            return_dict=False,
            **prompting.CHAT_TEMPLATE_KWARGS,
        )
        if len(ids) > max_length:
            truncated += 1
    return truncated


def _clear_prefix(ctx: StageContext, prefix: str) -> None:
    """Removes an older adapter (done marker first), so no file of it outlives the new one."""
    ctx.store.delete(ADAPTER_DONE_KEY)
    for key in ctx.store.list_keys(prefix):
        ctx.store.delete(key)


def _base_reference(ctx: StageContext, student: Student) -> str:
    """Where a user finds the base this adapter goes on (the model card, adapter_config.json)."""
    if student.kind == "builtin":
        return ctx.store.url(BASE_PREFIX)
    return student.model_id


def _model_card(
    ctx: StageContext,
    student: Student,
    summary: Mapping[str, Any],
    *,
    truncated: int,
) -> str:
    spec = ctx.run.spec.student
    method = str(spec.method)
    lora = (
        f"- LoRA: r={spec.lora.r}, alpha={spec.lora.alpha}, dropout={spec.lora.dropout}, "
        f"target modules: {', '.join(spec.lora.target_modules)}\n"
        if spec.method != TrainingMethod.FULL
        else ""
    )
    final_loss = summary["final_loss"]
    loss_text = f"{final_loss:.4f}" if isinstance(final_loss, float) else "n/a"
    library = "peft" if spec.method != TrainingMethod.FULL else "transformers"
    return (
        "---\n"
        f"base_model: {_base_reference(ctx, student)}\n"
        f"library_name: {library}\n"
        "pipeline_tag: text-generation\n"
        f"tags: [distillrun, text-to-sql, {ctx.schema.dialect}, {method}]\n"
        "---\n\n"
        f"# {ctx.run.metadata.name}: text-to-SQL student\n\n"
        f"Fine-tuned by distillrun to write {ctx.schema.dialect} SQL for one schema "
        f"(schema sha256 `{ctx.schema.fingerprint[:16]}`).\n\n"
        f"- Base model: `{student.model_id}`\n"
        f"- Method: {method}\n"
        f"{lora}"
        f"- Hardware profile: {spec.hardware_profile}\n"
        f"- Training examples: {summary['examples']} ({truncated} truncated to "
        f"{spec.max_seq_length} tokens)\n"
        f"- Optimizer steps: {summary['steps']}, epochs: {spec.epochs}, "
        f"learning rate: {spec.learning_rate}, micro batch: {spec.micro_batch_size}\n"
        f"- Final training loss: {loss_text}\n"
        f"- Explanations in the target: {'yes' if ctx.run.spec.teacher.reasoning else 'no'}\n\n"
        "Prompts are chat messages: a system message with the dialect and the schema's DDL, "
        "a user message with the question; answers end in a ```sql fenced block. Use "
        "`distillrun.jobs.prompting` to build prompts and `extract_sql` to read answers.\n"
    )


def run(ctx: StageContext) -> StageResult:
    """Trains the adapter, or reuses the stored one when its inputs have not changed."""
    spec = ctx.run.spec.student
    reasoning = ctx.run.spec.teacher.reasoning
    _check_method(spec)
    train_bytes, records = _read_train_set(ctx)
    corpus = _builtin_corpus(ctx, records, reasoning)
    base_id = student_model_id(spec, stage=StageName.TRAIN, corpus=corpus, seed=SEED)
    wanted = fingerprint(train_bytes, spec, base_id, ctx.schema.fingerprint, reasoning)

    if ctx.store.exists(ADAPTER_DONE_KEY):
        done = ctx.store.get_json(ADAPTER_DONE_KEY)
        if done.get("fingerprint") == wanted:
            ctx.progress.note(StageName.TRAIN, "adapter is up to date with its inputs; reused")
            return StageResult(StageName.TRAIN, dict(done["summary"]), reused=True)

    with tempfile.TemporaryDirectory(prefix="distillrun-train-") as tmp:
        summary = _train(ctx, records, corpus, wanted, Path(tmp))
    return StageResult(StageName.TRAIN, summary)


def _train(
    ctx: StageContext,
    records: list[dict[str, Any]],
    corpus: list[str] | None,
    wanted: str,
    workdir: Path,
) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    spec = ctx.run.spec.student
    reasoning = ctx.run.spec.teacher.reasoning
    quiet_library_progress()
    limit_torch_threads()
    seed_everything(SEED)

    student = resolve_student(
        spec, ctx.store, workdir, stage=StageName.TRAIN, corpus=corpus, seed=SEED
    )
    ctx.progress.note(StageName.TRAIN, f"student base: {student.model_id}")
    tokenizer = load_tokenizer(student.location)
    model = _load_base(student, spec)
    examples = [prompting.training_example(r, ctx.schema, reasoning=reasoning) for r in records]
    truncated = _count_truncated(tokenizer, examples, spec.max_seq_length)
    if truncated:
        ctx.progress.note(
            StageName.TRAIN,
            f"{truncated} of {len(examples)} examples are longer than maxSeqLength "
            f"{spec.max_seq_length} and are cut at the end",
        )

    cpu = _is_cpu(spec)
    steps_per_epoch = math.ceil(len(examples) / spec.micro_batch_size)
    planned_steps = spec.max_steps or steps_per_epoch * spec.epochs
    config = SFTConfig(
        output_dir=str(workdir / "trainer"),
        per_device_train_batch_size=spec.micro_batch_size,
        num_train_epochs=float(spec.epochs),
        max_steps=spec.max_steps or -1,
        learning_rate=spec.learning_rate,
        max_length=spec.max_seq_length,
        completion_only_loss=True,
        packing=False,
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        push_to_hub=False,
        use_cpu=cpu,
        bf16=not cpu,
        fp16=False,
        activation_checkpointing=False,
        disable_tqdm=True,
        dataloader_pin_memory=not cpu,
        seed=SEED,
        data_seed=SEED,
    )
    reporter = _progress_callback(ctx.progress)
    ctx.progress.counts(StageName.TRAIN, {"step": 0}, total=planned_steps)
    with known_library_warnings():
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(examples),
            processing_class=tokenizer,
            peft_config=_peft_config(spec),
            callbacks=[reporter],
        )
    # Our reporter replaces the console printers (the CLI draws the ProgressSink).
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    prepared: Any = trainer.train_dataset
    used = len(prepared) if prepared is not None else 0
    started = time.monotonic()
    result = trainer.train()
    runtime = time.monotonic() - started

    history: list[dict[str, float | int]] = list(getattr(reporter, "history", []))
    final_loss = float(history[-1]["loss"]) if history else None
    steps = int(trainer.state.global_step)

    adapter_dir = workdir / "adapter"
    trained: Any = trainer.model
    if spec.method != TrainingMethod.FULL:
        trained.peft_config["default"].base_model_name_or_path = _base_reference(ctx, student)
        # The vocabulary is never resized, so no embedding matrix goes with the adapter (and
        # peft need not look the base up, on a hub or elsewhere, to find that out).
        trained.save_pretrained(adapter_dir, save_embedding_layers=False)
    else:
        trained.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    summary: dict[str, Any] = {
        "steps": steps,
        "final_loss": final_loss,
        "examples": used,
        "adapter": ctx.store.url(ADAPTER_PREFIX),
    }
    (adapter_dir / "README.md").write_text(
        _model_card(ctx, student, summary, truncated=truncated), encoding="utf-8"
    )
    _clear_prefix(ctx, ADAPTER_PREFIX)
    ctx.store.put_tree(ADAPTER_PREFIX, adapter_dir)
    metrics = {
        "steps": steps,
        "examples": used,
        "examples_truncated": truncated,
        "examples_dropped": len(examples) - used,
        "epochs": spec.epochs,
        "final_loss": final_loss,
        "train_loss": float(result.training_loss),
        "runtime_s": round(runtime, 3),
        "loss_history": history,
        "base_model": student.model_id,
        "method": str(spec.method),
        "hardware_profile": str(spec.hardware_profile),
    }
    ctx.store.put_json(METRICS_KEY, metrics)
    ctx.store.put_json(
        ADAPTER_DONE_KEY,
        {
            "fingerprint": wanted,
            "base_model": student.model_id,
            "method": str(spec.method),
            "summary": summary,
        },
    )  # last: the adapter is complete once this exists
    return summary
