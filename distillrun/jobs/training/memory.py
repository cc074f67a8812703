"""A pre-flight estimate of the GPU memory one training process needs.

Adds up what sits on one GPU at the peak of a training step: the weights (16-bit, or 4-bit for
QLoRA's frozen linear layers, fp32 for a full fine-tune without DeepSpeed), the trainable
parameters' gradients and AdamW state (fp32 moments, plus an fp32 master copy when the weights
are 16-bit), each divided across the data-parallel group by the ZeRO stage or moved to the host
by offload; the activations kept for the backward pass for `micro_batch x seq_length` tokens
(all of a block's intermediate tensors, or only each block's input with activation
checkpointing); the loss head's working memory -- trl's SFTTrainer never materialises the
logits, it computes log-probabilities through a fused LM head in tiles of 4096 tokens x 32768
vocabulary entries; and a fixed allowance for the CUDA context, NCCL buffers and allocator
slack.

It is deliberately a little pessimistic (no credit for the allocator reusing freed blocks, a
micro batch assumed full), so a plan it accepts should fit; it exists to refuse the plan that
would fail with CUDA out-of-memory an hour into the run, and to say what would fit instead.
Pure Python: no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from distillrun.jobs.training.shapes import ModelShape

GIB = 1024**3

CUDA_OVERHEAD_BYTES = int(1.5 * GIB)
"""CUDA context, cuBLAS/NCCL workspaces, allocator slack: measured 1-1.5 GiB on A100s."""

FUSED_HEAD_TOKENS = 4096
FUSED_HEAD_VOCAB = 32768
"""The tile trl's fused LM head computes log-probabilities in (`trl.kernels.chunked_logprob`)."""

QLORA_BYTES_PER_PARAM = 0.53
"""NF4 weights (0.5 byte) plus double-quantised block constants (~0.127 bit per weight)."""

Precision = Literal["bf16", "fp16", "fp32"]
Method = Literal["lora", "qlora", "full"]


def bytes_per_element(precision: str) -> int:
    return 4 if precision == "fp32" else 2


@dataclass(frozen=True)
class TrainingShape:
    """The choices that decide memory, besides the model itself."""

    method: Method
    precision: Precision
    micro_batch_size: int
    seq_length: int
    gradient_checkpointing: bool
    world_size: int = 1
    zero_stage: int = 0
    offload_optimizer: bool = False
    offload_params: bool = False
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    eager_attention: bool = False


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU by kind; `budget` is what the profile allows (None: not checked)."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    overhead: int
    trainable_params: int
    budget: int | None
    offloaded: int = 0
    """Optimizer state (and weights) moved to host memory by ZeRO offload, per process."""
    host_budget: int | None = None

    @property
    def total(self) -> int:
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.activations
            + self.logits
            + self.overhead
        )

    @property
    def fits_gpu(self) -> bool:
        return self.budget is None or self.total <= self.budget

    @property
    def fits_host(self) -> bool:
        return self.host_budget is None or self.offloaded <= self.host_budget

    @property
    def fits(self) -> bool:
        return self.fits_gpu and self.fits_host

    def describe(self) -> str:
        """`12.3 GiB (weights 1.1, gradients 0.0, ...) of 72.0 GiB`."""
        parts = ", ".join(
            f"{name} {getattr(self, name) / GIB:.1f}"
            for name in ("weights", "gradients", "optimizer", "activations", "logits", "overhead")
        )
        limit = f" of {self.budget / GIB:.1f} GiB usable" if self.budget is not None else ""
        text = f"{self.total / GIB:.1f} GiB per GPU ({parts}){limit}"
        if self.offloaded:
            host = f" of {self.host_budget / GIB:.0f} GiB" if self.host_budget is not None else ""
            text += f", plus {self.offloaded / GIB:.1f} GiB offloaded to host memory{host}"
        return text

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total"] = self.total
        data["fits"] = self.fits
        data["fits_gpu"] = self.fits_gpu
        data["fits_host"] = self.fits_host
        return data


def _frozen_weight_bytes(shape: ModelShape, setup: TrainingShape) -> float:
    element = bytes_per_element(setup.precision)
    if setup.method == "qlora":
        linear = shape.num_layers * shape.block_linear_params
        return linear * QLORA_BYTES_PER_PARAM + (shape.params - linear) * element
    if setup.method == "full" and setup.zero_stage == 0:
        return shape.params * 4.0  # fp32 weights under autocast; no DeepSpeed bf16 copy
    return float(shape.params * element)


def _activation_bytes(shape: ModelShape, setup: TrainingShape) -> float:
    element = bytes_per_element(setup.precision)
    dims = shape.projection_dims()
    q_width = dims["q_proj"][1]
    kv_width = dims["k_proj"][1]
    h, i = shape.hidden_size, shape.intermediate_size
    # Saved for backward per token in one block: norm outputs and residual inputs (4h), q/k/v
    # and the attention output (2q + 2kv), the gated MLP's four i-wide tensors, and the two
    # RMSNorm inputs upcast to fp32.
    per_token_block = element * (4 * h + 2 * q_width + 2 * kv_width + 4 * i) + 4 * 2 * h
    if setup.eager_attention:  # scores and probabilities, heads x seq per token
        per_token_block += 2 * element * shape.num_heads * setup.seq_length
    tokens = setup.micro_batch_size * setup.seq_length
    if setup.gradient_checkpointing:
        # Each block keeps its input; one block at a time is recomputed in full.
        return tokens * (shape.num_layers * element * h + per_token_block)
    return float(tokens * shape.num_layers * per_token_block)


def estimate(
    shape: ModelShape,
    setup: TrainingShape,
    budget_bytes: int | None,
    host_budget_bytes: int | None = None,
) -> MemoryEstimate:
    """Bytes one training process needs on its GPU (and in host memory, for what ZeRO offloads)
    for `shape` trained as `setup`."""
    world = max(setup.world_size, 1)
    element = bytes_per_element(setup.precision)
    if setup.method == "full":
        trainable = shape.params
        # DeepSpeed keeps 16-bit weights and gradients on the GPU and an fp32 master copy with
        # the moments; plain autocast keeps fp32 weights and gradients and the moments.
        ds_mixed = setup.zero_stage > 0 and setup.precision != "fp32"
        gradient_bytes = float(trainable * (element if ds_mixed else 4))
        optimizer_bytes = float(trainable * (12 if ds_mixed else 8))
        adapter_bytes = 0
    else:
        trainable = shape.lora_params(setup.lora_rank, setup.lora_targets)
        gradient_bytes = trainable * 4.0  # adapters train in fp32
        optimizer_bytes = trainable * 8.0
        adapter_bytes = trainable * 4

    weights = _frozen_weight_bytes(shape, setup)
    offloaded = 0.0
    if setup.zero_stage >= 3:
        live_block = shape.block_linear_params * element  # gathered while a block runs
        if setup.offload_params:
            offloaded += weights / world
            weights = live_block
        else:
            weights = weights / world + live_block
    if setup.zero_stage >= 2:
        gradient_bytes = gradient_bytes / world
    if setup.zero_stage >= 1:
        optimizer_bytes = optimizer_bytes / world
        if setup.offload_optimizer:
            offloaded += optimizer_bytes
            optimizer_bytes = 0.0

    tokens = setup.micro_batch_size * setup.seq_length
    # trl's fused LM head: one fp32 tile of logits at a time, the fp32 final hidden states it
    # keeps for the backward pass, and a few fp32 numbers per token.
    tile = min(tokens, FUSED_HEAD_TOKENS) * min(shape.vocab_size, FUSED_HEAD_VOCAB) * 4
    logits = tile + tokens * (shape.hidden_size * 4 + 16)
    return MemoryEstimate(
        weights=int(weights + adapter_bytes),
        gradients=int(gradient_bytes),
        optimizer=int(optimizer_bytes),
        activations=int(_activation_bytes(shape, setup)),
        logits=int(logits),
        overhead=CUDA_OVERHEAD_BYTES,
        trainable_params=int(trainable),
        budget=budget_bytes,
        offloaded=int(offloaded),
        host_budget=host_budget_bytes if offloaded else None,
    )


def budget_bytes(gpu_memory_gib: float, headroom: float) -> int:
    """The part of a GPU's memory a plan may fill."""
    return int(gpu_memory_gib * headroom * GIB)
