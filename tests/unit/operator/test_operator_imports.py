"""The operator image stays small: `distillrun.operator` (every module, handlers included)
imports none of the stages, the teacher SDKs, torch, transformers or ray. It sizes pods from the
hardware-profile data beside the contract (`api.profiles`), the numbers training plans with."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("torch", "ray", "transformers", "peft", "trl", "deepspeed", "anthropic", "duckdb")


def test_operator_imports_nothing_heavy() -> None:
    probe = (
        "import pkgutil, sys, importlib, distillrun.operator as op\n"
        "for m in pkgutil.walk_packages(op.__path__, 'distillrun.operator.'):\n"
        "    if m.name != 'distillrun.operator.main':\n"
        "        importlib.import_module(m.name)\n"
        f"heavy = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "ours = sorted(m for m in sys.modules if m.startswith(('distillrun.jobs', "
        "'distillrun.teacher', 'distillrun.local', 'distillrun.sql.sandbox')))\n"
        "print(heavy, ours)\n"
        "sys.exit(1 if heavy or ours else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kopf_entry_module_registers_handlers() -> None:
    probe = (
        "import sys, kopf, distillrun.operator.main\n"
        "registry = kopf.get_default_registry()\n"
        "print(len(registry._watching.get_all_handlers()), "
        "len(registry._spawning.get_all_handlers()), "
        "len(registry._changing.get_all_handlers()))\n"
        "sys.exit(0 if 'ray' not in sys.modules else 1)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # Two event handlers, no timer or daemon (they kept the finalizer: nolar/kopf#1305), one
    # deletion handler.
    assert result.stdout.split() == ["2", "0", "1"]
