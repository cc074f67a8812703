"""Manifest errors that name the field at fault, in the wire's camelCase path form."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one field: `path` like `spec.teacher.targetExamples`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ManifestError(Exception):
    """A manifest that cannot be used; `problems` names each field at fault."""

    def __init__(self, source: str, problems: Sequence[FieldProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: invalid DistillRun\n{lines}")


def _path(loc: tuple[int | str, ...], prefix: str) -> str:
    parts: list[str] = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            if parts:
                parts[-1] = f"{parts[-1]}[{item}]"
            else:
                parts.append(f"[{item}]")
        elif not item.startswith(("function-", "tagged-union")):
            parts.append(item)
    return ".".join(parts)


def _message(err_type: str, msg: str, loc: tuple[int | str, ...]) -> str:
    if err_type == "extra_forbidden":
        name = loc[-1] if loc else ""
        if isinstance(name, str) and "_" in name:  # a Python name: the CRD has no such field
            return "unknown field (fields are spelled in camelCase, as in the CRD)"
        return "unknown field"
    if err_type == "missing":
        return "required field is missing"
    return msg.removeprefix("Value error, ")


def problems_from(error: ValidationError, prefix: str = "") -> list[FieldProblem]:
    """Turns pydantic's errors into field problems with wire (camelCase) paths."""
    return [
        FieldProblem(_path(tuple(e["loc"]), prefix), _message(e["type"], e["msg"], tuple(e["loc"])))
        for e in error.errors(include_url=False)
    ]
