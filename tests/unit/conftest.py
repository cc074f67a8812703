"""A small builtin SQL base for tests that train `builtin:sql-qwen3`.

The real base takes minutes to build; these tests need one that exists, not one that is good.
`small_sql_base` builds a few-step base with the real builder (`jobs.builtin.cache.build_base`,
a small recipe) where the cache keeps the default recipe's base, in a session cache directory
that `DISTILLRUN_CACHE_DIR` points at (subprocesses inherit it). Not autouse: only tests that
ask for it pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from distillrun.jobs.builtin.cache import (
    BASE_SHAPE,
    DEFAULT_RECIPE,
    BaseRecipe,
    base_directory,
    build_base,
)
from distillrun.jobs.builtin.pretrain import Schedule

SMALL_RECIPE = BaseRecipe(
    shape=replace(
        BASE_SHAPE,
        vocab_size=1024,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
    ),
    shards_per_schema=1,
    schema_share=0.2,
    schedule=Schedule(
        steps=6, batch_size=8, learning_rate=4e-3, warmup_steps=20, max_length=320, seed=0
    ),
)


@pytest.fixture(scope="session")
def small_sql_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The cache directory holding a small base under the default recipe's name."""
    cache = tmp_path_factory.mktemp("distillrun-cache")
    build_base(base_directory(cache, DEFAULT_RECIPE), SMALL_RECIPE)
    patch = pytest.MonkeyPatch()
    patch.setenv("DISTILLRUN_CACHE_DIR", str(cache))
    try:
        yield cache
    finally:
        patch.undo()
