"""The README's two commands are what a fresh clone runs first: `scripts/run` sets up and runs
the main job, `scripts/test` sets up and runs the suite (and `.ci/run` is exactly that)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _first_code_block() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block is not None
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_opens_with_the_two_commands() -> None:
    assert _first_code_block() == ["scripts/run", "scripts/test"]
    assert (ROOT / ".ci/run").read_text().rstrip().endswith("exec scripts/test")


def test_run_sets_up_then_hands_its_arguments_to_distillrun_run(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    done = subprocess.run(
        [ROOT / "scripts/run", str(missing)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 1
    assert "setup:" in done.stderr  # the set-up step ran first
    assert str(missing) in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
