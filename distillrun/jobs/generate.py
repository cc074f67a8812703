"""The generate stage: the teacher writes examples, one shard at a time, in parallel.

The plan is a list of shard keys (`teacher.base.shard_key`), fixed by the spec alone. A shard is
committed as one object, `generate/shards/<key>.json`, written put-if-absent the moment the
teacher returns it; a restarted stage lists what is committed and asks the teacher only for the
rest, so a finished shard is never paid for twice. `generate/_manifest.json` sums up the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from distillrun.api.status import StageName
from distillrun.jobs.context import StageContext, StageFailed, StageResult
from distillrun.jobs.parallel import Executor, InlineExecutor
from distillrun.teacher.base import ShardOutput, ShardRequest, Teacher, Usage, shard_key

SHARDS_PREFIX = "generate/shards/"
MANIFEST_KEY = "generate/_manifest.json"


def shard_object_key(key: str) -> str:
    return f"{SHARDS_PREFIX}{key}.json"


def plan_shards(ctx: StageContext, teacher: Teacher) -> list[ShardRequest]:
    """Every shard the run needs, in index order; a pure function of the spec and schema."""
    spec = ctx.run.spec.teacher
    questions = tuple(ctx.run.spec.seed_questions)
    count = math.ceil(spec.target_examples / spec.examples_per_shard)
    return [
        ShardRequest(
            key=shard_key(ctx.schema, questions, teacher, spec.seed, spec.examples_per_shard, i),
            index=i,
            count=spec.examples_per_shard,
            seed=spec.seed,
            schema=ctx.schema,
            seed_questions=questions,
            reasoning=spec.reasoning,
        )
        for i in range(count)
    ]


@dataclass(frozen=True)
class _ShardJob:
    """A picklable unit of work for an executor: the teacher and the request."""

    teacher: Teacher
    request: ShardRequest


def _write_shard(job: _ShardJob) -> ShardOutput:
    return job.teacher.write_shard(job.request)


def _add_usage(total: Usage, part: Usage) -> Usage:
    return Usage(
        input_tokens=total.input_tokens + part.input_tokens,
        output_tokens=total.output_tokens + part.output_tokens,
        cache_read_tokens=total.cache_read_tokens + part.cache_read_tokens,
        cache_write_tokens=total.cache_write_tokens + part.cache_write_tokens,
        usd=total.usd + part.usd,
        requests=total.requests + part.requests,
    )


def run(ctx: StageContext, teacher: Teacher, executor: Executor | None = None) -> StageResult:
    """Generates every missing shard of the plan and commits each as soon as it is written."""
    executor = executor or InlineExecutor()
    plan = plan_shards(ctx, teacher)
    committed = {
        key.removeprefix(SHARDS_PREFIX).removesuffix(".json")
        for key in ctx.store.list_keys(SHARDS_PREFIX)
    }
    missing = [r for r in plan if r.key not in committed]
    reused = len(plan) - len(missing)
    if reused:
        ctx.progress.note(StageName.GENERATE, f"reusing {reused} committed shard(s)")

    done = reused
    ctx.progress.counts(StageName.GENERATE, {"shards": done}, total=len(plan))
    jobs = [_ShardJob(teacher, r) for r in missing]
    try:
        for _, output in executor.map_unordered(_write_shard, jobs):
            ctx.store.put_bytes(
                shard_object_key(output.key), output.model_dump_json().encode(), if_absent=True
            )
            done += 1
            ctx.progress.counts(StageName.GENERATE, {"shards": done}, total=len(plan))
    except StageFailed:
        raise
    except Exception as exc:
        raise StageFailed(
            StageName.GENERATE,
            "TeacherFailed",
            f"{exc} ({done} of {len(plan)} shards are committed and will be reused)",
        ) from exc

    usage = Usage()
    examples = malformed = 0
    for request in plan:
        output = ShardOutput.model_validate_json(ctx.store.get_bytes(shard_object_key(request.key)))
        usage = _add_usage(usage, output.usage)
        examples += len(output.examples)
        malformed += len(output.malformed)
    summary = {
        "shards": len(plan),
        "reused_shards": reused,
        "teacher_calls": len(missing),
        "generated": examples,
        "malformed": malformed,
        "usage": usage.model_dump(),
    }
    manifest = {
        **summary,
        "teacher": teacher.name,
        "parameters": teacher.parameters,
        "plan": [r.key for r in plan],
    }
    ctx.store.put_json(MANIFEST_KEY, manifest)
    ctx.progress.counts(StageName.GENERATE, {"shards": len(plan), "generated": examples})
    return StageResult(StageName.GENERATE, summary, reused=not missing)
