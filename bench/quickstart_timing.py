"""The offline quickstart, timed: `distillrun run
examples/quickstart.yaml` on a fresh store. Not a test: it prints figures, and the goals next
to them.

    .venv/bin/python bench/quickstart_timing.py [--manifest examples/quickstart.yaml] [--no-ray]

Two things are measured apart, as the goals are:

1. the one-time build of the builtin SQL base (`builtin:sql-qwen3`) into a fresh cache
   directory -- goal <= 10 minutes on 2 cores;
2. the whole run on a fresh store with that base cached -- goal <= 5 minutes on 2 cores,
   ending with holdout execution accuracy >= 0.70.

Each is timed in wall-clock seconds and in CPU seconds of the process and its children (the
CLI runs as a child, and Ray's workers are its children). On a machine shared with other work
the wall clock says more about the neighbours than about distillrun, so the script also prints
the load average before and after and the CPU seconds divided by the cores the process may use:
about what the wall clock would be with those cores to itself (an estimate, stated as one).
The run's accuracy, its base's accuracy before training, the split and the train stage's
own runtime come from the run's artifacts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[1]
BUILD_GOAL_S = 600
RUN_GOAL_S = 300
ACCURACY_GOAL = 0.70


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child and its descendants, output)."""
    before_cpu = _children_cpu_s()
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    cpu = _children_cpu_s() - before_cpu
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{' '.join(command)} failed with exit status {done.returncode}")
    return wall, cpu, done.stdout


def _line(what: str, wall: float, cpu: float, goal_s: float) -> str:
    alone = cpu / _cores()
    verdict = "meets" if alone <= goal_s else "MISSES"
    return (
        f"{what}: {wall:7.1f} s wall, {cpu:7.1f} CPU s = ~{alone:6.1f} s on {_cores()} cores of "
        f"its own ({verdict} the goal of {goal_s:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", default="examples/quickstart.yaml")
    parser.add_argument("--no-ray", action="store_true", help="pass --no-ray to distillrun run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="distillrun-bench-") as scratch:
        env = {**os.environ, "DISTILLRUN_CACHE_DIR": str(Path(scratch) / "cache")}
        env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
        print(f"load average before: {os.getloadavg()}  (cores usable: {_cores()})")
        build = [
            sys.executable,
            "-c",
            "from distillrun.jobs.builtin.cache import ensure_base;"
            "from distillrun.jobs.student import cache_root;"
            "print(ensure_base(cache_root()))",
        ]
        build_wall, build_cpu, _ = _timed(build, env)
        print(_line("builtin base, one-time build", build_wall, build_cpu, BUILD_GOAL_S))

        store = Path(scratch) / "store"
        run = [sys.executable, "-m", "distillrun.cli", "run", args.manifest, "--store", str(store)]
        if args.no_ray:
            run.append("--no-ray")
        run_wall, run_cpu, _ = _timed(run, env)
        print(_line("quickstart run, base cached", run_wall, run_cpu, RUN_GOAL_S))
        print(f"load average after: {os.getloadavg()}")

        name = yaml.safe_load((ROOT / args.manifest).read_text())["metadata"]["name"]
        artifacts = store / "default" / name / "local"
        metrics: dict[str, Any] = json.loads((artifacts / "evaluate/metrics.json").read_text())
        trained = json.loads((artifacts / "train/metrics.json").read_text())
        split = json.loads((artifacts / "validate/_done.json").read_text())["summary"]
        accuracy = float(metrics["execution_accuracy"])
        base = (metrics.get("base") or {}).get("holdout") or {}
        print(
            f"train {split['train']} / holdout {split['holdout']} examples; training "
            f"{trained['steps']} steps in {trained['runtime_s']:.1f} s"
        )
        verdict = "meets" if accuracy >= ACCURACY_GOAL else "MISSES"
        print(
            f"holdout execution accuracy {accuracy:.3f} ({metrics['correct']}/{metrics['scored']}) "
            f"-- {verdict} the goal of {ACCURACY_GOAL:.2f}"
        )
        if base:
            print(
                f"base model before training: {base['execution_accuracy']:.3f} "
                f"({base['correct']}/{base['scored']}); distillation "
                f"{100 * (accuracy - float(base['execution_accuracy'])):+.1f} points"
            )


if __name__ == "__main__":
    main()
