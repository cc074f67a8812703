"""`distillrun status`: the report's numbers as terminal tables, for finished runs and running ones.

The numbers come from the same `RunReport` the page is drawn from, so the terminal and the page
never disagree. A stage still running shows how long it has run so far, measured against `now`.
"""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from distillrun.report.model import Data, Header, Money, Quality, RunReport, Training

_STATE_STYLE = {"Succeeded": "green", "Failed": "bold red", "Running": "cyan", "Pending": "dim"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _clock(stamp: str | None) -> str:
    """The time of day of an RFC 3339 stamp (the date is in the title)."""
    if not stamp:
        return "-"
    try:
        return datetime.fromisoformat(stamp).strftime("%H:%M:%S")
    except ValueError:
        return stamp


def _elapsed(start: str | None, now: datetime) -> float | None:
    if not start:
        return None
    try:
        return (now - datetime.fromisoformat(start)).total_seconds()
    except (ValueError, TypeError):
        return None


def _facts(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", show_header=False)
    table.add_column(style="dim")
    table.add_column(justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


def _stages(header: Header, now: datetime) -> Table:
    table = Table(title="Stages", title_justify="left", title_style="bold")
    for column in ("stage", "state", "started", "finished", "duration", "attempts", "message"):
        table.add_column(column, justify="right" if column in ("duration", "attempts") else "left")
    for stage in header.stages:
        seconds = stage.seconds
        duration = _duration(seconds)
        if seconds is None and stage.state == "Running":
            duration = f"{_duration(_elapsed(stage.start, now))} so far"
        table.add_row(
            stage.name,
            Text(stage.state, style=_STATE_STYLE.get(stage.state, "")),
            _clock(stage.start),
            _clock(stage.end),
            duration,
            str(stage.attempts),
            stage.message,
        )
    return table


def _data(data: Data, header: Header) -> Table:
    planned = f" of {data.shards_planned:,}" if data.shards_planned else ""
    rows = [
        ("shards committed", f"{data.shards_committed:,}{planned}"),
        ("generated", f"{data.generated:,}"),
    ]
    for group in data.teacher_dropped:
        rows.append((f"dropped by teacher: {group.reason}", f"{group.count:,}"))
    if data.accepted is None:
        rows.append(("accepted", "validation not finished"))
    else:
        rate = data.acceptance_rate
        share = f" ({rate:.1%})" if rate is not None else ""
        target = f" of target {header.target_examples:,}" if header.target_examples else ""
        rows.append(("accepted", f"{data.accepted:,}{share}{target}"))
        rows.append(("rejected", f"{data.rejected_total:,}"))
        for group in data.rejected:
            rows.append((f"  {group.reason}", f"{group.count:,}"))
        if data.train is not None and data.holdout is not None:
            rows.append(("train / holdout", f"{data.train:,} / {data.holdout:,}"))
        rows.extend(("warning", warning) for warning in data.warnings)
    return _facts("Data", rows)


def _money(money: Money) -> Table:
    total = money.total
    budget = f" of ${money.budget_usd:,.2f}" if money.budget_usd is not None else ""
    rows = [("teacher calls", money.mode)] if money.mode else []
    rows += [
        ("requests", f"{total.requests:,}"),
        ("input tokens", f"{total.input_tokens:,}"),
        ("output tokens", f"{total.output_tokens:,}"),
        ("cache read tokens", f"{total.cache_read_tokens:,}"),
        ("cache write tokens", f"{total.cache_write_tokens:,}"),
    ]
    for spend in money.by_stage:
        rows.append((f"USD {spend.stage}", f"${spend.usd:,.4f}"))
    rows.append(("USD total", f"${total.usd:,.4f}{budget}"))
    per = money.usd_per_accepted
    if per is not None:
        rows.append(("USD per accepted", f"${per:,.4f}"))
    return _facts("Money", rows)


def _training(training: Training) -> Table:
    rows = [("steps", f"{training.steps:,}")]
    if training.final_loss is not None:
        rows.append(("final loss", f"{training.final_loss:.4f}"))
    if training.runtime_s is not None:
        rows.append(("training time", _duration(training.runtime_s)))
    if training.steps_per_second is not None:
        rows.append(("steps/s", f"{training.steps_per_second:.2f}"))
    if training.tokens_per_second is not None:
        rows.append(("tokens/s", f"{training.tokens_per_second:,.0f}"))
    if training.gpu_memory_peak_bytes is not None:
        rows.append(("GPU memory peak", f"{training.gpu_memory_peak_bytes / 2**30:.1f} GiB"))
    if training.hardware_profile:
        rows.append(("hardware profile", training.hardware_profile))
    return _facts("Training", rows)


def _quality(quality: Quality) -> Table:
    rows: list[tuple[str, str]] = []
    for scores in (quality.holdout, quality.gold_set):
        if scores is None:
            continue
        rows.append(
            (
                f"execution accuracy ({scores.name})",
                f"{scores.execution_accuracy:.1%} ({scores.correct:,}/{scores.scored:,}), "
                f"{scores.comparison} comparison",
            )
        )
        rows.append(
            (
                "  counted apart",
                f"{scores.unjudgeable:,} unjudgeable, {scores.gold_empty:,} empty gold results",
            )
        )
        rows.extend(("  warning", warning) for warning in scores.warnings)
        if scores is quality.holdout and quality.threshold is not None:
            verdict = "pass" if quality.passed else "FAIL"
            rows.append(("gate", f"{quality.threshold:.1%} {verdict}"))
        for outcome in scores.outcomes:
            rows.append((f"  {outcome.name}", f"{outcome.count:,}"))
    for contender in quality.contenders:
        holdout = contender.holdout
        shown = f"{holdout.rate:.1%} ({holdout.correct:,}/{holdout.scored:,})"
        rows.append((contender.name, shown))
        if contender.gold_set is not None:
            rows.append(("  on the gold set", f"{contender.gold_set.rate:.1%}"))
        if contender.usd:
            rows.append(("  cost", f"${contender.usd:.4f}"))
        rows.append(("  student ahead by", f"{quality.points_over(contender):+.1f} points"))
    return _facts("Quality", rows)


def render_status(report: RunReport, now: datetime) -> RenderableType:
    """The run's numbers as tables; sections without data are left out."""
    header = report.header
    title = Text.assemble(
        ("DistillRun ", "bold"),
        (header.name, "bold"),
        ": ",
        (header.phase, _STATE_STYLE.get(header.phase, "bold cyan")),
        f"\n{header.uri}",
    )
    if header.start:
        title.append(f"\nstarted {header.start}")
        if header.end:
            title.append(f", finished {header.end}")
    if header.report:
        title.append(f"\nreport: {header.report}")
    parts: list[RenderableType] = [title]
    if header.failure:
        parts.append(Text(f"failed: {header.failure}", style="red"))
    parts.extend(Text(f"unreadable: {problem}", style="red") for problem in report.problems)
    if header.stages:
        parts.append(_stages(header, now))
    if report.data is not None:
        parts.append(_data(report.data, header))
    if report.money is not None:
        parts.append(_money(report.money))
    if report.training is not None:
        parts.append(_training(report.training))
    if report.quality is not None:
        parts.append(_quality(report.quality))
    return Group(*parts)
