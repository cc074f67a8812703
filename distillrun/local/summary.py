"""The few lines a user reads at the end of `distillrun run`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from distillrun.api.status import StageName
from distillrun.jobs.context import StageResult
from distillrun.teacher.factory import stand_in

if TYPE_CHECKING:  # the runner imports this module
    from distillrun.local.runner import RunOutcome


def render_summary(outcome: RunOutcome) -> str:
    status = outcome.status
    lines = [f"DistillRun {outcome.run.metadata.name}: {status.phase}"]
    for stage, result in outcome.results.items():
        reused = " (reused)" if result.reused else ""
        lines.append(f"  {stage:<9} done{reused}")
    generate = outcome.results.get(StageName.GENERATE)
    if generate is not None:
        replaced = stand_in(generate.summary["teacher"], outcome.run.spec.teacher)
        if replaced:
            lines.append(f"  teacher: {replaced}")
        target = outcome.run.spec.teacher.target_examples
        lines.append(
            f"  examples: {status.counts.generated} generated, {status.counts.accepted} accepted "
            f"(target {target})"
        )
    if status.counts.rejected:
        reasons = ", ".join(f"{k} {v}" for k, v in status.counts.rejected.items())
        lines.append(f"  rejected: {reasons}")
    cost = status.cost
    if cost.usd or cost.input_tokens:
        lines.append(
            f"  teacher cost: ${cost.usd:.2f} ({cost.input_tokens} in / {cost.output_tokens} out "
            f"/ {cost.cache_read_tokens} cache read / {cost.cache_write_tokens} cache write tokens)"
        )
    evaluation = status.evaluation
    if evaluation.execution_accuracy is not None:  # a refused student's too
        lines.append(
            f"  execution accuracy: {evaluation.execution_accuracy:.3f} "
            f"on {evaluation.scored} scored of {evaluation.examples} holdout "
            f"examples ({evaluation.unjudgeable} unjudgeable and "
            f"{evaluation.gold_empty} with an empty gold result counted apart)"
        )
        if evaluation.base_execution_accuracy is not None:
            gain = 100 * (evaluation.execution_accuracy - evaluation.base_execution_accuracy)
            lines.append(
                f"  base model before training: {evaluation.base_execution_accuracy:.3f} "
                f"(distillation {gain:+.1f} points)"
            )
    lines.append(f"  artifacts: {outcome.store.url()}")
    if status.artifacts.report:
        lines.append(f"  report: {status.artifacts.report}")
    if outcome.report_problem:
        lines.append(f"  report not built: {outcome.report_problem}")
    return "\n".join(lines)


def describe_result(result: StageResult, seconds: float) -> str:
    """One line saying what a finished stage did, for the progress log."""
    s = result.summary
    took = f"in {seconds:.1f} s"
    if result.reused:
        return f"done (reused committed outputs) {took}"
    if result.stage == StageName.GENERATE:
        what = (
            f"{s['generated']} examples in {s['shards']} shards over {s['rounds']} round(s) "
            f"({s['teacher_calls']} written, {s['reused_shards']} reused), "
            f"{s['screened_accepted']} accepted on screening"
        )
    elif result.stage == StageName.VALIDATE:
        rejected = sum(s["rejected"].values())
        what = (
            f"{s['accepted']} accepted, {rejected} rejected; "
            f"{s['train']} train / {s['holdout']} holdout"
        )
    elif result.stage == StageName.TRAIN:
        what = f"{s['steps']} steps on {s['examples']} examples, final loss {s['final_loss']:.4f}"
    else:
        what = (
            f"execution accuracy {s['execution_accuracy']:.3f} ({s['correct']}/{s['scored']} "
            f"scored of {s['examples']}; apart: {s['unjudgeable']} unjudgeable, "
            f"{s['gold_empty']} empty gold results)"
        )
        if s.get("base_execution_accuracy") is not None:
            what += f"; base model before training {s['base_execution_accuracy']:.3f}"
    return f"done: {what} {took}"
