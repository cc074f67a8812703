"""Prometheus metrics of the operator: runs by phase, reconcile latency, stage durations, teacher
spend and API requests.

Each `Metrics` has its own registry (several operators can live in one test process) and, when a
port is given, its own `/metrics` server that `close` shuts down.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from distillrun.api.status import DistillRunStatus, Phase, StageName, StageState

STAGE_BUCKETS = (30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)


class Metrics:
    """The operator's metrics; `serve` exposes them over HTTP."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs = Gauge(
            "distillrun_runs", "DistillRuns by phase.", ["phase"], registry=self.registry
        )
        self.reconcile_seconds = Histogram(
            "distillrun_reconcile_seconds",
            "Time to reconcile one run (read, plan, write).",
            registry=self.registry,
        )
        self.reconciles = Counter(
            "distillrun_reconciles_total",
            "Reconciles by outcome (ok, conflict, error).",
            ["outcome"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "distillrun_stage_duration_seconds",
            "Stage wall time from its RayJob's creation to its end.",
            ["stage", "outcome"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.teacher_spend = Counter(
            "distillrun_teacher_spend_usd_total",
            "US dollars the teacher cost, counted when a generate stage finishes.",
            registry=self.registry,
        )
        self.api_requests = Counter(
            "distillrun_api_requests_total",
            "Requests the operator sent to the apiserver, by HTTP method.",
            ["method"],
            registry=self.registry,
        )
        for phase in Phase:
            self.runs.labels(phase=str(phase))
        self._phases: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server: tuple[object, threading.Thread] | None = None

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serves `/metrics` on `port` until `close`."""
        self._server = start_http_server(port, addr=address, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
            thread.join()
            self._server = None

    def set_phase(self, uid: str, phase: str | None) -> None:
        """Records the phase of run `uid` (None when it is gone)."""
        with self._lock:
            if phase is None:
                self._phases.pop(uid, None)
            else:
                self._phases[uid] = phase
            tally = Tally(self._phases.values())
            for known in Phase:
                self.runs.labels(phase=str(known)).set(tally.get(str(known), 0))

    def stage_transitions(self, before: DistillRunStatus, after: DistillRunStatus) -> None:
        """Observes stages that ended between `before` and `after`, and the teacher's spend."""
        for stage in StageName:
            old = before.stages.get(str(stage))
            new = after.stages.get(str(stage))
            if new is None or new.state not in (StageState.SUCCEEDED, StageState.FAILED):
                continue
            if old is not None and old.state == new.state:
                continue
            seconds = _seconds(new.start_time, new.completion_time)
            if seconds is not None:
                outcome = "succeeded" if new.state == StageState.SUCCEEDED else "failed"
                self.stage_seconds.labels(stage=str(stage), outcome=outcome).observe(seconds)
            if stage == StageName.GENERATE and new.state == StageState.SUCCEEDED:
                self.teacher_spend.inc(after.cost.usd)

    def count_request(self, method: str) -> None:
        self.api_requests.labels(method=method).inc()


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        began = datetime.fromisoformat(start.replace("Z", "+00:00"))
        ended = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max((ended - began).total_seconds(), 0.0)
