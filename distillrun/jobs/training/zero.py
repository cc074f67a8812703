"""DeepSpeed configs, kept as JSON files and picked by name.

`deepspeed/zero2.json`, `zero2-offload.json`, `zero3.json` and `zero3-offload.json` ship with
the package; a team adds or replaces configs with `deepspeed/<name>.json` in the
`DISTILLRUN_PROFILES_DIR` directory. Batch sizes, precision, clipping and the learning rate
are `"auto"`: the transformers integration fills them from the training arguments, so a config
says only how state is partitioned and where it lives. The memory estimate reads the stage and
the offload targets from the file itself, so a custom config is estimated for what it does.
Pure Python: no deepspeed import here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from distillrun.api.profiles import DEEPSPEED_DIR, ProfileError, user_directory

BUILTIN_CONFIGS = ("zero2", "zero2-offload", "zero3", "zero3-offload")


@dataclass(frozen=True)
class ZeroSettings:
    """What a DeepSpeed config does to memory: ZeRO stage and what it moves to the host."""

    name: str
    stage: int
    offload_optimizer: bool
    offload_params: bool


def load_config(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The DeepSpeed config called `name`: the team's file when there is one, else ours."""
    folder = directory if directory is not None else user_directory()
    if folder is not None:
        user_file = folder / DEEPSPEED_DIR / f"{name}.json"
        if user_file.is_file():
            return _parse(user_file.read_text(encoding="utf-8"), str(user_file))
    if name not in BUILTIN_CONFIGS:
        raise ProfileError(
            f"unknown DeepSpeed config {name!r}; shipped configs: {', '.join(BUILTIN_CONFIGS)}"
            + (f", or add {folder}/deepspeed/{name}.json" if folder is not None else "")
        )
    source = resources.files("distillrun.jobs.training").joinpath("deepspeed", f"{name}.json")
    return _parse(source.read_text(encoding="utf-8"), f"deepspeed/{name}.json")


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ProfileError(f"{where}: a DeepSpeed config is a JSON object")
    return config


def settings(name: str, directory: Path | None = None) -> ZeroSettings:
    """The ZeRO stage and offload targets of the config called `name`."""
    zero = load_config(name, directory).get("zero_optimization") or {}

    def offloaded(key: str) -> bool:
        target = zero.get(key) or {}
        return str(target.get("device", "none")) in ("cpu", "nvme")

    return ZeroSettings(
        name=name,
        stage=int(zero.get("stage", 0)),
        offload_optimizer=offloaded("offload_optimizer"),
        offload_params=offloaded("offload_param"),
    )
