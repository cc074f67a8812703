"""Live progress of a local run in the terminal: a bar per stage on a TTY, throttled plain lines
otherwise (CI logs, pipes), so long work always shows that it is moving."""

from __future__ import annotations

import threading
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
QUIET_AFTER_S = 30.0


def describe(values: dict[str, float | int]) -> str:
    """`accepted=212 rejected:duplicate=3 loss=0.4812` — floats shortened, counts as is."""
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


class TerminalProgress:
    """A ProgressSink that draws to a rich Console. While nothing is reported for
    `quiet_after_s` (a teacher that does not answer, a long download), a line says how long the
    last stage heard from has been waiting, so a hang never looks like a finished screen."""

    def __init__(self, console: Console, *, quiet_after_s: float = QUIET_AFTER_S) -> None:
        self.console = console
        self.quiet_after_s = quiet_after_s
        self._bars: Progress | None = None
        self._tasks: dict[StageName, TaskID] = {}
        self._last_line: dict[StageName, float] = {}
        self._last_event = time.monotonic()
        self._last_stage: StageName | None = None
        self._stopped = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="progress-quiet", daemon=True)
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
        self._watcher.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        self._watcher.join()
        if self._bars is not None:
            self._bars.stop()

    def _heard(self, stage: StageName) -> None:
        self._last_event, self._last_stage = time.monotonic(), stage

    def _watch(self) -> None:
        said = 0.0  # quiet seconds already reported, so each wait is told once per interval
        while not self._stopped.wait(min(1.0, self.quiet_after_s)):
            quiet = time.monotonic() - self._last_event
            if quiet < said:  # heard something since the last line
                said = 0.0
            if self._last_stage is not None and quiet - said >= self.quiet_after_s:
                said = quiet
                self.console.print(
                    f"{self._last_stage:<9} waiting: nothing new for {quiet:.0f} s",
                    highlight=False,
                )

    def counts(
        self, stage: StageName, values: dict[str, float | int], total: int | None = None
    ) -> None:
        self._heard(stage)
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
        self._heard(stage)
        self.console.print(f"{stage:<9} {message}", highlight=False)
