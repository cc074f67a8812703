"""The contract stays light: `distillrun.api` (which the operator image will carry) imports
none of the heavy or stage-side packages."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "ray", "transformers", "peft", "trl", "deepspeed", "anthropic", "duckdb")


def test_api_imports_nothing_heavy() -> None:
    probe = (
        "import sys, distillrun.api, distillrun.api.crd, distillrun.api.transitions\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "ours = [m for m in sys.modules if m.startswith('distillrun.') and "
        "not m.startswith('distillrun.api')]\n"
        "print(heavy, ours)\n"
        "sys.exit(1 if heavy or ours else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
