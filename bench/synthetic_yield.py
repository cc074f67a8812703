"""Synthetic teacher yield on the shop schema: how many of the examples it generates the
generate stage accepts (after execution, SQL dedup and near-duplicate questions), at several
targets, through the real generate stage (file store, SQLite sandbox, top-up rounds on).

Baseline in the same run: the same builders with shards drawn independently (every shard its
own stream, as before shards looked back at the ones before them), so the ratio shows what
the stream buys. Also prints the constructs the accepted set never uses. Not a test: it prints
figures, and the goal next to them.

    .venv/bin/python bench/synthetic_yield.py [--targets 240 600 1000 1200]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections import Counter
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distillrun.api import parse_run  # noqa: E402
from distillrun.jobs import generate, judging  # noqa: E402
from distillrun.jobs.context import StageContext  # noqa: E402
from distillrun.jobs.inputs import load_inputs  # noqa: E402
from distillrun.jobs.parallel import InlineExecutor  # noqa: E402
from distillrun.sql.constructs import CONSTRUCTS  # noqa: E402
from distillrun.store import open_store  # noqa: E402
from distillrun.teacher.base import ShardOutput, ShardRequest, Teacher  # noqa: E402
from distillrun.teacher.synthetic import SyntheticTeacher  # noqa: E402

EXAMPLES = ROOT / "examples"
GOAL = 0.6


@dataclasses.dataclass
class IndependentShards:
    """The synthetic teacher with every shard drawn on its own: shard i is shard 0 of a seed
    of its own, so it looks back at nothing (the baseline)."""

    inner: SyntheticTeacher = dataclasses.field(default_factory=SyntheticTeacher)
    name: str = "synthetic-independent"

    @property
    def parameters(self) -> dict[str, Any]:
        return {**self.inner.parameters, "independent": True}

    def write_shard(self, request: ShardRequest) -> ShardOutput:
        alone = dataclasses.replace(request, index=0, seed=request.seed * 100_003 + request.index)
        output = self.inner.write_shard(alone)
        examples = [
            e.model_copy(update={"id": f"{request.key}-{n:03d}", "shard": request.key})
            for n, e in enumerate(output.examples)
        ]
        return output.model_copy(update={"key": request.key, "examples": examples})


def measure(teacher: Teacher, target: int, rounds: int) -> dict[str, Any]:
    data = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    data["spec"]["teacher"].update({"targetExamples": target, "maxTopUpRounds": rounds})
    run = parse_run(data)
    schema, seed = load_inputs(run, EXAMPLES, "quickstart.yaml")
    with TemporaryDirectory() as tmp:
        store = open_store(tmp).sub("bench")
        ctx = StageContext(run=run, store=store, schema=schema, seed_sql=seed)
        started = time.perf_counter()
        summary = generate.run(ctx, teacher).summary
        seconds = time.perf_counter() - started
        manifest = store.get_json(generate.MANIFEST_KEY)
        shards = [
            ShardOutput.model_validate_json(store.get_bytes(generate.shard_object_key(k)))
            for k in manifest["plan"]
        ]
        judged = judging.judge_shards(ctx, shards, InlineExecutor())
        screened = judging.screen([j for js in judged for j in js], run.spec.validation.dedup)
    uses = Counter(c for j in screened.accepted for c in j.constructs)
    return {
        "generated": manifest["generated"],
        "accepted": summary["screened_accepted"],
        "rounds": manifest["rounds"],
        "seconds": seconds,
        "never_used": [c for c in CONSTRUCTS if not uses[c]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, nargs="+", default=[240, 600, 1000, 1200])
    parser.add_argument("--rounds", type=int, default=5, help="teacher.maxTopUpRounds")
    args = parser.parse_args()
    print(f"goal: >= {GOAL:.0%} of generated examples accepted up to 1,000 accepted")
    header = f"{'teacher':<22}{'target':>7}{'generated':>10}{'accepted':>9}{'yield':>7}"
    print(f"{header}{'rounds':>7}{'seconds':>8}  never used")
    for target in args.targets:
        for teacher in (SyntheticTeacher(), IndependentShards()):
            m = measure(teacher, target, args.rounds)
            share = m["accepted"] / m["generated"] if m["generated"] else 0.0
            never = ", ".join(m["never_used"]) or "-"
            print(
                f"{teacher.name:<22}{target:>7}{m['generated']:>10}{m['accepted']:>9}"
                f"{share:>7.0%}{m['rounds']:>7}{m['seconds']:>8.1f}  {never}"
            )


if __name__ == "__main__":
    main()
