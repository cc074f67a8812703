"""Live progress of a local run in the terminal: a bar per stage on a TTY, throttled plain lines
otherwise (CI logs, pipes), so long work always shows that it is moving."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from distillrun.api.status import StageName

PLAIN_INTERVAL_S = 5.0


def describe(values: dict[str, float | int]) -> str:
    """`accepted=212 rejected:duplicate=3 loss=0.4812` — floats shortened, counts as is."""
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


class TerminalProgress:
    """A ProgressSink that draws to a rich Console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._bars: Progress | None = None
        self._tasks: dict[StageName, TaskID] = {}
        self._last_line: dict[StageName, float] = {}
        if console.is_terminal:
            self._bars = Progress(
                TextColumn("[bold]{task.fields[stage]:<9}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=console,
            )

    def __enter__(self) -> TerminalProgress:
        if self._bars is not None:
            self._bars.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._bars is not None:
            self._bars.stop()

    def counts(
        self, stage: StageName, values: dict[str, float | int], total: int | None = None
    ) -> None:
        text = describe(values)
        if self._bars is None:
            now = time.monotonic()
            if now - self._last_line.get(stage, 0.0) >= PLAIN_INTERVAL_S or total is None:
                self._last_line[stage] = now
                of = f" (of {total})" if total is not None else ""
                self.console.print(f"{stage:<9} {text}{of}", highlight=False)
            return
        completed: float = next(iter(values.values()), 0)
        if stage not in self._tasks:
            self._tasks[stage] = self._bars.add_task(text, total=total, stage=str(stage))
        task = self._tasks[stage]
        if total is None:  # the stage's last word: fill its bar
            bar_total = self._bars.tasks[task].total
            self._bars.update(task, description=text, completed=bar_total or completed)
            return
        self._bars.update(task, description=text, completed=completed, total=total)

    def note(self, stage: StageName, message: str) -> None:
        self.console.print(f"{stage:<9} {message}", highlight=False)
