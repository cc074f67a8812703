"""Builds the builtin SQL base once per machine and keeps it under the cache directory.

The base lives in `<cache>/bases/sql-qwen3-<fingerprint>/`, the fingerprint covering the
builder's version, the recipe (shape, corpus, schedule) and the corpus identity (bundled
schemas, synthetic generator version): any change builds a new base beside the old one. A build
writes into a scratch directory and renames it into place with its marker inside, under a file
lock, so two runs starting together build it once and nobody ever loads half a base.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from distillrun.jobs.builtin.corpus import corpus_identity, pretraining_examples
from distillrun.jobs.builtin.pretrain import Schedule, pretrain
from distillrun.jobs.student import TinyQwen3Shape

BUILDER_VERSION = 1
"""Bump when the builder changes what it builds: a cached base of another version is rebuilt."""

MARKER = ".distillrun-base.json"


BASE_SHAPE = TinyQwen3Shape(
    vocab_size=3072,
    hidden_size=256,
    intermediate_size=768,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    merge_across_spaces=False,
)
"""The base's size: a Qwen3 decoder of about 3.5 M weights, about 0.6 s a step of 32 examples
on 2 cores, with a tokenizer that keeps words apart (another schema's names split the same way
everywhere). Half this width (1 M weights, 240 steps) learnt too little for a run to
build on: 0.04 holdout accuracy after LoRA, against 0.34 (LoRA) and 0.70 (full) now."""


@dataclass(frozen=True)
class BaseRecipe:
    """Everything that decides what the builtin base is."""

    shape: TinyQwen3Shape = BASE_SHAPE
    shards_per_schema: int = 24
    schema_share: float = 0.1
    """Share of pretraining prompts that carry the schema (runs may ask for either form)."""
    schedule: Schedule = field(
        # 720 steps: about 8 minutes on 2 idle cores with the corpus and tokenizer, under the
        # 10-minute build goal. 500 steps left the run's LoRA at 0.29 rather than 0.34; 840
        # (about 9.5 minutes) did no better for examples/quickstart.yaml (0.64 against 0.70).
        default_factory=lambda: Schedule(
            steps=720, batch_size=32, learning_rate=3e-3, warmup_steps=30, max_length=320, seed=0
        )
    )

    def fingerprint(self) -> str:
        material = {
            "builder": BUILDER_VERSION,
            "recipe": asdict(self),
            "corpus": corpus_identity(
                self.shards_per_schema, self.schema_share, self.schedule.seed
            ),
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


DEFAULT_RECIPE = BaseRecipe()


def base_directory(cache: Path, recipe: BaseRecipe) -> Path:
    return cache / "bases" / f"sql-qwen3-{recipe.fingerprint()[:16]}"


def cached_base(cache: Path, recipe: BaseRecipe) -> Path | None:
    """The built base for `recipe`, or None when it has not been built on this machine."""
    folder = base_directory(cache, recipe)
    return folder if (folder / MARKER).is_file() else None


def ensure_base(
    cache: Path, recipe: BaseRecipe = DEFAULT_RECIPE, note: Callable[[str], None] | None = None
) -> Path:
    """The base for `recipe`, built first when this machine has none."""
    found = cached_base(cache, recipe)
    if found is not None:
        return found
    folder = base_directory(cache, recipe)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f"{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = cached_base(cache, recipe)  # built by whoever held the lock before us
        if found is not None:
            return found
        scratch = folder.with_name(f"{folder.name}.building")
        shutil.rmtree(scratch, ignore_errors=True)
        build_base(scratch, recipe, note)
        shutil.rmtree(folder, ignore_errors=True)
        scratch.rename(folder)
    return folder


def build_base(
    out_dir: Path, recipe: BaseRecipe, note: Callable[[str], None] | None = None
) -> None:
    """Generates the corpus, builds tokenizer and model, pretrains it, saves it to `out_dir`."""
    from distillrun.jobs import prompting
    from distillrun.jobs.student import (
        build_tiny_qwen3,
        limit_torch_threads,
        load_model,
        load_tokenizer,
    )

    say = note or (lambda message: None)
    started = time.monotonic()
    say(
        "building the builtin SQL base once for this machine (cached for later runs): writing "
        "its examples over the bundled schemas and its tokenizer"
    )
    examples = pretraining_examples(
        recipe.shards_per_schema, recipe.schema_share, recipe.schedule.seed
    )
    texts: list[str] = []
    for example in examples:
        texts.append(
            prompting.system_message(
                example.schema, reasoning=False, with_schema=example.with_schema
            )
        )
        texts.append(example.question)
        texts.append(prompting.format_answer(example.sql, reasoning=False))
    build_tiny_qwen3(texts, out_dir, seed=recipe.schedule.seed, shape=recipe.shape)
    limit_torch_threads()
    import torch

    tokenizer = load_tokenizer(str(out_dir))
    model = load_model(str(out_dir), dtype=torch.float32)
    total = recipe.schedule.steps
    say(
        f"builtin base: {len(examples)} examples and a tokenizer ready in "
        f"{time.monotonic() - started:.0f} s; pretraining for {total} steps"
    )

    def report(step: int, loss: float) -> None:
        if step % max(1, total // 10) == 0 or step == total:
            elapsed = time.monotonic() - started
            say(f"builtin base: step {step}/{total}, loss {loss:.3f}, {elapsed:.0f} s")

    losses = pretrain(model, tokenizer, examples, recipe.schedule, report)
    model.save_pretrained(out_dir)
    marker = {
        "fingerprint": recipe.fingerprint(),
        "builder": BUILDER_VERSION,
        "recipe": asdict(recipe),
        "examples": len(examples),
        "final_loss": losses[-1] if losses else None,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (out_dir / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
