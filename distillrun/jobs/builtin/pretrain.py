"""Trains the builtin base in full on the pretraining corpus.

A plain torch loop rather than trl's trainer: the base is trained once, on one process, for a
fixed number of steps, and the loop is the cheapest way there on a CPU. It trains exactly what
the run's student is later asked (the chat format of `jobs.prompting`, loss on the answer only),
in batches of similar lengths so little is spent on padding.
"""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from distillrun.jobs import prompting
from distillrun.jobs.builtin.corpus import PretrainingExample

IGNORED = -100
"""Label of a token the loss skips (the prompt, the padding)."""


@dataclass(frozen=True)
class Schedule:
    """How long and how fast the base trains."""

    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    max_length: int
    seed: int

    def rate(self, step: int) -> float:
        """Linear warm-up, then cosine decay to a tenth of the peak."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * min(progress, 1.0))))


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]


def encode(tokenizer: Any, example: PretrainingExample, max_length: int) -> Encoded:
    """Token ids of prompt and answer, with the prompt's labels ignored."""
    prompt = prompting.render_prompt(
        tokenizer,
        example.schema,
        example.question,
        reasoning=False,
        with_schema=example.with_schema,
    )
    whole = prompting.render_example(
        tokenizer,
        example.schema,
        example.record(),
        reasoning=False,
        with_schema=example.with_schema,
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(whole, add_special_tokens=False)["input_ids"][:max_length]
    labels = [IGNORED] * min(len(prompt_ids), len(ids)) + ids[len(prompt_ids) :]
    return Encoded(ids, labels)


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """One epoch of batches: shuffled, then sorted by length inside windows of 50 batches so
    a batch holds examples of similar length; the batches themselves in random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def pretrain(
    model: Any,
    tokenizer: Any,
    examples: Sequence[PretrainingExample],
    schedule: Schedule,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Trains `model` in place for `schedule.steps` steps; returns the loss of every step."""
    import torch

    encoded = [encode(tokenizer, e, schedule.max_length) for e in examples]
    rng = random.Random(schedule.seed)
    torch.manual_seed(schedule.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.learning_rate, weight_decay=0.01)
    pad = int(tokenizer.pad_token_id)
    model.train()
    losses: list[float] = []
    batches: list[list[int]] = []
    while len(losses) < schedule.steps:
        if not batches:
            batches = length_grouped_batches(
                [len(e.input_ids) for e in encoded], schedule.batch_size, rng
            )
        batch = [encoded[i] for i in batches.pop()]
        width = max(len(e.input_ids) for e in batch)
        ids = torch.tensor([e.input_ids + [pad] * (width - len(e.input_ids)) for e in batch])
        labels = torch.tensor([e.labels + [IGNORED] * (width - len(e.labels)) for e in batch])
        mask = torch.tensor(
            [[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in batch]
        )
        for group in optimizer.param_groups:
            group["lr"] = schedule.rate(len(losses))
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(len(losses), losses[-1])
    model.eval()
    return losses
