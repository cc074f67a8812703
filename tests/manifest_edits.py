"""Edits of a manifest by dotted path, for the tables of bad manifests (model and apiserver)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Manifest = dict[str, Any]
Edit = Callable[[Manifest], None]


def setting(path: str, value: Any) -> Edit:
    """Sets `path` (e.g. `spec.teacher.targetExamples`) to `value`, creating mappings on the way."""

    def mutate(data: Manifest) -> None:
        *parents, last = path.split(".")
        node = data
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = value

    return mutate


def removing(path: str) -> Edit:
    """Deletes `path`."""

    def mutate(data: Manifest) -> None:
        *parents, last = path.split(".")
        node = data
        for name in parents:
            node = node[name]
        del node[last]

    return mutate
