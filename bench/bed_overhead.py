"""What Kubernetes costs a run: the same small DistillRun (the e2e suite's: synthetic teacher,
SQLite, `builtin:tiny-qwen3` on the `cpu` profile) once with `distillrun run` on this machine
and once on the real one-node bed (`scripts/testbed/node-up`: real pods, the real KubeRay
operator, the distillrun operator installed with `helm install`, S3 on moto), in one
invocation. Not a test: it prints figures. Needs root and `scripts/testbed/build`.

    .venv/bin/python bench/bed_overhead.py

For each stage: its wall time locally and on the bed (from the run's status: each stage's
startTime to its completionTime, to the second), the difference in seconds (pod scheduling,
image and Ray start, job submission, the operator's polling) and the ratio. The local run goes
first, with no bed up; the bed's set-up (about 2 minutes) is timed apart and not counted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from distillrun.api.layout import STATUS_KEY  # noqa: E402
from distillrun.api.status import STAGE_ORDER  # noqa: E402
from tests.e2e.bed import bed_down, bed_up  # noqa: E402
from tests.e2e.runs import run_on_s3, wait_ended  # noqa: E402
from tests.e2e.stack import installed_team  # noqa: E402
from tests.integration.helpers import create_run, phase, run_manifest  # noqa: E402

RUN = "overhead"


def _seconds(stages: dict[str, Any]) -> dict[str, float]:
    """Each stage's wall time, from the run's status."""

    def at(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    return {
        stage: (at(s["completionTime"]) - at(s["startTime"])).total_seconds()
        for stage, s in stages.items()
        if s.get("startTime") and s.get("completionTime")
    }


def run_locally(workdir: Path) -> dict[str, float]:
    """`distillrun run` of the same manifest, its artifacts in a `file://` store."""
    manifest = run_manifest(RUN)
    path = workdir / "overhead.yaml"
    path.write_text(yaml.safe_dump(manifest))
    store = workdir / "local-store"
    command = [str(Path(sys.prefix) / "bin" / "distillrun"), "run", str(path)]
    command += ["--store", f"file://{store}"]
    subprocess.run(command, check=True, cwd=workdir, stdout=subprocess.DEVNULL)
    (status_file,) = store.rglob(STATUS_KEY)
    status = json.loads(status_file.read_text())
    assert status["phase"] == "Succeeded", status
    return _seconds(status["stages"])


def run_on_bed(workdir: Path) -> tuple[dict[str, float], float]:
    """The run on a fresh bed; also the seconds the bed and its installation took."""
    started = time.monotonic()
    bed = bed_up(workdir / "bed")
    try:
        with installed_team(bed) as team:
            setup_s = time.monotonic() - started
            create_run(bed.kube, team.namespace, run_on_s3(RUN))
            ended = wait_ended(team, RUN)
            assert phase(ended) == "Succeeded", json.dumps(ended["status"], indent=1)
            return _seconds(ended["status"]["stages"]), setup_s
    finally:
        bed_down(bed)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="distillrun-bench-bed-") as tmp:
        workdir = Path(tmp)
        (workdir / "bed").mkdir()
        local = run_locally(workdir)
        bed, setup_s = run_on_bed(workdir)
    print(f"bed up, KubeRay, S3, operator image and helm install: {setup_s:.0f} s (not counted)")
    print(f"{'stage':<10}{'local s':>9}{'bed s':>9}{'bed - local':>13}{'bed / local':>13}")
    for stage in [*STAGE_ORDER, "total"]:
        here = sum(local.values()) if stage == "total" else local[stage]
        there = sum(bed.values()) if stage == "total" else bed[stage]
        ratio = f"{there / here:.1f}" if here else "-"  # under a second: no ratio to speak of
        print(f"{stage:<10}{here:>9.0f}{there:>9.0f}{there - here:>13.0f}{ratio:>13}")


if __name__ == "__main__":
    main()
