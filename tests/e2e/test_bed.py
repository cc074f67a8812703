"""The real one-node bed: pods run in real containers, reach each other through a Service by
its cluster DNS name, a second bed is refused, and taking the bed down leaves the machine as
the session found it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from distillrun.operator.kube import core_path
from tests.e2e.bed import NODE_UP, Bed, machine_state
from tests.e2e.conftest import BedSession
from tests.e2e.pods import logs, python_pod, wait_finished, wait_ready

pytestmark = pytest.mark.e2e


def test_a_pod_runs_to_succeeded(bed: Bed, namespace: str) -> None:
    code = "import platform; print('ran on', platform.node(), 6 * 7)"
    bed.kube.create(core_path(namespace, "pods"), python_pod("answer", code))
    assert wait_finished(bed.kube, namespace, "answer") == "Succeeded"
    assert logs(bed.kube, namespace, "answer") == "ran on answer 42\n"


def test_a_failing_pod_ends_failed(bed: Bed, namespace: str) -> None:
    bed.kube.create(core_path(namespace, "pods"), python_pod("broken", "raise SystemExit(3)"))
    assert wait_finished(bed.kube, namespace, "broken") == "Failed"


def test_a_pod_reaches_another_through_a_service(bed: Bed, namespace: str) -> None:
    server = (
        "import http.server as h; "
        "h.HTTPServer(('', 8080), h.SimpleHTTPRequestHandler).serve_forever()"
    )
    web = python_pod("web", server, labels={"app": "web"}, restart="Always", port=8080)
    web["spec"]["containers"][0]["workingDir"] = "/etc"
    bed.kube.create(core_path(namespace, "pods"), web)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    bed.kube.create(core_path(namespace, "services"), service)
    wait_ready(bed.kube, namespace, "web")
    # kube-proxy rejects connections to a Service until it has synced the ready endpoint.
    url = f"http://web.{namespace}.svc.cluster.local/hostname"
    fetch = f"""
import time, urllib.request
for attempt in range(60):
    try:
        print(urllib.request.urlopen({url!r}, timeout=10).read().decode())
        break
    except OSError:
        time.sleep(0.5)
else:
    raise SystemExit('no answer from ' + {url!r})
"""
    bed.kube.create(core_path(namespace, "pods"), python_pod("client", fetch))
    assert wait_finished(bed.kube, namespace, "client") == "Succeeded", logs(
        bed.kube, namespace, "client"
    )
    assert logs(bed.kube, namespace, "client").strip() == "web"  # /etc/hostname of the web pod


def test_a_second_bed_is_refused_with_the_running_ones_directory(bed: Bed, tmp_path: Path) -> None:
    second = subprocess.run(
        [str(NODE_UP), str(tmp_path / "second")], capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 3
    assert "a bed is already running on this machine" in second.stderr
    assert f"scripts/testbed/node-down {bed.workdir}" in second.stderr
    assert bed.kube.get("/api/v1/nodes/bed-node")  # the running bed is untouched


def test_down_leaves_nothing_behind(bed: Bed, bed_session: BedSession) -> None:
    """Each kind of leftover the bed makes while up is gone after down (the next test that needs
    a bed starts a new one)."""
    bed.kube.create(
        core_path("default", "pods"), python_pod("sleeper", "import time; time.sleep(600)")
    )
    wait_ready(bed.kube, "default", "sleeper")
    before, running = bed_session.machine_before, machine_state(bed.workdir)
    for kind in (
        "process",
        "mount",
        "network namespace",
        "network link",
        "cgroup",
        "machine directory",
    ):
        assert running[kind] - before[kind], f"a running bed shows no {kind}: the check is blind"
    bed_session.down()
    after = machine_state(bed.workdir)
    for kind, found in after.items():
        assert found - before[kind] == frozenset(), f"left behind ({kind})"
    for kind in ("iptables rule", "sysctl", "machine directory"):
        assert after[kind] == before[kind], f"changed on the machine ({kind})"


def test_a_missing_piece_is_named_with_the_command_that_builds_it(tmp_path: Path) -> None:
    empty_cache = tmp_path / "cache"
    result = subprocess.run(
        [str(NODE_UP), str(tmp_path / "bed")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DISTILLRUN_TESTBED_CACHE": str(empty_cache)},
    )
    assert result.returncode == 2
    assert (
        f"{empty_cache}/bin/etcd is missing; build it with scripts/testbed/build" in result.stderr
    )
    assert not (tmp_path / "bed" / "pids").exists()  # nothing was started
