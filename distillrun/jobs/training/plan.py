"""The training plan: a student spec, a hardware profile and a model shape turned into concrete
settings, checked against the GPU's memory before any GPU is asked for.

The spec says what to train and may pin the micro batch, accumulation and activation
checkpointing; the profile fills in the rest. If the memory estimate says the result does not
fit, the planner walks a fixed ladder of cheaper settings -- activation checkpointing, ZeRO-2,
a smaller micro batch with more accumulation (same effective batch), ZeRO-3, then optimizer
(and parameter) offload where the profile allows it -- and records each step it took in
`notes`. If nothing on the ladder fits it refuses with `PlanRefused`, whose message gives the
estimate that failed and what would fit: another method, a shorter sequence length, more GPUs,
or a bigger profile. Pure Python: no torch, no ray.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from distillrun.api.failures import FailureReason
from distillrun.api.profiles import HardwareProfile
from distillrun.api.spec import StudentSpec, TrainingMethod
from distillrun.jobs.training import zero
from distillrun.jobs.training.memory import (
    GIB,
    MemoryEstimate,
    TrainingShape,
    budget_bytes,
    estimate,
)
from distillrun.jobs.training.shapes import PACKED_POSITION_MODEL_TYPES, ModelShape

MAX_SUGGESTED_GPUS = 64


class PlanRefused(Exception):
    """No configuration on the ladder can train this student on this profile; `reason` is a
    CamelCase condition reason (InsufficientGPUMemory, QLoRAUnavailable, ProfileMismatch)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)


class TrainingPlan(BaseModel):
    """The settings a training runs with; every worker gets the same plan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: str
    accelerator: Literal["cuda", "cpu"]
    method: str
    workers: Annotated[int, Field(description="Pods (nodes) asked for.")]
    gpus_per_worker: int
    world_size: Annotated[int, Field(description="Ray Train workers: one process per GPU.")]
    cpus_per_process: int
    precision: Literal["bf16", "fp16", "fp32"]
    deepspeed: str | None
    micro_batch_size: int
    gradient_accumulation_steps: int
    max_seq_length: int
    gradient_checkpointing: bool
    packing: bool
    attention: Literal["flash_attention_2", "sdpa", "eager"]
    env: dict[str, str]
    memory: dict[str, Any] | None
    notes: list[str]

    @property
    def effective_batch_size(self) -> int:
        return self.micro_batch_size * self.gradient_accumulation_steps * self.world_size

    def training_settings(self) -> dict[str, Any]:
        """What changes the trained weights (for fingerprints): not the notes or estimate."""
        return self.model_dump(mode="json", exclude={"memory", "notes", "env"})

    def describe(self) -> str:
        ds = self.deepspeed or "no DeepSpeed"
        return (
            f"{self.profile}: {self.world_size} x {self.accelerator} process(es), "
            f"{self.precision}, {ds}, micro batch {self.micro_batch_size} x accumulation "
            f"{self.gradient_accumulation_steps} (effective {self.effective_batch_size}), "
            f"seq {self.max_seq_length}, activation checkpointing "
            f"{'on' if self.gradient_checkpointing else 'off'}, "
            f"{'packed (padding-free)' if self.packing else 'padded'} batches, {self.attention}"
        )


@dataclass(frozen=True)
class _Settings:
    micro: int
    accumulation: int
    checkpointing: bool
    deepspeed: str | None
    seq: int


def _zero(name: str | None) -> zero.ZeroSettings:
    if name is None:
        return zero.ZeroSettings(
            name="none", stage=0, offload_optimizer=False, offload_params=False
        )
    return zero.settings(name)


def _training_shape(
    student: StudentSpec, profile: HardwareProfile, world: int, s: _Settings, method: str
) -> TrainingShape:
    ds = _zero(s.deepspeed)
    return TrainingShape(
        method=method,  # type: ignore[arg-type]
        precision=profile.precision,
        micro_batch_size=s.micro,
        seq_length=s.seq,
        gradient_checkpointing=s.checkpointing,
        world_size=world,
        zero_stage=ds.stage,
        offload_optimizer=ds.offload_optimizer,
        offload_params=ds.offload_params,
        lora_rank=student.lora.r,
        lora_targets=tuple(student.lora.target_modules),
        eager_attention=profile.attention == "eager",
    )


def _budget(profile: HardwareProfile) -> int | None:
    if profile.gpu is None:
        return None
    return budget_bytes(profile.gpu.memory_gib, profile.memory_headroom)


def _ladder(
    student: StudentSpec, profile: HardwareProfile, world: int, start: _Settings, method: str
) -> Iterator[tuple[_Settings, str]]:
    """Cheaper and cheaper settings, each with what changed."""
    s = start
    if not s.checkpointing and student.gradient_checkpointing is not False:
        s = replace(s, checkpointing=True)
        yield s, "activation checkpointing on"
    stage = _zero(s.deepspeed).stage
    if world > 1 and stage < 2:
        s = replace(s, deepspeed="zero2")
        yield s, "DeepSpeed ZeRO-2 (gradients and optimizer state split across GPUs)"
    while s.micro > 1:
        micro, accumulation = s.micro // 2, s.accumulation * 2
        yield (
            replace(s, micro=micro, accumulation=accumulation),
            f"micro batch {s.micro} → {micro} with accumulation {s.accumulation} → "
            f"{accumulation} (same effective batch)",
        )
        s = replace(s, micro=micro, accumulation=accumulation)
    if world > 1 and method != TrainingMethod.QLORA and _zero(s.deepspeed).stage < 3:
        s = replace(s, deepspeed="zero3")
        yield s, "DeepSpeed ZeRO-3 (weights split across GPUs too)"
    if profile.allow_offload:
        current = _zero(s.deepspeed)
        if not current.offload_optimizer and current.stage < 3:
            s = replace(s, deepspeed="zero2-offload")
            yield s, "optimizer state offloaded to host memory (ZeRO-2 offload)"
        if method != TrainingMethod.QLORA and not _zero(s.deepspeed).offload_params:
            s = replace(s, deepspeed="zero3-offload")
            yield s, "weights and optimizer state offloaded to host memory (ZeRO-3 offload)"


def _cheapest(
    student: StudentSpec, profile: HardwareProfile, world: int, start: _Settings, method: str
) -> _Settings:
    steps = list(_ladder(student, profile, world, start, method))
    return steps[-1][0] if steps else start


def _fits(
    shape: ModelShape,
    student: StudentSpec,
    profile: HardwareProfile,
    world: int,
    s: _Settings,
    method: str,
) -> MemoryEstimate:
    setup = _training_shape(student, profile, world, s, method)
    # Host memory for offload: what the profile gives each process, less a quarter for the
    # process itself, the data and pinned buffers.
    host = int(profile.host.memory_gib * GIB * 0.75)
    return estimate(shape, setup, _budget(profile), host)


def _suggestions(
    shape: ModelShape,
    student: StudentSpec,
    profile: HardwareProfile,
    world: int,
    start: _Settings,
    profiles: Mapping[str, HardwareProfile],
) -> list[str]:
    """What would fit instead, each checked with the same estimate (cheapest settings)."""
    found: list[str] = []
    method = str(student.method)
    cheaper_methods = {"full": ["lora", "qlora"], "lora": ["qlora"], "qlora": []}[method]
    for other in cheaper_methods:
        cheapest = _cheapest(student, profile, world, start, other)
        result = _fits(shape, student, profile, world, cheapest, other)
        if result.fits:
            found.append(f"method {other} ({result.total / GIB:.1f} GiB per GPU)")
            break
    cheapest = _cheapest(student, profile, world, start, method)
    seq = start.seq // 2
    while seq >= 128:
        result = _fits(shape, student, profile, world, replace(cheapest, seq=seq), method)
        if result.fits:
            found.append(f"maxSeqLength {seq} ({result.total / GIB:.1f} GiB per GPU)")
            break
        seq //= 2
    if method != TrainingMethod.QLORA:
        gpus = max(world * 2, 2)
        while gpus <= MAX_SUGGESTED_GPUS:
            spread = replace(cheapest, deepspeed="zero3")
            result = _fits(shape, student, profile, gpus, spread, method)
            if result.fits:
                found.append(
                    f"{gpus} GPUs in all (workers x gpusPerWorker) with ZeRO-3 "
                    f"({result.total / GIB:.1f} GiB per GPU)"
                )
                break
            gpus *= 2
    bigger = sorted(
        (p for p in profiles.values() if p.gpu is not None and profile.gpu is not None),
        key=lambda p: p.gpu.memory_gib if p.gpu is not None else 0.0,
    )
    for other_profile in bigger:
        assert other_profile.gpu is not None and profile.gpu is not None
        if other_profile.gpu.memory_gib <= profile.gpu.memory_gib:
            continue
        cheapest = _cheapest(student, other_profile, world, start, method)
        result = _fits(shape, student, other_profile, world, cheapest, method)
        if result.fits:
            found.append(f"hardwareProfile {other_profile.name} ({result.total / GIB:.1f} GiB)")
            break
    return found


def _check_profile(student: StudentSpec, profile: HardwareProfile) -> None:
    if student.method == TrainingMethod.QLORA and not profile.uses_gpu:
        raise PlanRefused(
            FailureReason.QLORA_UNAVAILABLE,
            f"method qlora needs a CUDA GPU (4-bit weights through bitsandbytes) and hardware "
            f"profile {profile.name} has none; use method lora or full, or a GPU profile",
        )
    if profile.uses_gpu and student.gpus_per_worker == 0:
        raise PlanRefused(
            FailureReason.PROFILE_MISMATCH,
            f"hardware profile {profile.name} trains on GPUs; set gpusPerWorker to at least 1",
        )
    if not profile.uses_gpu and student.gpus_per_worker:
        raise PlanRefused(
            FailureReason.PROFILE_MISMATCH,
            f"hardware profile {profile.name} has no GPUs; set gpusPerWorker to 0",
        )


def make_plan(
    student: StudentSpec,
    profile: HardwareProfile,
    shape: ModelShape,
    *,
    flash_attention: bool,
    profiles: Mapping[str, HardwareProfile] | None = None,
) -> TrainingPlan:
    """The plan for training `student` (a model of `shape`) on `profile`, downgraded until the
    memory estimate fits; raises PlanRefused when nothing does. `flash_attention` says whether
    flash-attn is installed where training runs; `profiles` are offered as alternatives."""
    _check_profile(student, profile)
    notes: list[str] = []
    world = student.workers * max(student.gpus_per_worker, 1)
    method = str(student.method)

    seq = student.max_seq_length
    if seq > profile.max_seq_length:
        notes.append(
            f"maxSeqLength {seq} is above profile {profile.name}'s limit "
            f"{profile.max_seq_length}: longer examples are cut at {profile.max_seq_length}"
        )
        seq = profile.max_seq_length

    deepspeed = profile.deepspeed
    if deepspeed is not None:
        ds = zero.settings(deepspeed)
        if method == TrainingMethod.QLORA and ds.stage >= 3:
            deepspeed = "zero2-offload" if ds.offload_optimizer else "zero2"
            notes.append(f"qlora trains with ZeRO-2: 4-bit weights are not partitioned ({ds.name})")
        elif world == 1 and not (ds.offload_optimizer or ds.offload_params):
            notes.append(f"one GPU: DeepSpeed {deepspeed} would split nothing, so it is not used")
            deepspeed = None

    attention = profile.attention
    if attention == "flash_attention_2" and not (flash_attention and profile.uses_gpu):
        attention = "sdpa"
        if profile.uses_gpu:
            notes.append("flash-attn is not installed: attention runs on PyTorch SDPA")

    packing = profile.packing
    if packing and shape.model_type not in PACKED_POSITION_MODEL_TYPES:
        packing = False
        notes.append(
            f"{shape.model_type} models cannot keep packed examples apart: batches are padded"
        )

    start = _Settings(
        micro=student.micro_batch_size or profile.micro_batch_size,
        accumulation=student.gradient_accumulation_steps or profile.gradient_accumulation_steps,
        checkpointing=(
            student.gradient_checkpointing
            if student.gradient_checkpointing is not None
            else profile.gradient_checkpointing
        ),
        deepspeed=deepspeed,
        seq=seq,
    )
    chosen = start
    result = _fits(shape, student, profile, world, chosen, method)
    if not result.fits:
        first = result
        changes: list[str] = []
        for candidate, change in _ladder(student, profile, world, start, method):
            changes.append(change)
            chosen = candidate
            result = _fits(shape, student, profile, world, chosen, method)
            if result.fits:
                break
        if not result.fits:
            alternatives = _suggestions(
                shape, student, profile, world, start, profiles or {profile.name: profile}
            )
            tried = "; ".join(changes) if changes else "no cheaper settings to try"
            instead = "; ".join(alternatives) if alternatives else "a GPU with more memory"
            raise PlanRefused(
                FailureReason.INSUFFICIENT_GPU_MEMORY,
                f"{method} training does not fit on {profile.name} with {world} GPU(s): it "
                f"needs {first.describe()}; even after {tried} it needs {result.describe()}. "
                f"What would fit: {instead}",
            )
        notes.append(
            f"the configuration as asked needs {first.total / GIB:.1f} GiB per GPU, more than "
            f"{profile.name} allows; to fit: " + "; ".join(changes)
        )

    return TrainingPlan(
        profile=profile.name,
        accelerator=profile.accelerator,
        method=method,
        workers=student.workers,
        gpus_per_worker=student.gpus_per_worker,
        world_size=world,
        cpus_per_process=profile.host.cpu,
        precision=profile.precision,
        deepspeed=chosen.deepspeed,
        micro_batch_size=chosen.micro,
        gradient_accumulation_steps=chosen.accumulation,
        max_seq_length=chosen.seq,
        gradient_checkpointing=chosen.checkpointing,
        packing=packing,
        attention=attention,
        env=dict(profile.env),
        memory=result.as_dict(),
        notes=notes,
    )
