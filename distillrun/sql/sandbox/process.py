"""Sandboxes whose engine runs in a worker process that can be killed and replaced.

Why a process: engine-level limits are cooperative. SQLite checks its progress handler only
between virtual-machine steps and DuckDB checks for an interrupt only between chunks, so a
single huge allocation (`repeat('x', 1e9)`, `range(1e9)` as a list) can run far past the
statement timeout, and a crash in an engine would take the caller with it. In a worker the
parent waits `timeout + grace` at most, then kills the worker and starts a fresh one on the
same read-only database file; the worker's address space is capped, so memory bombs fail
inside it. A worker found dead (killed from outside, crashed) is replaced and the query
re-sent once; a query that kills two workers in a row is reported as failed.

`EngineWorker` is that supervision, for any engine; `WorkerSandbox` is the embedded-engine
sandbox built on it (the server sandboxes in `server.py` use it too).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import distillrun
from distillrun.api.spec import Dialect, SandboxSpec
from distillrun.sql.checks import FORBIDDEN_FUNCTIONS, FORBIDDEN_PREFIXES
from distillrun.sql.errors import QueryFailed, QueryTimeout, SandboxError, SessionLost
from distillrun.sql.sandbox.base import ResultSet, Sandbox
from distillrun.sql.sandbox.protocol import decode_value, encode_frame, read_frame, write_frame
from distillrun.sql.schema import SchemaInfo
from distillrun.sql.verdict import Reason

WORKER_MEMORY_BYTES = 2 * 2**30
"""Address-space cap of a worker process (DuckDB's own memory limit is a quarter of it)."""

START_TIMEOUT_S = 300.0
"""How long building the database from the DDL and seed rows may take."""

CHECKSUM_TIMEOUT_S = 120.0
"""How long hashing every row of the database may take."""


class _WorkerGone(Exception):
    """The worker exited, closed its pipes or garbled its answer: it must be replaced."""


def worker_start(
    dialect: Dialect, location: str, limits: SandboxSpec, *, ddl: str | None, seed: str | None
) -> dict[str, Any]:
    """The start-up message of a worker; with `ddl`, the worker builds the database first."""
    return {
        "engine": str(dialect),
        "location": location,
        "build": ddl is not None,
        "ddl": ddl or "",
        "seed": seed,
        "timeout_ms": limits.statement_timeout_ms,
        "max_rows": limits.max_rows,
        "memory_bytes": WORKER_MEMORY_BYTES,
        "deny_functions": sorted(FORBIDDEN_FUNCTIONS[dialect]),
        "deny_prefixes": list(FORBIDDEN_PREFIXES[dialect]),
    }


class EngineWorker:
    """One engine in a supervised worker process, replaced whenever it dies or hangs.

    The first worker gets `start` as given (it may build the database); replacements get it
    with `build` off. `on_kill` runs after a worker was killed for not answering in time: a
    server sandbox uses it to cancel what the lost worker left running on the server.
    """

    def __init__(
        self,
        start: dict[str, Any],
        limits: SandboxSpec,
        cwd: str,
        on_kill: Callable[[], None] | None = None,
    ) -> None:
        self._start = dict(start)
        self._limits = limits
        self._cwd = cwd
        self._on_kill = on_kill
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._spawn()
        # Later workers reopen the database the first one built.
        self._start.update(build=False, ddl="", seed=None)

    @property
    def pid(self) -> int:
        """Process id of the current worker (started on demand), for supervision and tests."""
        return self._worker().pid

    def execute(self, sql: str) -> ResultSet:
        """Runs one query in the worker; raises QueryTimeout, QueryFailed or SessionLost."""
        timeout_s = self._limits.statement_timeout_ms / 1000
        wait_s = timeout_s + 1.0 + timeout_s / 2
        try:
            reply = self._call({"op": "execute", "sql": sql}, wait_s)
        except TimeoutError:
            self._stop_worker()
            if self._on_kill is not None:
                self._on_kill()
            raise QueryTimeout(
                f"the sandbox worker did not answer within {wait_s:.1f} s (statement timeout "
                f"{self._limits.statement_timeout_ms} ms) and was replaced"
            ) from None
        except _WorkerGone as gone:
            raise QueryFailed(f"the query ended two sandbox workers in a row: {gone}") from None
        if reply.get("ok"):
            return ResultSet(
                columns=tuple(reply["columns"]),
                rows=tuple(decode_value(row) for row in reply["rows"]),
                truncated=bool(reply["truncated"]),
                ms=float(reply["ms"]),
            )
        if reply.get("error") == "timeout":
            raise QueryTimeout(reply["message"])
        if reply.get("error") == "lost":
            raise SessionLost(reply["message"])
        raise QueryFailed(reply["message"], reason=Reason(reply.get("reason", "execution_error")))

    def checksum(self) -> str:
        """The engine's checksum of its database; SandboxError when the worker cannot say."""
        try:
            reply = self._call({"op": "checksum"}, CHECKSUM_TIMEOUT_S)
        except (TimeoutError, _WorkerGone) as error:
            self._stop_worker()
            raise SandboxError(f"the sandbox could not compute its checksum: {error}") from None
        return str(reply["checksum"])

    def close(self) -> None:
        """Ends the worker gently; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop_worker(gently=True)

    def _call(self, request: dict[str, Any], wait_s: float) -> dict[str, Any]:
        """Sends one request; a worker that is gone is replaced and the request re-sent once."""
        try:
            return self._request(request, wait_s)
        except _WorkerGone:
            self._stop_worker()
            return self._request(request, wait_s)

    def _request(self, request: dict[str, Any], wait_s: float) -> dict[str, Any]:
        return self._exchange(self._worker(), request, wait_s)

    @staticmethod
    def _exchange(
        process: subprocess.Popen[bytes], request: dict[str, Any], wait_s: float
    ) -> dict[str, Any]:
        assert process.stdin is not None and process.stdout is not None
        deadline = time.monotonic() + wait_s
        try:
            write_frame(process.stdin.fileno(), encode_frame(request), deadline)
            return read_frame(process.stdout.fileno(), deadline)
        except (EOFError, BrokenPipeError) as error:
            raise _WorkerGone(f"worker {process.pid} is gone ({error})") from None
        except (SandboxError, ValueError) as error:  # a garbled frame: the worker is not sane
            raise _WorkerGone(f"worker {process.pid} broke the protocol ({error})") from None

    def _worker(self) -> subprocess.Popen[bytes]:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        if self._process is None or self._process.poll() is not None:
            self._stop_worker()
            self._spawn()
        assert self._process is not None
        return self._process

    def _spawn(self) -> None:
        package_root = str(Path(distillrun.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._process = process = subprocess.Popen(
            [sys.executable, "-m", "distillrun.sql.sandbox.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=self._cwd,
            env=env,
        )
        try:
            reply = self._exchange(process, self._start, START_TIMEOUT_S)
        except (TimeoutError, _WorkerGone) as error:
            self._stop_worker()
            raise SandboxError(f"the sandbox worker did not start: {error}") from None
        if not reply.get("ok"):
            self._stop_worker()
            raise SandboxError(reply.get("message", "the sandbox worker did not start"))

    def _stop_worker(self, *, gently: bool = False) -> None:
        """Ends the current worker: by closing its stdin when `gently`, else by SIGKILL."""
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None and process.stdout is not None
        if gently:
            process.stdin.close()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        else:
            process.kill()
        process.wait()
        process.stdin.close()
        process.stdout.close()


class WorkerSandbox(Sandbox):
    """A SQLite or DuckDB engine in a worker process over a private read-only database file."""

    def __init__(self, schema: SchemaInfo, seed_sql: str | None, limits: SandboxSpec) -> None:
        dialect = Dialect(schema.dialect)
        self._directory = tempfile.mkdtemp(prefix="distillrun-sandbox-")
        self._worker: EngineWorker | None = None
        path = str(Path(self._directory) / f"sandbox.{dialect}")
        start = worker_start(dialect, path, limits, ddl=schema.ddl, seed=seed_sql)
        try:
            self._worker = EngineWorker(start, limits, self._directory)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        """Process id of the current worker (started on demand), for supervision and tests."""
        return self._engine().pid

    def execute(self, sql: str) -> ResultSet:
        return self._engine().execute(sql)

    def data_checksum(self) -> str:
        return self._engine().checksum()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    def _engine(self) -> EngineWorker:
        if self._worker is None:
            raise SandboxError("the sandbox is closed")
        return self._worker
