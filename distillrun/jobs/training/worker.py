"""The training loop one worker runs: the same function in-process (one CPU worker) and in
every Ray Train worker (`distillrun.jobs.training.launch`).

A worker resumes from the latest complete checkpoint in the store if there is one, loads the
base model as the plan says (dtype, attention kernel, 4-bit for QLoRA), and trains with trl's
`SFTTrainer`: conversational prompt-completion examples with the loss on the completion only,
packed padding-free batches when the plan says so, a DeepSpeed config from the plan, activation
checkpointing from the plan. Callbacks report progress (rank 0), score a holdout sample every N
steps (all ranks generate their share, rank 0 runs the SQL), and store a checkpoint every N
steps (`checkpoints`). At the end every rank takes part in gathering the weights and rank 0
stores the candidate adapter with its model card, the training metrics (loss and sample
accuracy curves) and, last, the done marker.

Errors a user can act on are raised as `TrainingRefused`, which survives the trip from a Ray
worker back to the driver with its reason.
"""

# mypy: disable-error-code="no-untyped-call"
# (transformers, peft and bitsandbytes configs have untyped constructors)

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillrun.api.failures import FailureReason
from distillrun.api.layout import CANDIDATE_DONE_KEY, CANDIDATE_PREFIX, TRAIN_METRICS_KEY
from distillrun.api.spec import ComparisonSpec, SandboxSpec, StudentSpec, TrainingMethod
from distillrun.api.status import StageName
from distillrun.jobs import prompting
from distillrun.jobs.context import ProgressSink
from distillrun.jobs.student import (
    known_library_warnings,
    limit_torch_threads,
    load_tokenizer,
    quiet_library_progress,
    resolve_student,
    seed_everything,
)
from distillrun.jobs.training import checkpoints, scoring
from distillrun.jobs.training.card import CardFacts, render
from distillrun.jobs.training.layout import SEED
from distillrun.jobs.training.plan import TrainingPlan
from distillrun.sql.schema import SchemaInfo
from distillrun.store import Store, open_store

if TYPE_CHECKING:
    from transformers import TrainerCallback

SAMPLE_ACCURACY = "sample_execution_accuracy"
"""The log-history key of the holdout-sample accuracy (kept in checkpoints with the losses)."""


class TrainingRefused(Exception):
    """A training that cannot go on for a reason the user can fix; `reason` is CamelCase.
    Picklable, so it reaches the driver from a Ray worker intact."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)

    def __reduce__(self) -> tuple[type[TrainingRefused], tuple[str, str]]:
        return (type(self), (self.reason, self.message))


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs; built by the train stage, shipped to every worker."""

    store_uri: str
    run_name: str
    student: StudentSpec
    plan: TrainingPlan
    deepspeed_config: dict[str, Any] | None
    """The plan's DeepSpeed config, read where the plan was made (a team's file included)."""
    fingerprint: str
    base_model_id: str
    base_reference: str
    records: list[dict[str, Any]]
    eval_sample: list[dict[str, Any]]
    eval_every_steps: int
    max_new_tokens: int
    reasoning: bool
    with_schema: bool
    """Whether prompts carry the schema (`spec.student.schemaInPrompt`)."""
    schema: SchemaInfo
    seed_sql: str | None
    sandbox: SandboxSpec
    comparison: ComparisonSpec
    launch_token: str
    threads: int | None
    """Torch threads per worker; None: every core this process may use (in-process)."""


@dataclass(frozen=True)
class _Ranks:
    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def node_main(self) -> bool:
        return self.local_rank == 0


def _ranks() -> _Ranks:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return _Ranks(dist.get_rank(), dist.get_world_size(), local)
    return _Ranks(0, 1, 0)


def _barrier() -> None:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def _gather(obj: Any, ranks: _Ranks) -> list[Any]:
    import torch.distributed as dist

    if ranks.world == 1:
        return [obj]
    gathered: list[Any] = [None] * ranks.world
    dist.all_gather_object(gathered, obj)
    return gathered


def _check_accelerator(plan: TrainingPlan) -> None:
    import torch

    if plan.accelerator == "cuda" and not torch.cuda.is_available():
        reason = (
            FailureReason.QLORA_UNAVAILABLE
            if plan.method == TrainingMethod.QLORA
            else FailureReason.NO_GPU
        )
        raise TrainingRefused(
            reason,
            f"hardware profile {plan.profile} trains on CUDA GPUs but this worker sees none "
            f"(method {plan.method}); run it where the GPUs are, or use a cpu profile",
        )
    if plan.method == TrainingMethod.QLORA and importlib.util.find_spec("bitsandbytes") is None:
        raise TrainingRefused(
            FailureReason.QLORA_UNAVAILABLE,
            "method qlora needs the bitsandbytes package, which this image does not have; "
            "use method lora, or install bitsandbytes in the training image",
        )


def _precision(plan: TrainingPlan, progress: ProgressSink, ranks: _Ranks) -> str:
    """The profile's precision, or fp16 on a GPU without bf16 (older than Ampere)."""
    import torch

    cuda_bf16 = plan.precision == "bf16" and plan.accelerator == "cuda"
    if cuda_bf16 and not torch.cuda.is_bf16_supported():
        if ranks.main:
            progress.note(StageName.TRAIN, "this GPU has no bf16: training in fp16")
        return "fp16"
    return plan.precision


def _attention(plan: TrainingPlan) -> str:
    if plan.attention == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        return "sdpa"
    return plan.attention


def load_for_training(location: str, plan: TrainingPlan, precision: str) -> Any:
    """The base model as the plan trains it: dtype, attention kernel, 4-bit for QLoRA."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    compute = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    attention = _attention(plan)
    if plan.method == TrainingMethod.QLORA:
        from peft import prepare_model_for_kbit_training

        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_quant_storage=compute,
        )
        model = AutoModelForCausalLM.from_pretrained(
            location,
            quantization_config=quantization,
            dtype=compute,
            attn_implementation=attention,
            device_map={"": torch.cuda.current_device()},
        )
        return prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=plan.gradient_checkpointing
        )
    # LoRA keeps the frozen base in the compute dtype; a full fine-tune keeps fp32 weights
    # (autocast, or DeepSpeed's own 16-bit copy with fp32 masters).
    dtype = compute if plan.method == TrainingMethod.LORA else torch.float32
    return AutoModelForCausalLM.from_pretrained(
        location, dtype=dtype, attn_implementation=attention
    )


def training_arguments(
    plan: TrainingPlan,
    student: StudentSpec,
    precision: str,
    output_dir: Path,
    *,
    deepspeed_config: dict[str, Any] | None,
) -> Any:
    """The trl `SFTConfig` a plan trains with (the benchmark measures exactly these)."""
    from trl.trainer.sft_config import SFTConfig

    checkpointing = plan.gradient_checkpointing
    return SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=plan.micro_batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        num_train_epochs=float(student.epochs),
        max_steps=student.max_steps or -1,
        learning_rate=student.learning_rate,
        max_length=plan.max_seq_length,
        completion_only_loss=True,
        packing=plan.packing,
        packing_strategy="bfd",
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="steps",
        save_steps=student.checkpoint_every_steps,
        save_total_limit=1,
        report_to=[],
        push_to_hub=False,
        use_cpu=plan.accelerator == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        deepspeed=deepspeed_config,
        ddp_find_unused_parameters=False,
        disable_tqdm=True,
        dataloader_pin_memory=plan.accelerator == "cuda",
        seed=SEED,
        data_seed=SEED,
        include_num_input_tokens_seen="non_padding",
    )


def peft_config(student: StudentSpec) -> Any:
    if student.method == TrainingMethod.FULL:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=student.lora.r,
        lora_alpha=student.lora.alpha,
        lora_dropout=student.lora.dropout,
        target_modules=list(student.lora.target_modules),
        task_type="CAUSAL_LM",
    )


def count_cut(
    tokenizer: Any, examples: Sequence[Mapping[str, Any]], max_length: int
) -> tuple[int, int]:
    """(truncated, dropped): examples longer than `max_length`, and those whose prompt alone
    fills it, so nothing of the answer is left to learn (trl drops them)."""
    truncated = dropped = 0
    for example in examples:
        prompt = tokenizer.apply_chat_template(
            list(example["prompt"]),
            tokenize=True,
            return_dict=False,
            add_generation_prompt=True,
            **prompting.CHAT_TEMPLATE_KWARGS,
        )
        whole = tokenizer.apply_chat_template(
            list(example["prompt"]) + list(example["completion"]),
            tokenize=True,
            return_dict=False,
            **prompting.CHAT_TEMPLATE_KWARGS,
        )
        truncated += len(whole) > max_length
        dropped += len(prompt) >= max_length
    return truncated, dropped


def _progress_callback(progress: ProgressSink, ranks: _Ranks) -> TrainerCallback:
    from transformers import TrainerCallback

    class ProgressReporter(TrainerCallback):
        """Reports every logged loss to the stage's ProgressSink (rank 0 only)."""

        def on_log(
            self,
            args: Any,
            state: Any,
            control: Any,
            logs: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            if not ranks.main or not logs or "loss" not in logs:
                return
            progress.counts(
                StageName.TRAIN,
                {"step": int(state.global_step), "loss": float(logs["loss"])},
                total=int(state.max_steps) or None,
            )

    return ProgressReporter()


class _Throughput:
    """Tokens trained on (without padding, every rank) and seconds, over this attempt only."""

    def __init__(self) -> None:
        self.tokens = 0
        self.seconds = 0.0


def _throughput_callback(throughput: _Throughput) -> TrainerCallback:
    from transformers import TrainerCallback

    class Throughput(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._tokens = int(state.num_input_tokens_seen)
            self._started = time.monotonic()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            throughput.tokens = int(state.num_input_tokens_seen) - self._tokens
            throughput.seconds = time.monotonic() - self._started

    return Throughput()


def _checkpoint_callback(
    store: Store, job: WorkerJob, ranks: _Ranks, progress: ProgressSink
) -> TrainerCallback:
    from transformers import TrainerCallback

    class StoreCheckpoints(TrainerCallback):
        """After the trainer writes a checkpoint: every node uploads its files, then rank 0
        marks it complete and prunes older ones."""

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # The trainer also saves after the last step; the stored adapter follows at once,
            # so that checkpoint would only cost time.
            if state.global_step >= state.max_steps:
                control.should_save = False

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step = int(state.global_step)
            local = Path(args.output_dir) / f"checkpoint-{step}"
            _barrier()  # every rank has written its files
            if ranks.node_main and local.is_dir():
                checkpoints.upload(store, step, local)
                if not ranks.main:  # the trainer rotates only rank 0's copies
                    shutil.rmtree(local, ignore_errors=True)
            _barrier()  # every node has uploaded
            if ranks.main:
                checkpoints.commit(
                    store,
                    step,
                    job.fingerprint,
                    {"world_size": ranks.world, "deepspeed": job.plan.deepspeed},
                )
                checkpoints.prune(store, job.fingerprint)
                progress.note(StageName.TRAIN, f"checkpoint at step {step} stored")

    return StoreCheckpoints()


def _sample_callback(
    job: WorkerJob, tokenizer: Any, ranks: _Ranks, progress: ProgressSink
) -> TrainerCallback:
    from transformers import TrainerCallback

    zero_config = (job.deepspeed_config or {}).get("zero_optimization") or {}
    synced = int(zero_config.get("stage", 0)) >= 3

    class SampleAccuracy(TrainerCallback):
        """Execution accuracy on the holdout sample every N steps, into the log history."""

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step = int(state.global_step)
            if not job.eval_sample or step % job.eval_every_steps:
                return
            model = kwargs["model"]
            share = -(-len(job.eval_sample) // ranks.world)
            mine = job.eval_sample[ranks.rank * share : (ranks.rank + 1) * share]
            # Every rank generates the same number of batches (ZeRO-3 steps them together).
            questions = [str(r["question"]) for r in mine] or [str(job.eval_sample[0]["question"])]
            questions += [questions[-1]] * (share - len(questions))
            model.eval()
            try:
                answers = scoring.generate_answers(
                    model,
                    tokenizer,
                    job.schema,
                    questions,
                    reasoning=job.reasoning,
                    with_schema=job.with_schema,
                    max_new_tokens=job.max_new_tokens,
                    synced_gpus=synced,
                )
            finally:
                model.train()
            gathered = _gather(answers[: len(mine)], ranks)
            if not ranks.main:
                return
            ordered = [answer for part in gathered for answer in part]
            predictions = scoring.score(
                job.eval_sample,
                ordered,
                job.schema,
                job.seed_sql,
                job.sandbox,
                comparison=job.comparison,
            )
            result = scoring.accuracy(predictions)
            state.log_history.append(
                {
                    "step": step,
                    SAMPLE_ACCURACY: result["execution_accuracy"],
                    "sample_examples": result["examples"],
                }
            )
            progress.note(
                StageName.TRAIN,
                f"step {step}: execution accuracy {result['execution_accuracy']:.3f} on a "
                f"{result['examples']}-example holdout sample",
            )

    return SampleAccuracy()


def _node_directory(job: WorkerJob, ranks: _Ranks) -> Path:
    """Scratch space shared by the processes of one node, fresh for each attempt."""
    path = Path(tempfile.gettempdir()) / "distillrun-train" / f"{job.launch_token}"
    if ranks.node_main:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    _barrier()
    return path


def _resume_point(
    store: Store, job: WorkerJob, ranks: _Ranks, node_dir: Path, progress: ProgressSink
) -> tuple[Path | None, int]:
    """Where to resume from (downloaded once per node) and its step; (None, 0) to start."""
    if ranks.main:
        checkpoints.prune(store, job.fingerprint)  # drops what a killed attempt left half-done
    _barrier()
    found = checkpoints.latest(store, job.fingerprint)
    if found is None:
        return None, 0
    local = node_dir / "resume" / f"checkpoint-{found.step}"
    if ranks.node_main:
        checkpoints.download(store, found, local)
    _barrier()
    if ranks.main:
        progress.note(StageName.TRAIN, f"resuming from the checkpoint at step {found.step}")
    return local, found.step


def _history(log_history: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], ...]:
    losses: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for entry in log_history:
        if "loss" in entry:
            point: dict[str, Any] = {"step": int(entry["step"])}
            for name in ("loss", "grad_norm", "learning_rate", "epoch"):
                if name in entry:
                    point[name] = float(entry[name])
            losses.append(point)
        elif SAMPLE_ACCURACY in entry:
            samples.append(
                {
                    "step": int(entry["step"]),
                    "execution_accuracy": float(entry[SAMPLE_ACCURACY]),
                    "examples": int(entry["sample_examples"]),
                }
            )
    return losses, samples


def train_worker(job: WorkerJob, progress: ProgressSink) -> None:
    """Trains (or resumes training) and, on rank 0, stores the candidate adapter."""
    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback
    from trl.trainer.sft_trainer import SFTTrainer

    ranks = _ranks()
    plan = job.plan
    _check_accelerator(plan)
    quiet_library_progress()
    if job.threads is None:
        limit_torch_threads()
    else:
        import torch

        torch.set_num_threads(job.threads)
    seed_everything(SEED)
    store = open_store(job.store_uri)
    node_dir = _node_directory(job, ranks)
    try:
        resume_dir, resumed_from = _resume_point(store, job, ranks, node_dir, progress)
        student = resolve_student(
            job.student, store, node_dir / f"rank-{ranks.rank}", stage=StageName.TRAIN
        )
        precision = _precision(plan, progress, ranks)
        tokenizer = load_tokenizer(student.location)
        model = load_for_training(student.location, plan, precision)
        examples = [
            prompting.training_example(
                r, job.schema, reasoning=job.reasoning, with_schema=job.with_schema
            )
            for r in job.records
        ]
        truncated, dropped = count_cut(tokenizer, examples, plan.max_seq_length)
        if dropped == len(examples):  # trl would drop them all and the sampler crash on none
            raise TrainingRefused(
                FailureReason.EXAMPLES_TOO_LONG,
                f"all {len(examples)} examples have prompts (instructions, schema, question) "
                f"of at least {plan.max_seq_length} tokens, the sequence limit, so no answer is "
                "left to learn: raise spec.student.maxSeqLength (up to the student's context) "
                "or give a schema with only the tables the questions need",
            )
        if ranks.main and truncated:
            progress.note(
                StageName.TRAIN,
                f"{truncated} of {len(examples)} examples are longer than {plan.max_seq_length} "
                f"tokens and are cut at the end ({dropped} have no room left for the answer "
                "and are left out)",
            )
        config = training_arguments(
            plan,
            job.student,
            precision,
            node_dir / "trainer",
            deepspeed_config=job.deepspeed_config,
        )
        throughput = _Throughput()
        callbacks = [
            _progress_callback(progress, ranks),
            _throughput_callback(throughput),
            _checkpoint_callback(store, job, ranks, progress),
            _sample_callback(job, tokenizer, ranks, progress),
        ]
        if ranks.main:
            progress.counts(StageName.TRAIN, {"step": resumed_from})
        with known_library_warnings():
            trainer = SFTTrainer(
                model=model,
                args=config,
                train_dataset=Dataset.from_list(examples),
                processing_class=tokenizer,
                peft_config=peft_config(job.student),
                callbacks=callbacks,
            )
            # Our reporter replaces the console printers (the CLI draws the ProgressSink).
            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
            result = trainer.train(
                resume_from_checkpoint=str(resume_dir) if resume_dir is not None else None
            )
            final_dir = node_dir / "final"
            trainer.save_model(str(final_dir))  # every rank: ZeRO-3 gathers the weights
        if ranks.main:
            _store_candidate(
                store,
                job,
                trainer,
                tokenizer,
                final_dir,
                {
                    "examples": len(examples) - dropped,
                    "truncated": truncated,
                    "dropped": dropped,
                    "runtime_s": round(throughput.seconds, 3),
                    "tokens_per_second": (
                        round(throughput.tokens / throughput.seconds, 1)
                        if throughput.seconds
                        else None
                    ),
                    "gpu_memory_peak_bytes": _gpu_peak_bytes(),
                    "train_loss": float(result.training_loss),
                    "resumed_from_step": resumed_from,
                },
            )
        _barrier()
    finally:
        if ranks.node_main:
            shutil.rmtree(node_dir, ignore_errors=True)


def _gpu_peak_bytes() -> int | None:
    """The most GPU memory this process had allocated (rank 0's; None without CUDA)."""
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


def _store_candidate(
    store: Store,
    job: WorkerJob,
    trainer: Any,
    tokenizer: Any,
    final_dir: Path,
    numbers: dict[str, Any],
) -> None:
    """Rank 0: the adapter, tokenizer and card to `train/adapter/`, the metrics, the marker."""
    losses, samples = _history(trainer.state.log_history)
    final_loss = float(losses[-1]["loss"]) if losses else None
    steps = int(trainer.state.global_step)
    (final_dir / "training_args.bin").unlink(missing_ok=True)
    adapter_config = final_dir / "adapter_config.json"
    if adapter_config.exists():  # say where the base is, not where this worker had it
        data = json.loads(adapter_config.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = job.base_reference
        adapter_config.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(final_dir)
    lora = job.student.lora
    facts: CardFacts = {
        "run": job.run_name,
        "dialect": str(job.schema.dialect),
        "schema_fingerprint": job.schema.fingerprint,
        "base_model": job.base_model_id,
        "base_reference": job.base_reference,
        "method": str(job.student.method),
        "lora": (
            None
            if job.student.method == TrainingMethod.FULL
            else f"r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, "
            f"target modules: {', '.join(lora.target_modules)}"
        ),
        "profile": job.plan.profile,
        "plan": job.plan.describe(),
        "examples": int(numbers["examples"]),
        "truncated": int(numbers["truncated"]),
        "dropped": int(numbers["dropped"]),
        "max_seq_length": job.plan.max_seq_length,
        "steps": steps,
        "epochs": job.student.epochs,
        "learning_rate": job.student.learning_rate,
        "final_loss": final_loss,
        "reasoning": job.reasoning,
    }
    (final_dir / "README.md").write_text(render(facts), encoding="utf-8")
    store.delete(CANDIDATE_DONE_KEY)  # first: a half-replaced candidate is never complete
    for key in store.list_keys(CANDIDATE_PREFIX):
        store.delete(key)
    store.put_tree(CANDIDATE_PREFIX, final_dir)
    summary = {
        "steps": steps,
        "final_loss": final_loss,
        "examples": numbers["examples"],
        "adapter": store.url(CANDIDATE_PREFIX),
        "resumed_from_step": numbers["resumed_from_step"],
        "plan": job.plan.describe(),
    }
    store.put_json(
        TRAIN_METRICS_KEY,
        {
            "steps": steps,
            "examples": numbers["examples"],
            "examples_truncated": numbers["truncated"],
            "examples_dropped": numbers["dropped"],
            "epochs": job.student.epochs,
            "final_loss": final_loss,
            "train_loss": numbers["train_loss"],
            "runtime_s": numbers["runtime_s"],
            "tokens_per_second": numbers["tokens_per_second"],
            "gpu_memory_peak_bytes": numbers["gpu_memory_peak_bytes"],
            "resumed_from_step": numbers["resumed_from_step"],
            "loss_history": losses,
            "sample_accuracy_history": samples,
            "base_model": job.base_model_id,
            "method": str(job.student.method),
            "hardware_profile": job.plan.profile,
            "plan": job.plan.model_dump(mode="json"),
        },
    )
    store.put_json(
        CANDIDATE_DONE_KEY,
        {
            "fingerprint": job.fingerprint,
            "base_model": job.base_model_id,
            "method": str(job.student.method),
            "summary": summary,
            "card": dict(facts),
        },
    )  # last: the candidate is complete once this exists
    checkpoints.prune(store, job.fingerprint, keep=0)  # scaffolding, now that it is stored
