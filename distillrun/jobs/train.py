"""The train stage: fine-tune the student on the validated dataset.

Reads `dataset/train.jsonl`, finds or builds the base model, and plans the training from the
student spec and its hardware profile (`training.plan`): precision, DeepSpeed config, micro
batch and accumulation, sequence limit, activation checkpointing, packing -- downgraded, with a
note saying why, when the GPU memory estimate says the asked-for settings do not fit, and
refused (`InsufficientGPUMemory`, with what would fit) when nothing does. Training then runs
in-process for one CPU worker or on Ray Train across `workers x gpusPerWorker`
(`training.launch`), with checkpoints in the store every `checkpointEverySteps` steps so a lost
worker or driver resumes where it was.

Writes (see `training.layout`):

- `train/adapter/`: the candidate -- the adapter (`adapter_model.safetensors`,
  `adapter_config.json`) or, for a full fine-tune, the whole model, plus the tokenizer and a
  model card; evaluation publishes it under `adapter/` only if it passes the accuracy gate;
- `train/metrics.json`: loss curve, holdout-sample accuracy curve, plan, counts, runtime;
- `train/adapter/_done.json` last: the fingerprint (the train dataset's bytes, the student
  spec, the base model's identity, the hardware profile, the prompt format), so a rerun with the
  same inputs returns at once (`reused=True`) and anything else trains again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distillrun.api.failures import FailureReason
from distillrun.api.layout import (
    BASE_PREFIX,
    CANDIDATE_DONE_KEY,
    CANDIDATE_PREFIX,
    HOLDOUT_KEY,
    TRAIN_KEY,
)
from distillrun.api.profiles import HardwareProfile, ProfileError, load_profiles
from distillrun.api.spec import StudentSpec
from distillrun.api.status import StageName
from distillrun.jobs import prompting
from distillrun.jobs.context import StageContext, StageFailed, StageResult, read_dataset
from distillrun.jobs.student import (
    BUILTIN_SCHEME,
    Student,
    quiet_library_progress,
    resolve_student,
    student_model_id,
)
from distillrun.jobs.training import zero
from distillrun.jobs.training.launch import run_training, runs_in_process
from distillrun.jobs.training.layout import SEED
from distillrun.jobs.training.plan import PlanRefused, TrainingPlan, make_plan
from distillrun.jobs.training.shapes import KNOWN_SHAPES, ModelShape
from distillrun.jobs.training.worker import WorkerJob

PROMPT_FORMAT = 1
"""Bump when `prompting` renders examples differently: finished adapters then train again."""

TRAINING_FORMAT = 2
"""Bump when the training loop changes what it produces: candidates then train again."""

_NOT_IN_FINGERPRINT = {"checkpoint_every_steps", "merge_weights"}
"""Student fields that change neither the trained weights nor their meaning."""


def _read_train_set(ctx: StageContext) -> tuple[bytes, list[dict[str, Any]]]:
    missing = (
        f"no training examples at {ctx.store.url(TRAIN_KEY)}: run the generate and validate "
        "stages first, or raise spec.teacher.targetExamples if validation rejected everything"
    )
    return read_dataset(ctx, TRAIN_KEY, StageName.TRAIN, FailureReason.NO_TRAINING_DATA, missing)


def _profiles(spec: StudentSpec) -> tuple[HardwareProfile, dict[str, HardwareProfile]]:
    try:
        profiles = load_profiles()
    except ProfileError as exc:
        raise StageFailed(
            StageName.TRAIN, FailureReason.INVALID_HARDWARE_PROFILE, str(exc)
        ) from None
    if spec.hardware_profile not in profiles:
        raise StageFailed(
            StageName.TRAIN,
            FailureReason.UNKNOWN_HARDWARE_PROFILE,
            f"spec.student.hardwareProfile {spec.hardware_profile!r} is not a known profile; "
            f"known profiles: {', '.join(sorted(profiles))}",
        )
    return profiles[spec.hardware_profile], profiles


def fingerprint(
    train_bytes: bytes,
    spec: StudentSpec,
    base_model_id: str,
    schema_fp: str,
    reasoning: bool,
    profile: HardwareProfile,
) -> str:
    """What a finished adapter depends on; equal fingerprints mean training would redo it."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(train_bytes).digest())
    material = {
        "student": spec.model_dump(mode="json", exclude=_NOT_IN_FINGERPRINT),
        "profile": profile.model_dump(mode="json"),
        "base": base_model_id,
        "schema": schema_fp,
        "reasoning": reasoning,
        "prompt_format": PROMPT_FORMAT,
        "training_format": TRAINING_FORMAT,
        "seed": SEED,
    }
    digest.update(json.dumps(material, sort_keys=True).encode())
    return digest.hexdigest()


def _builtin_corpus(
    ctx: StageContext, records: Sequence[Mapping[str, Any]], reasoning: bool
) -> list[str] | None:
    if not ctx.run.spec.student.model.startswith(BUILTIN_SCHEME):
        return None
    return prompting.builtin_tokenizer_corpus(
        records,
        ctx.schema,
        reasoning=reasoning,
        with_schema=ctx.run.spec.student.schema_in_prompt,
    )


def _base_reference(ctx: StageContext, student: Student) -> str:
    """Where a user finds the base this adapter goes on (the model card, adapter_config.json)."""
    if student.kind == "builtin":
        return ctx.store.url(BASE_PREFIX)
    return student.model_id


def model_shape(student: Student) -> ModelShape:
    """The base model's shape: its config.json when it is local, our table for common hub
    students, else the hub's config (one small file)."""
    config_file = Path(student.location) / "config.json"
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StageFailed(
                StageName.TRAIN,
                FailureReason.STUDENT_NOT_FOUND,
                f"cannot read {config_file}: {exc}",
            ) from None
        return _shape(config, str(config_file))
    if student.model_id in KNOWN_SHAPES:
        return KNOWN_SHAPES[student.model_id]
    from transformers import AutoConfig

    try:
        hub_config = AutoConfig.from_pretrained(student.location)
    except (OSError, ValueError) as exc:
        raise StageFailed(
            StageName.TRAIN,
            FailureReason.STUDENT_NOT_FOUND,
            f"cannot read the config of student {student.model_id}: {exc}",
        ) from None
    return _shape(hub_config.to_dict(), f"the config of student {student.model_id}")


def _shape(config: Any, where: str) -> ModelShape:
    """The shape in a config, or StageFailed naming the config when it is not a decoder's."""
    try:
        return ModelShape.from_config(config)
    except (AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise StageFailed(
            StageName.TRAIN,
            FailureReason.UNSUPPORTED_STUDENT,
            f"{where} does not describe a decoder-only language model (hidden_size, "
            f"num_attention_heads, num_hidden_layers, intermediate_size, vocab_size): "
            f"{type(exc).__name__}: {exc}",
        ) from None


def _plan(
    ctx: StageContext,
    shape: ModelShape,
    profile: HardwareProfile,
    profiles: dict[str, HardwareProfile],
) -> TrainingPlan:
    spec = ctx.run.spec.student
    try:
        plan = make_plan(
            spec,
            profile,
            shape,
            flash_attention=importlib.util.find_spec("flash_attn") is not None,
            profiles=profiles,
        )
    except PlanRefused as refused:
        raise StageFailed(StageName.TRAIN, refused.reason, refused.message) from None
    ctx.progress.note(StageName.TRAIN, f"plan: {plan.describe()}")
    for note in plan.notes:
        ctx.progress.note(StageName.TRAIN, note)
    return plan


def _eval_sample(ctx: StageContext) -> list[dict[str, Any]]:
    """The holdout sample scored during training (the first N: validation shuffled them)."""
    during = ctx.run.spec.evaluation.during_training
    if not during.every_steps or not ctx.store.exists(HOLDOUT_KEY):
        return []
    return ctx.store.read_jsonl(HOLDOUT_KEY)[: during.examples]


def _clear_candidate(ctx: StageContext) -> None:
    """Removes an older candidate (done marker first), so no file of it outlives the new one."""
    ctx.store.delete(CANDIDATE_DONE_KEY)
    for key in ctx.store.list_keys(CANDIDATE_PREFIX):
        ctx.store.delete(key)


def run(ctx: StageContext) -> StageResult:
    """Trains the candidate adapter, or reuses the stored one when its inputs have not changed."""
    spec = ctx.run.spec.student
    reasoning = ctx.run.spec.teacher.reasoning
    train_bytes, records = _read_train_set(ctx)
    profile, profiles = _profiles(spec)
    corpus = _builtin_corpus(ctx, records, reasoning)
    base_id = student_model_id(spec, stage=StageName.TRAIN, corpus=corpus, seed=SEED)
    wanted = fingerprint(train_bytes, spec, base_id, ctx.schema.fingerprint, reasoning, profile)

    if ctx.store.exists(CANDIDATE_DONE_KEY):
        done = ctx.store.get_json(CANDIDATE_DONE_KEY)
        if done.get("fingerprint") == wanted:
            ctx.progress.note(StageName.TRAIN, "adapter is up to date with its inputs; reused")
            return StageResult(StageName.TRAIN, dict(done["summary"]), reused=True)

    quiet_library_progress()
    with tempfile.TemporaryDirectory(prefix="distillrun-train-") as tmp:
        student = resolve_student(
            spec,
            ctx.store,
            Path(tmp),
            stage=StageName.TRAIN,
            corpus=corpus,
            seed=SEED,
            note=lambda message: ctx.progress.note(StageName.TRAIN, message),
        )
        ctx.progress.note(StageName.TRAIN, f"student base: {student.model_id}")
        plan = _plan(ctx, model_shape(student), profile, profiles)
        evaluation = ctx.run.spec.evaluation
        job = WorkerJob(
            store_uri=ctx.store.url(),
            run_name=ctx.run.metadata.name,
            student=spec,
            plan=plan,
            deepspeed_config=zero.load_config(plan.deepspeed) if plan.deepspeed else None,
            fingerprint=wanted,
            base_model_id=student.model_id,
            base_reference=_base_reference(ctx, student),
            records=records,
            eval_sample=_eval_sample(ctx),
            eval_every_steps=evaluation.during_training.every_steps,
            max_new_tokens=evaluation.max_new_tokens,
            reasoning=reasoning,
            with_schema=spec.schema_in_prompt,
            schema=ctx.schema,
            seed_sql=ctx.seed_sql,
            sandbox=ctx.run.spec.database.sandbox,
            comparison=evaluation.comparison,
            launch_token=secrets.token_hex(6),
            threads=None if runs_in_process(plan) else plan.cpus_per_process,
        )
        _clear_candidate(ctx)
        run_training(job, ctx.progress)

    done = ctx.store.get_json(CANDIDATE_DONE_KEY) if ctx.store.exists(CANDIDATE_DONE_KEY) else {}
    if done.get("fingerprint") != wanted:
        raise StageFailed(
            StageName.TRAIN,
            FailureReason.TRAINING_INCOMPLETE,
            f"training ended without a finished adapter at {ctx.store.url(CANDIDATE_PREFIX)}",
        )
    return StageResult(StageName.TRAIN, dict(done["summary"]))
