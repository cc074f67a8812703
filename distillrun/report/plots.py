"""The report's charts, drawn with matplotlib as SVG and embedded in the page as data URIs.

Static SVG keeps the page one file that needs no network and no script to view, and stays sharp
at any zoom. Figures are built with the object API (no pyplot: no global figure state, no GUI
backend) and saved with a fixed hash salt and no date, so the same run always draws the same
bytes. Every function returns None when it has nothing to draw, and the page then shows no
chart rather than an empty one.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from matplotlib.typing import RcKeyType

from distillrun.report.model import Accuracy, Data, Money, ReasonGroup, Training, Uses

ACCEPTED = "#2b8a3e"
REJECTED = "#e8590c"
NEUTRAL = "#adb5bd"
PRIMARY = "#364fc7"
SECONDARY = "#ae3ec9"
INK = "#343a40"
GRID = "#e9ecef"

WIDTH_IN = 6.4
BAR_ROW_IN = 0.28

_STYLE: dict[RcKeyType, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.edgecolor": NEUTRAL,
    "axes.labelcolor": INK,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.titlecolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": GRID,
    "xtick.color": INK,
    "ytick.color": INK,
    "legend.frameon": False,
    "svg.hashsalt": "distillrun-report",
}


@contextmanager
def _figure(height_in: float) -> Iterator[Figure]:
    with rc_context(_STYLE):
        yield Figure(figsize=(WIDTH_IN, height_in), layout="constrained")


def _data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None}, transparent=True)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _horizontal(
    axes: Axes, labels: Sequence[str], values: Sequence[float], colors: Sequence[str]
) -> None:
    """Horizontal bars, largest first from the top, each with its value at the end."""
    positions = range(len(labels))
    axes.barh(positions, values, color=colors, height=0.65)
    axes.set_yticks(list(positions), labels)
    axes.invert_yaxis()
    axes.grid(axis="y", visible=False)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def shards_chart(data: Data) -> str | None:
    """Per shard, in plan order: accepted and rejected examples (generated before validation)."""
    if not data.shards:
        return None
    with _figure(2.5) as figure:
        axes = figure.add_subplot()
        positions = list(range(len(data.shards)))
        labels = [row.key.split("-")[0].lstrip("0") or "0" for row in data.shards]
        if data.validated:
            accepted = [row.accepted or 0 for row in data.shards]
            rejected = [row.rejected or 0 for row in data.shards]
            axes.bar(positions, accepted, color=ACCEPTED, label="accepted")
            axes.bar(positions, rejected, bottom=accepted, color=REJECTED, label="rejected")
            axes.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2)
        else:
            axes.bar(positions, [row.generated for row in data.shards], color=NEUTRAL)
        axes.set_xticks(positions, labels)
        if len(positions) > 30:
            axes.xaxis.set_major_locator(MaxNLocator(nbins=15, integer=True))
        axes.set_xlabel("shard (plan order)")
        axes.set_ylabel("examples")
        axes.grid(axis="x", visible=False)
        axes.set_title("Generated examples per shard")
        return _data_uri(figure)


def _counts_chart(
    labels: Sequence[str], counts: Sequence[int], colors: Sequence[str], title: str
) -> str | None:
    """Examples per label, as horizontal bars; None without labels."""
    if not labels:
        return None
    with _figure(0.9 + BAR_ROW_IN * len(labels)) as figure:
        axes = figure.add_subplot()
        _horizontal(axes, labels, counts, colors)
        axes.set_xlabel("examples")
        axes.set_title(title)
        return _data_uri(figure)


def reasons_chart(groups: Sequence[ReasonGroup], title: str) -> str | None:
    """Rejected examples by reason class."""
    reasons = [g.reason for g in groups]
    return _counts_chart(reasons, [g.count for g in groups], [REJECTED] * len(groups), title)


def spend_chart(money: Money) -> str | None:
    """Teacher dollars, accumulated shard by shard, against the budget."""
    if not money.total.usd:
        return None
    with _figure(2.4) as figure:
        axes = figure.add_subplot()
        steps = list(range(1, len(money.cumulative_usd) + 1))
        axes.step(steps, money.cumulative_usd, where="post", color=PRIMARY, label="spent")
        axes.fill_between(steps, money.cumulative_usd, step="post", color=PRIMARY, alpha=0.12)
        if money.budget_usd is not None:
            axes.axhline(money.budget_usd, color=REJECTED, linestyle="--", label="budget")
        axes.set_ylim(bottom=0)
        axes.set_xlabel("shards committed (plan order)")
        axes.set_ylabel("USD")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(loc="upper left")
        axes.set_title("Teacher spend")
        return _data_uri(figure)


def loss_chart(training: Training) -> str | None:
    """Training loss per logged step, with the learning rate on a second axis."""
    history = training.history
    if not history:
        return None
    with _figure(2.8) as figure:
        axes = figure.add_subplot()
        steps = [p.step for p in history]
        axes.plot(steps, [p.loss for p in history], color=PRIMARY, linewidth=1.6, label="loss")
        axes.set_xlabel("optimizer step")
        axes.set_ylabel("training loss")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        rates = [(p.step, p.learning_rate) for p in history if p.learning_rate is not None]
        if rates:
            right = axes.twinx()
            right.plot(
                [s for s, _ in rates],
                [r for _, r in rates],
                color=SECONDARY,
                linewidth=1.2,
                linestyle="--",
                label="learning rate",
            )
            right.set_ylabel("learning rate", color=SECONDARY)
            right.tick_params(axis="y", colors=SECONDARY)
            right.spines["right"].set_visible(True)
            right.grid(visible=False)
            right.set_ylim(bottom=0)
            lines = axes.get_lines() + right.get_lines()
            axes.legend(lines, [str(line.get_label()) for line in lines], loc="upper right")
        axes.set_title("Loss and learning rate")
        return _data_uri(figure)


def sample_accuracy_chart(training: Training) -> str | None:
    """Execution accuracy on a holdout sample, measured every few steps during training, on the
    loss chart's step axis so the two read side by side."""
    points = training.sample_accuracy
    if not points:
        return None
    with _figure(2.2) as figure:
        axes = figure.add_subplot()
        axes.plot(
            [p.step for p in points],
            [p.execution_accuracy for p in points],
            color=ACCEPTED,
            marker="o",
            markersize=3.5,
            linewidth=1.4,
        )
        axes.set_ylim(0, 1.02)
        axes.set_xlim(0, max([p.step for p in training.history] + [p.step for p in points]))
        axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("optimizer step")
        axes.set_ylabel("execution accuracy")
        axes.set_title(f"Accuracy on a holdout sample of {points[-1].examples} during training")
        return _data_uri(figure)


def outcomes_chart(outcomes: Sequence[Uses]) -> str | None:
    """Predictions by outcome: correct, or why not."""
    colors = [ACCEPTED if o.name == "correct" else REJECTED for o in outcomes]
    names = [o.name for o in outcomes]
    return _counts_chart(names, [o.count for o in outcomes], colors, "Predictions by outcome")


def accuracy_chart(rows: Sequence[Accuracy], title: str) -> str | None:
    """Execution accuracy per slice, with `correct/scored` beside each bar."""
    if not rows:
        return None
    with _figure(0.9 + BAR_ROW_IN * len(rows)) as figure:
        axes = figure.add_subplot()
        positions = range(len(rows))
        axes.barh(positions, [1.0] * len(rows), color=GRID, height=0.65)
        _horizontal(axes, [r.name for r in rows], [r.rate for r in rows], [PRIMARY] * len(rows))
        axes.set_xlim(0, 1.12)
        axes.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        axes.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        for index, row in enumerate(rows):
            axes.annotate(
                f"{row.correct}/{row.scored}",
                (1.0, index),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color=INK,
            )
        axes.set_title(title)
        return _data_uri(figure)
