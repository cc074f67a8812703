"""Operator benchmark against the real apiserver (the integration testbed): 200 DistillRuns
created at once. Not a test: it prints figures, and the goals next to them.

    .venv/bin/python bench/operator_scale.py [--runs 200]

Measures, with the operator as its own process (`kopf run -m distillrun.operator.main`, as in
the image) once it is up (a warm-up run has had its first RayJob; it is left out of the figures):
- p50/p95 from a run's create to its first RayJob existing (seen on a watch);
- p50/p95 from a RayJob's completion (KubeRay's status patch `jobStatus: SUCCEEDED`, played by
  the benchmark as KubeRay v1.6.0 writes it: deployment still `Running`, then `Complete` in a
  second patch) to the next stage's RayJob existing, all 200 completing at once, after every
  RayJob was reported running (and the operator's passes for that are done);
- the operator's peak RSS (VmHWM) and API requests per reconcile (from its /metrics);
- errors: reconciles that failed, tracebacks in the operator's log.
Baseline, measured in the same run on the same apiserver: create → seen-on-watch of a bare
ConfigMap, the floor any controller's latency sits on; the operator's p95 is printed as a
ratio to it. Goals: p95 < 2 s at 200 runs, RSS < 250 MB, no errors.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from distillrun.api.status import StageName  # noqa: E402
from distillrun.operator.controller import rayjob_path, run_path  # noqa: E402
from distillrun.operator.kube import Kube, core_path  # noqa: E402
from tests.integration.controlplane import ControlPlane, create_namespace  # noqa: E402
from tests.integration.helpers import (  # noqa: E402
    kuberay_job_succeeded,
    kuberay_running,
    kuberay_succeeded,
    run_manifest,
    run_store,
    write_outputs,
)

NAMESPACE = "bench"


class Watcher:
    """Records when each object of a collection is first seen on a watch stream."""

    def __init__(self, kube: Kube, path: str) -> None:
        self.kube = kube
        self.path = path
        self.first_seen: dict[str, float] = {}
        self.resumed = 0
        """Watch streams the apiserver ended that were resumed."""
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self._ready.wait(30)

    def _watch(self) -> None:
        """Watches until stopped, resuming from the last resourceVersion when the apiserver
        ends the stream (it closes a watcher that falls behind a burst of events); after a
        410 Gone the objects a fresh list shows are recorded as seen now."""
        version = ""
        while not self._stop.is_set():
            if not version:
                listing = self.kube.request("GET", self.path)
                for item in listing["items"]:
                    self.first_seen.setdefault(item["metadata"]["name"], time.monotonic())
                version = listing["metadata"]["resourceVersion"]
            version = self._stream(version)
            self.resumed += not self._stop.is_set()

    def _stream(self, version: str) -> str:
        """One watch stream from `version`; the resourceVersion to resume from ("" to list)."""
        api = self.kube.api
        serialized = api.param_serialize(
            method="GET",
            resource_path=self.path,
            query_params=[
                ("watch", "1"),
                ("timeoutSeconds", "3600"),
                ("resourceVersion", version),
            ],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = api.call_api(*serialized).response
        self._ready.set()
        buffer = b""
        try:
            for chunk in response.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    event = json.loads(line)
                    if event["type"] == "ERROR":  # 410 Gone: too old to resume from
                        return ""
                    meta = event["object"]["metadata"]
                    self.first_seen.setdefault(meta["name"], time.monotonic())
                    version = meta["resourceVersion"]
                if self._stop.is_set():
                    break
        finally:
            response.release_conn()
        return version

    def wait(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(n in self.first_seen for n in names):
            if time.monotonic() > deadline:
                missing = [n for n in names if n not in self.first_seen]
                raise SystemExit(
                    f"timed out waiting for {len(missing)} objects, e.g. {missing[:3]}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _since(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The counters' growth from `before` to `after`."""
    return {name: value - before.get(name, 0.0) for name, value in after.items()}


def _reconciles(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("distillrun_reconciles_total"))


def _wait_reconciles(port: int, count: float, timeout: float) -> None:
    """Waits until the operator has made `count` reconciles in all."""
    deadline = time.monotonic() + timeout
    while _reconciles(_metrics(port)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {count:.0f} reconciles")
        time.sleep(0.2)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _baseline(kube: Kube, count: int) -> list[float]:
    """Create → seen-on-watch of bare ConfigMaps: the apiserver's own floor."""
    watcher = Watcher(kube, core_path(NAMESPACE, "configmaps"))
    created: dict[str, float] = {}

    def create(index: int) -> None:
        name = f"baseline-{index}"
        created[name] = time.monotonic()
        kube.create(
            core_path(NAMESPACE, "configmaps"),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}},
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(count)))
    watcher.wait(list(created), 60)
    watcher.stop()
    return [watcher.first_seen[n] - t for n, t in created.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="distillrun-bench-") as tmp:
        workdir = Path(tmp)
        plane = ControlPlane(workdir / "control-plane")
        operator: subprocess.Popen[bytes] | None = None
        try:
            with plane.client() as kube:
                plane.install_crds(kube)
                create_namespace(kube, NAMESPACE)
                baseline = _baseline(kube, args.runs)

                store_root = f"file://{workdir / 'artifacts'}"
                metrics_port = _free_port()
                env = {
                    **os.environ,
                    "KUBECONFIG": str(plane.kubeconfig),
                    "DISTILLRUN_ARTIFACTS_URI": store_root,
                    "DISTILLRUN_ARTIFACTS_ALLOW_FILE_STORE": "true",  # the bench writes the outputs
                    "DISTILLRUN_METRICS_PORT": str(metrics_port),
                    "DISTILLRUN_OPERATOR_RESYNC_SECONDS": "30",
                }
                log = (workdir / "operator.log").open("wb")
                operator = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "kopf",
                        "run",
                        "--standalone",
                        "--namespace",
                        NAMESPACE,
                        "-m",
                        "distillrun.operator.main",
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                deadline = time.monotonic() + 60
                while True:
                    try:
                        _metrics(metrics_port)
                        break
                    except OSError:
                        if time.monotonic() > deadline or operator.poll() is not None:
                            raise SystemExit("the operator did not start") from None
                        time.sleep(0.2)

                jobs = Watcher(kube, rayjob_path(NAMESPACE))
                # Serving /metrics is not watching yet (kopf lists the runs after its start-up
                # handlers, and retries a list the apiserver answers 429 a second later): one
                # run first, so that the figures are of an operator that is up.
                kube.create(run_path(NAMESPACE), run_manifest("warm-up"))
                jobs.wait(["warm-up-generate-1"], 120)
                warm = _metrics(metrics_port)
                names = [f"run-{i:03d}" for i in range(args.runs)]
                created_at: dict[str, float] = {}
                bodies: dict[str, dict[str, Any]] = {}

                def create(name: str) -> None:
                    created_at[name] = time.monotonic()
                    bodies[name] = kube.create(run_path(NAMESPACE), run_manifest(name))

                cpu_before = _cpu_seconds(operator.pid)
                phase_started = time.monotonic()
                with ThreadPoolExecutor(16) as pool:
                    list(pool.map(create, names))
                jobs.wait([f"{n}-generate-1" for n in names], 300)
                first_wall = time.monotonic() - phase_started
                first_cpu = _cpu_seconds(operator.pid) - cpu_before
                first = [jobs.first_seen[f"{n}-generate-1"] - created_at[n] for n in names]

                # KubeRay reports each job running minutes before it ends: those passes are
                # done before the completions start, as on a cluster.
                settled = _reconciles(_metrics(metrics_port))
                with ThreadPoolExecutor(16) as pool:
                    list(
                        pool.map(
                            lambda n: kuberay_running(kube, NAMESPACE, f"{n}-generate-1"), names
                        )
                    )
                _wait_reconciles(metrics_port, settled + len(names), 300)
                completed_at: dict[str, float] = {}

                def complete(name: str) -> None:
                    """As KubeRay v1.6.0 in K8sJobMode: the job's outputs are written, its
                    driver exits (`jobStatus: SUCCEEDED`, deployment still `Running`), then the
                    submitter exits (`jobDeploymentStatus: Complete`)."""
                    rayjob = f"{name}-generate-1"
                    write_outputs(run_store(store_root, bodies[name]), StageName.GENERATE)
                    kuberay_job_succeeded(kube, NAMESPACE, rayjob)
                    completed_at[name] = time.monotonic()
                    kuberay_succeeded(kube, NAMESPACE, rayjob)

                with ThreadPoolExecutor(16) as pool:
                    list(pool.map(complete, names))
                jobs.wait([f"{n}-validate-1" for n in names], 300)
                jobs.stop()
                nxt = [jobs.first_seen[f"{n}-validate-1"] - completed_at[n] for n in names]

                time.sleep(2)
                metrics = _since(warm, _metrics(metrics_port))
                rss = _peak_rss_mb(operator.pid)
        finally:
            if operator is not None:
                operator.terminate()
                operator.wait(timeout=60)
            plane.stop()

        log_text = (workdir / "operator.log").read_text(errors="replace")
    reconciles = _reconciles(metrics)
    requests = sum(v for k, v in metrics.items() if k.startswith("distillrun_api_requests_total"))
    failed = sum(
        v
        for k, v in metrics.items()
        if k.startswith("distillrun_reconciles_total") and 'outcome="ok"' not in k
    )
    b50, b95 = _percentiles(baseline)
    f50, f95 = _percentiles(first)
    n50, n95 = _percentiles(nxt)
    print(f"runs: {args.runs} (2 cores shared with etcd, the apiserver and this client)")
    print(f"baseline create -> watch (ConfigMap): p50 {b50:.3f} s, p95 {b95:.3f} s")
    print(
        f"create -> first RayJob:  p50 {f50:.3f} s, p95 {f95:.3f} s "
        f"({f95 / b95:.1f}x baseline p95; goal p95 < 2 s)"
    )
    print(
        f"complete -> next RayJob: p50 {n50:.3f} s, p95 {n95:.3f} s "
        f"({n95 / b95:.1f}x baseline p95; goal p95 < 2 s)"
    )
    print(f"operator CPU while creating: {first_cpu:.1f} s of {first_wall:.1f} s wall")
    print(f"operator peak RSS: {rss:.0f} MB (goal < 250 MB)")
    by_method = ", ".join(
        f"{k.split(chr(34))[1]} {v:.0f}"  # distillrun_api_requests_total{method="GET"}
        for k, v in sorted(metrics.items())
        if k.startswith("distillrun_api_requests_total")
    )
    print(
        f"API requests per reconcile: {requests / max(reconciles, 1):.2f} "
        f"({requests:.0f} requests: {by_method}; {reconciles:.0f} reconciles)"
    )
    print(f"benchmark's RayJob watch resumed {jobs.resumed} time(s)")
    print(
        f"errors: {failed:.0f} reconciles not ok, {log_text.count('Traceback')} tracebacks (goal 0)"
    )


if __name__ == "__main__":
    main()
