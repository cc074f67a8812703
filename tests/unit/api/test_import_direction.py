"""The import contract: `distillrun.api` (which the operator image will carry) imports none of the
heavy or stage-side packages; `api` and `store` import nothing of ours outside themselves; the
operator and the report never import the stages (`distillrun.jobs`). Checked on the source, so
an import inside a function or under TYPE_CHECKING counts too."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[3] / "distillrun"
HEAVY = ("torch", "ray", "transformers", "peft", "trl", "deepspeed", "anthropic", "duckdb")


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import of ours in `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            base = node.module
            names = [base] if base != "distillrun" else [f"distillrun.{a.name}" for a in node.names]
        else:
            continue
        yield from ((node.lineno, n) for n in names if n.split(".")[0] == "distillrun")


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in prefixes)


def violations(package: str, allowed: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """Imports in `distillrun.<package>` of modules of ours outside `allowed` (when given) or
    inside `forbidden`."""
    found = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, module in imported_modules(tree):
            if (allowed and not _within(module, allowed)) or _within(module, forbidden):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return found


@pytest.mark.parametrize(
    ("package", "allowed", "forbidden"),
    [
        ("api", ("distillrun.api",), ()),
        ("store", ("distillrun.store",), ()),
        ("operator", (), ("distillrun.jobs",)),
        ("report", (), ("distillrun.jobs",)),
    ],
)
def test_packages_import_only_what_the_contract_allows(
    package: str, allowed: tuple[str, ...], forbidden: tuple[str, ...]
) -> None:
    assert violations(package, allowed, forbidden) == []


def test_the_check_sees_imports_in_functions_and_of_subpackages() -> None:
    tree = ast.parse(
        "def build():\n    from distillrun.jobs import train\n    import distillrun.store\n"
        "from distillrun import jobs\n"
    )
    assert sorted(imported_modules(tree)) == [
        (2, "distillrun.jobs"),
        (3, "distillrun.store"),
        (4, "distillrun.jobs"),
    ]


def test_api_imports_nothing_heavy() -> None:
    probe = (
        "import sys, distillrun.api, distillrun.api.crd, distillrun.api.transitions, "
        "distillrun.api.profiles, distillrun.api.layout, distillrun.api.stage_config\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "ours = [m for m in sys.modules if m.startswith('distillrun.') and "
        "not m.startswith('distillrun.api')]\n"
        "print(heavy, ours)\n"
        "sys.exit(1 if heavy or ours else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
