"""The shape of a decoder-only transformer: what the memory estimate and the FLOPs count need.

Read from a model's `config.json` (`ModelShape.from_config`), or taken from `KNOWN_SHAPES` for
the students people usually pick, so a plan can be made (by the operator, by the benchmark)
without fetching anything. Pure Python: no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    """Sizes of a Llama/Qwen-style decoder (grouped-query attention, gated MLP)."""

    model_type: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """From a transformers `config.json` (as a dict); the text config of a multimodal one."""
        text = config.get("text_config") or config
        hidden = int(text["hidden_size"])
        heads = int(text["num_attention_heads"])
        return cls(
            model_type=str(text.get("model_type") or config.get("model_type") or "unknown"),
            hidden_size=hidden,
            intermediate_size=int(text["intermediate_size"]),
            num_layers=int(text["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(text.get("num_key_value_heads") or heads),
            head_dim=int(text.get("head_dim") or hidden // heads),
            vocab_size=int(text["vocab_size"]),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        )

    def projection_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of every linear layer in one decoder block, by module name."""
        q_out = self.num_heads * self.head_dim
        kv_out = self.num_kv_heads * self.head_dim
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q_proj": (h, q_out),
            "k_proj": (h, kv_out),
            "v_proj": (h, kv_out),
            "o_proj": (q_out, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def block_linear_params(self) -> int:
        """Weights of the linear layers of one block (norms and biases are noise at this scale)."""
        return sum(a * b for a, b in self.projection_dims().values())

    @property
    def embedding_params(self) -> int:
        """Input embedding plus the output head when it is not tied to it."""
        embedding = self.vocab_size * self.hidden_size
        return embedding if self.tie_word_embeddings else 2 * embedding

    @property
    def params(self) -> int:
        """All weights, approximately (norms included, biases left out)."""
        norms = self.num_layers * (2 * self.hidden_size + 2 * self.head_dim) + self.hidden_size
        return self.num_layers * self.block_linear_params + self.embedding_params + norms

    def lora_params(self, rank: int, target_modules: Sequence[str]) -> int:
        """Trainable weights of a LoRA adapter of `rank` on `target_modules` in every block
        (`all-linear` counts all seven projections)."""
        dims = self.projection_dims()
        names = list(dims) if "all-linear" in target_modules else list(target_modules)
        per_block = sum(rank * (dims[n][0] + dims[n][1]) for n in names if n in dims)
        return self.num_layers * per_block

    def flops_per_token(self, seq_length: float, *, weight_gradients: bool) -> float:
        """Training FLOPs per token, the PaLM-paper convention: every matmul weight costs 2
        FLOPs forward and 2 backward (to the activations), plus 2 more for its gradient when
        the weights train -- 6 x N for a full fine-tune, 4 x N for LoRA, whose frozen weights
        get none (the adapters themselves are noise) -- with N the block weights and the LM
        head (embedding lookups are free); plus 12 x layers x seq x attention width for the
        attention scores and values, forward and backward, without a causal discount."""
        matmul_params = self.num_layers * self.block_linear_params
        matmul_params += self.vocab_size * self.hidden_size
        per_weight = 6.0 if weight_gradients else 4.0
        attention = 12.0 * self.num_layers * seq_length * self.num_heads * self.head_dim
        return per_weight * matmul_params + attention


KNOWN_SHAPES: dict[str, ModelShape] = {
    "Qwen/Qwen3-0.6B": ModelShape("qwen3", 1024, 3072, 28, 16, 8, 128, 151_936, True),
    "Qwen/Qwen3-1.7B": ModelShape("qwen3", 2048, 6144, 28, 16, 8, 128, 151_936, True),
    "Qwen/Qwen3-4B": ModelShape("qwen3", 2560, 9728, 36, 32, 8, 128, 151_936, True),
    "Qwen/Qwen3-8B": ModelShape("qwen3", 4096, 12288, 36, 32, 8, 128, 151_936, False),
    "Qwen/Qwen2.5-Coder-1.5B": ModelShape("qwen2", 1536, 8960, 28, 12, 2, 128, 151_936, True),
    "Qwen/Qwen2.5-Coder-1.5B-Instruct": ModelShape(
        "qwen2", 1536, 8960, 28, 12, 2, 128, 151_936, True
    ),
    "Qwen/Qwen2.5-Coder-7B-Instruct": ModelShape(
        "qwen2", 3584, 18944, 28, 28, 4, 128, 152_064, False
    ),
    "meta-llama/Llama-3.1-8B-Instruct": ModelShape(
        "llama", 4096, 14336, 32, 32, 8, 128, 128_256, False
    ),
}
"""Shapes of common students (from their published config.json files)."""


PACKED_POSITION_MODEL_TYPES = frozenset(
    {"qwen2", "qwen3", "qwen3_moe", "llama", "mistral", "phi3", "gemma2", "gemma3_text"}
)
"""Architectures whose attention masks transformers builds from `position_ids`, so a batch
flattened into one packed row (padding-free) keeps its examples apart with any attention
kernel; others get padded batches."""
