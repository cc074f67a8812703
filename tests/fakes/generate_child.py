"""The generate stage in a process of its own, so a test can kill it (SIGKILL) mid-run.

    python -m tests.fakes.generate_child STORE BASE_URL MODE TARGET PER_SHARD WORKERS

It runs against the fake API at BASE_URL, with the shop schema and `ANTHROPIC_API_KEY` from the
environment, on WORKERS threads, polling batches every 50 ms.
"""

from __future__ import annotations

import sys
from pathlib import Path

from distillrun.jobs import generate
from tests.fakes.fixtures import ThreadExecutor, fast_teacher, shop_context


def main(argv: list[str]) -> None:
    store, url, mode, target, per_shard, workers = argv
    ctx = shop_context(
        Path(store),
        baseUrl=url,
        mode=mode,
        targetExamples=int(target),
        examplesPerShard=int(per_shard),
    )
    generate.run(ctx, fast_teacher(ctx), ThreadExecutor(int(workers)), poll_interval_s=0.05)


if __name__ == "__main__":
    main(sys.argv[1:])
