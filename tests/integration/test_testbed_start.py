"""`scripts/testbed/start` names a missing tool instead of ending without a word (its openssl
and curl calls have their errors silenced)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.integration.controlplane import START


def test_a_missing_tool_is_named(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "mkdir"):  # what the script needs before the check
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run(
        ["bash", str(START), str(tmp_path / "cluster")],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "testbed: needs openssl on PATH" in result.stderr
