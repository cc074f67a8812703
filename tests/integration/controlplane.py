"""The real control plane of the integration suite and the benchmark: `scripts/testbed/start`
run as a child process, plus the CRDs (DistillRun from `crds/`, KubeRay's RayJob and RayCluster
from the testbed cache), and helpers to talk to it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from distillrun.api.crd import build_crd
from distillrun.operator.kube import Kube, load_api_client

ROOT = Path(__file__).parents[2]
BUILD = ROOT / "scripts" / "testbed" / "build"
START = ROOT / "scripts" / "testbed" / "start"
HOW_TO_BUILD = (
    "the integration tests need a real kube-apiserver and etcd: build them once with "
    "`scripts/testbed/build` (10-30 minutes on 2 cores; `scripts/test` does it for you)"
)
READY_TIMEOUT_S = 120.0


class ControlPlaneMissing(RuntimeError):
    """The testbed binaries are not built; the message says how to build them."""


def cache_dir() -> Path:
    out = subprocess.run([str(BUILD), "--print"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def missing_binaries(cache: Path) -> list[str]:
    wanted = [cache / "bin" / "etcd", cache / "bin" / "kube-apiserver"]
    wanted += [cache / "crds" / "ray.io_rayjobs.yaml", cache / "crds" / "ray.io_rayclusters.yaml"]
    return [str(p) for p in wanted if not p.exists()]


class ControlPlane:
    """etcd + kube-apiserver on loopback, started in `workdir`; `stop()` ends both."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cache = cache_dir()
        missing = missing_binaries(self.cache)
        if missing:
            raise ControlPlaneMissing(f"missing {', '.join(missing)}: {HOW_TO_BUILD}")
        self.kubeconfig = workdir / "kubeconfig"
        workdir.mkdir(parents=True, exist_ok=True)
        self._log = (workdir / "start.log").open("wb")
        self._process = subprocess.Popen(
            [str(START), str(workdir)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (workdir / "ready").exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (workdir / "start.log").read_text(errors="replace")
                raise RuntimeError(f"the control plane did not start:\n{log[-4000:]}")
            time.sleep(0.2)

    def client(self) -> Kube:
        return Kube(load_api_client(str(self.kubeconfig)))

    def stop(self) -> None:
        terminate(self._process)
        self._log.close()

    def install_crds(self, kube: Kube) -> None:
        """DistillRun's CRD as the models generate it, and KubeRay's from its Go module."""
        crds: list[dict[str, Any]] = [build_crd()]
        for name in ("ray.io_rayjobs.yaml", "ray.io_rayclusters.yaml"):
            crds.append(yaml.safe_load((self.cache / "crds" / name).read_text()))
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        for crd in crds:
            kube.create(path, crd)
        for crd in crds:
            wait_for(
                lambda crd=crd: established(kube.get(f"{path}/{crd['metadata']['name']}")),
                f"CRD {crd['metadata']['name']} established",
            )


def terminate(process: subprocess.Popen[bytes]) -> None:
    """Stops a testbed process: SIGTERM, then SIGKILL if it has not exited within 30 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def wait_for(check: Any, what: str, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Polls `check()` until it returns something truthy (returned) or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def create_namespace(kube: Kube, name: str) -> None:
    kube.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
