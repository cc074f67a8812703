"""The real one-node cluster of the e2e suite (`scripts/testbed/node-up` / `node-down`), and
what a bed may leave on the machine, read so a test can check that it left nothing."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from distillrun.operator.kube import Kube, load_api_client
from tests.integration.controlplane import BUILD

NODE_UP = BUILD.parent / "node-up"
NODE_DOWN = BUILD.parent / "node-down"
HOW_TO_BUILD = (
    "the e2e tests need a real one-node cluster: build its pieces once with "
    "`scripts/testbed/build` (as root; `scripts/test` does it for you)"
)
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
)
"""The tunables the kubelet would set machine-wide (node-up covers them in its mount namespace)."""
MACHINE_PATHS = ("/run/netns", "/run/containerd", "/var/lib/cni", "/run/distillrun-bed.dir")
"""Machine directories the bed may create (network namespaces, containerd's shims, CNI's result
cache) or its lock file."""


BED_CPUS = 4
"""CPUs the bed's node advertises (twice this 2-core machine's, shared): a stage's Ray head,
worker and submitter request 2.1 CPUs (`scripts/testbed/node-up`, DISTILLRUN_TESTBED_CPUS)."""


class BedUnavailable(RuntimeError):
    """The bed cannot start here; the message says why and, for a missing piece, how to build it."""


@dataclass
class Bed:
    """A running bed: its directory and an admin client (`kube`)."""

    workdir: Path
    kube: Kube

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"


def bed_up(workdir: Path) -> Bed:
    """Starts the bed in `workdir`; BedUnavailable names a missing piece, or says why not."""
    if os.geteuid() != 0:
        raise BedUnavailable("the e2e tests run a real node and need root (namespaces, cgroups)")
    result = subprocess.run(
        [str(NODE_UP), str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DISTILLRUN_TESTBED_CPUS": str(BED_CPUS)},
    )
    if result.returncode != 0:
        hint = f" ({HOW_TO_BUILD})" if result.returncode == 2 else ""
        raise BedUnavailable(f"scripts/testbed/node-up failed{hint}:\n{result.stderr[-4000:]}")
    return Bed(workdir, Kube(load_api_client(str(workdir / "kubeconfig"))))


def bed_down(bed: Bed) -> None:
    """Stops the bed and removes everything it made (node-down says what it could not)."""
    bed.kube.close()
    result = subprocess.run(
        [str(NODE_DOWN), str(bed.workdir)], capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/testbed/node-down failed:\n{result.stderr[-4000:]}")


def machine_state(workdir: Path) -> dict[str, frozenset[str]]:
    """What a bed in `workdir` could leave behind, by kind: its processes (every one it starts
    names its directory, containerd's shims included), mount points, network namespaces,
    network links, top-level cgroups of each hierarchy, the machine's iptables rules, the
    tunables the kubelet wants, and the machine directories a bed creates."""
    return {
        "process": frozenset(_processes_naming(str(workdir))),
        "mount": frozenset(_mount_points()),
        "network namespace": frozenset(_listing(["ip", "netns", "list"])),
        "network link": frozenset(_links()),
        "cgroup": frozenset(str(p) for p in Path("/sys/fs/cgroup").glob("*/*") if p.is_dir()),
        "iptables rule": frozenset(_iptables_rules()),
        "sysctl": frozenset(
            f"{name}={Path('/proc/sys', name).read_text().strip()}" for name in KUBELET_SYSCTLS
        ),
        "machine directory": frozenset(p for p in MACHINE_PATHS if Path(p).exists()),
    }


def _processes_naming(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if text in cmdline:
            found.append(f"{entry.name} {cmdline.strip()}")
    return found


def _mount_points() -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines]


def _listing(command: list[str]) -> list[str]:
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def _iptables_rules() -> list[str]:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    # Counters change by themselves; comments carry a timestamp.
    return [
        re.sub(r"\[\d+:\d+\]", "", line)
        for line in out.splitlines()
        if line and not line.startswith("#")
    ]
