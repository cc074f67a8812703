"""GPU pools: a run's hardware profile puts its training on the right machines.

Two pools of fake GPU Nodes (kwok), labelled `nvidia.com/gpu.product` as GPU feature discovery
labels them and tainted `nvidia.com/gpu=present:NoSchedule`, plus an untainted CPU pool for the
Ray heads. For each GPU profile a run reaches its train stage; its RayJob's worker group asks
for the profile's GPUs, selects the pool and tolerates its taint, and the real chain places it:
KubeRay (built from the Go module proxy at the version whose CRDs the suite installs) turns the
RayJob into a RayCluster and Pods, kube-scheduler binds each worker to a Node of the pool with
room for it (a full node per worker here, so every node of the pool takes one), and kwok marks
them Running. A profile asked for more GPUs than one of its nodes has is refused before any
RayJob exists, with a message that says what would fit.

Queued runs go through real Kueue (built from the proxy too, v0.15.0; see
tests/integration/kueue.py for what it needs outside a cluster), started for this module only:
per team namespace a LocalQueue on a ClusterQueue whose `nvidia.com/gpu` quota sits on an
`a100` ResourceFlavor. Kueue admits a train RayJob that fits, unsuspends it and KubeRay's pods
are placed in the pool; one that does not fit stays suspended, with nothing created for it,
until quota frees up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from distillrun.api.profiles import GPU_PRODUCT_LABEL
from distillrun.api.status import StageName
from distillrun.operator.builders.common import KUEUE_QUEUE_LABEL
from distillrun.operator.kube import Kube, load_api_client, namespaced_path
from tests.integration.conftest import InProcessOperator, OperatorFactory, fast_settings
from tests.integration.controlplane import ControlPlane, create_namespace, wait_for
from tests.integration.helpers import (
    condition,
    create_run,
    finish_stage,
    kuberay_succeeded,
    phase,
    rayjobs,
    run_manifest,
    run_store,
    wait_events,
    wait_rayjob,
    wait_run,
)
from tests.integration.kueue import create_team_queue, start_kueue, wait_admitted, wait_pending
from tests.integration.scheduling import (
    GPU_RESOURCE,
    GPU_TAINT,
    Daemon,
    Pool,
    create_default_service_account,
    create_pool,
    delete_pods,
    delete_pools,
    placed,
    start_kuberay,
    start_kwok,
    start_scheduler,
)

pytestmark = pytest.mark.integration

A100 = Pool("a100", "NVIDIA-A100-SXM4-80GB", gpus=8, nodes=2)
RTX4090 = Pool("rtx4090", "NVIDIA-GeForce-RTX-4090", gpus=4, nodes=2)
CPU = Pool("cpu", None, gpus=0, nodes=1)
GPU_POOLS = (A100, RTX4090)


@pytest.fixture(scope="module")
def gpu_pools(
    control_plane: ControlPlane, kube: Kube, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """kube-scheduler and kwok running, the pools' Nodes Ready; all gone after the module."""
    workdir = tmp_path_factory.mktemp("gpu-pools")
    daemons = [start_scheduler(control_plane, workdir), start_kwok(control_plane, workdir)]
    try:
        for pool in (*GPU_POOLS, CPU):
            create_pool(kube, pool)
        yield
        for daemon in daemons:
            daemon.check_alive()
    finally:
        for daemon in daemons:
            daemon.stop()
        delete_pools(kube)


KubeRayFactory = Callable[..., Daemon]


@pytest.fixture
def start_kuberay_operator(
    control_plane: ControlPlane, kube: Kube, namespace: str, tmp_path: Path
) -> Iterator[KubeRayFactory]:
    """Starts KubeRay on the test's namespace (and the `others` given) when the test is ready
    for it; at the end stops it and deletes those namespaces' Pods, so the next test finds the
    pools' GPUs free."""
    started: list[Daemon] = []
    watched = {namespace}

    def start(*others: str) -> Daemon:
        watched.update(others)
        namespaces = ",".join([namespace, *others])
        started.append(start_kuberay(control_plane, kube, tmp_path, namespaces))
        return started[-1]

    yield start
    for daemon in started:
        daemon.stop()
    for name in sorted(watched):
        delete_pods(kube, name)


def gpu_run(name: str, profile: str, workers: int, gpus: int) -> dict[str, Any]:
    data = run_manifest(name)
    data["spec"]["student"].update(hardwareProfile=profile, workers=workers, gpusPerWorker=gpus)
    return data


def reach_training(
    kube: Kube, namespace: str, tmp_path: Path, data: dict[str, Any]
) -> dict[str, Any]:
    """Creates the run and plays its generate and validate stages (pods of CPU stages are not
    what this module is about): the train RayJob, once the operator has created it."""
    name = data["metadata"]["name"]
    created = create_run(kube, namespace, data)
    store = run_store(f"file://{tmp_path / 'artifacts'}", created)
    for stage_name in (StageName.GENERATE, StageName.VALIDATE):
        rayjob = f"{name}-{stage_name}-1"
        wait_rayjob(kube, namespace, rayjob)
        finish_stage(kube, namespace, store, stage_name, rayjob)
    return wait_rayjob(kube, namespace, f"{name}-train-1")


def deployment_status(kube: Kube, namespace: str, rayjob: str) -> str | None:
    """What KubeRay last reported of the RayJob (`status.jobDeploymentStatus`)."""
    status: str | None = (
        rayjobs(kube, namespace)[rayjob].get("status", {}).get("jobDeploymentStatus")
    )
    return status


def suspended(kube: Kube, namespace: str, rayjob: str) -> bool:
    """Whether the RayJob is suspended (Kueue drops `spec.suspend` when it admits it)."""
    return bool(rayjobs(kube, namespace)[rayjob]["spec"].get("suspend", False))


def assert_worker_template(rayjob: dict[str, Any], pool: Pool) -> None:
    """The worker group as the profile and the pool need it: `gpus` of the pool's GPUs in
    requests and limits, the pool's product selected, its taint tolerated."""
    group = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    pod = group["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"][GPU_RESOURCE] == resources["limits"][GPU_RESOURCE]
    assert resources["requests"][GPU_RESOURCE] == str(pool.gpus)
    assert pod["nodeSelector"][GPU_PRODUCT_LABEL] == pool.product
    assert any(
        t["key"] == GPU_TAINT["key"]
        and t["effect"] == GPU_TAINT["effect"]
        and (t["operator"] == "Exists" or t.get("value") == GPU_TAINT["value"])
        for t in pod["tolerations"]
    )


@pytest.mark.parametrize(
    ("profile", "pool"),
    [pytest.param("a100-80gb", A100, id="a100"), pytest.param("rtx4090", RTX4090, id="rtx4090")],
)
def test_training_lands_on_the_pool_of_its_profile(
    gpu_pools: None,
    kube: Kube,
    namespace: str,
    start_operator: OperatorFactory,
    start_kuberay_operator: KubeRayFactory,
    tmp_path: Path,
    profile: str,
    pool: Pool,
) -> None:
    create_default_service_account(kube, namespace)
    start_operator()
    data = gpu_run("placed", profile, workers=pool.nodes, gpus=pool.gpus)
    train = reach_training(kube, namespace, tmp_path, data)
    assert_worker_template(train, pool)

    start_kuberay_operator()
    workers = placed(kube, namespace, "ray.io/node-type=worker", count=pool.nodes)
    (head,) = placed(kube, namespace, "ray.io/node-type=head", count=1)
    cluster = {p["metadata"]["labels"]["ray.io/cluster"] for p in [*workers, head]}
    assert len(cluster) == 1 and cluster.pop().startswith("placed-train-1")

    # One full node per worker: the scheduler must spread them over every node of the pool.
    assert sorted(p["spec"]["nodeName"] for p in workers) == pool.node_names
    others = {n for p in (*GPU_POOLS, CPU) if p is not pool for n in p.node_names}
    assert not others & {p["spec"]["nodeName"] for p in workers}
    assert head["spec"]["nodeName"] in CPU.node_names  # the head asks for no GPU, tolerates none
    for pod in workers:
        container = next(c for c in pod["spec"]["containers"] if c["name"] == "ray-worker")
        assert container["resources"]["limits"][GPU_RESOURCE] == str(pool.gpus)


@pytest.fixture(scope="module")
def kueue(
    control_plane: ControlPlane, kube: Kube, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Kueue's manager for the queue tests (only they start it), stopped after the module."""
    daemon = start_kueue(control_plane, kube, tmp_path_factory.mktemp("kueue"))
    try:
        yield
        daemon.check_alive()
    finally:
        daemon.stop()


def test_a_queue_admits_training_within_its_gpu_quota(
    gpu_pools: None,
    kueue: None,
    kube: Kube,
    namespace: str,
    start_operator: OperatorFactory,
    start_kuberay_operator: KubeRayFactory,
    tmp_path: Path,
) -> None:
    """The whole Kueue chain: a team's LocalQueue whose ClusterQueue holds the GPUs of one
    training run (both A100 nodes). The first queued run's train RayJob, created suspended
    with the queue label, is admitted by Kueue, which unsuspends it, and KubeRay's pods are
    placed in the pool; the second waits suspended, not admitted for want of GPU quota, with
    nothing created for it, until the first finishes; then it is admitted and placed."""
    create_default_service_account(kube, namespace)
    a100_labels = {GPU_PRODUCT_LABEL: str(A100.product)}
    create_team_queue(kube, namespace, "team-a-gpus", "a100", a100_labels, gpus=A100.gpus * 2)
    operator = start_operator()
    runs = {}
    for name in ("first", "second"):
        data = gpu_run(name, "a100-80gb", workers=A100.nodes, gpus=A100.gpus)
        data["spec"]["scheduling"] = {"queueName": "team-a-gpus"}
        runs[name] = reach_training(kube, namespace, tmp_path, data)
        assert runs[name]["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a-gpus"
        if name == "first":
            wait_admitted(kube, namespace, "first-train-1")

    why = wait_pending(kube, namespace, "second-train-1")
    assert why.endswith(
        f"insufficient unused quota for {GPU_RESOURCE} in flavor a100, 16 more needed"
    )
    assert suspended(kube, namespace, "second-train-1")  # as the operator created it
    assert not suspended(kube, namespace, "first-train-1")

    kuberay = start_kuberay_operator()
    workers = placed(kube, namespace, "ray.io/node-type=worker", count=A100.nodes)
    assert {p["metadata"]["labels"]["ray.io/cluster"][: len("first-")] for p in workers} == {
        "first-"
    }
    assert sorted(p["spec"]["nodeName"] for p in workers) == A100.node_names
    wait_for(
        lambda: deployment_status(kube, namespace, "second-train-1") == "Suspended",
        "KubeRay to see the second RayJob suspended",
    )
    assert suspended(kube, namespace, "second-train-1")
    clusters = kube.list(namespaced_path("ray.io/v1", namespace, "rayclusters"), "")
    assert [c["metadata"]["name"][: len("first-")] for c in clusters] == ["first-"]

    # The first run's training ends (KubeRay and the operator stopped, so that neither moves on:
    # the status is what KubeRay would report, and its cluster and pods go as KubeRay's
    # shutdownAfterJobFinishes would take them). Kueue frees its quota for the second.
    kuberay.stop()
    operator.stop()
    kuberay_succeeded(kube, namespace, "first-train-1")
    for cluster in clusters:
        name = cluster["metadata"]["name"]
        kube.delete(namespaced_path("ray.io/v1", namespace, "rayclusters", name))
    delete_pods(kube, namespace)
    wait_admitted(kube, namespace, "second-train-1")
    start_kuberay_operator()
    workers = placed(kube, namespace, "ray.io/node-type=worker", count=A100.nodes)
    assert {p["metadata"]["labels"]["ray.io/cluster"][: len("second-")] for p in workers} == {
        "second-"
    }
    assert sorted(p["spec"]["nodeName"] for p in workers) == A100.node_names


def test_each_team_queue_has_its_own_quota(
    gpu_pools: None,
    kueue: None,
    control_plane: ControlPlane,
    kube: Kube,
    namespace: str,
    start_operator: OperatorFactory,
    start_kuberay_operator: KubeRayFactory,
    tmp_path: Path,
) -> None:
    """Two teams, each a namespace with a LocalQueue on a ClusterQueue of one A100 node's GPUs:
    team A's second run waits for team A's quota, but team B's run is admitted beside team A's
    first, and each lands on its own node of the pool."""
    team_b = f"{namespace}-b"
    create_namespace(kube, team_b)
    a100_labels = {GPU_PRODUCT_LABEL: str(A100.product)}
    for team in (namespace, team_b):
        create_default_service_account(kube, team)
        create_team_queue(kube, team, "gpus", "a100", a100_labels, gpus=A100.gpus)
    start_operator()
    operator_b = InProcessOperator(
        team_b,
        fast_settings(tmp_path / "team-b"),
        lambda: load_api_client(str(control_plane.kubeconfig)),
    )
    try:
        for team, name in ((namespace, "a-one"), (namespace, "a-two"), (team_b, "b-one")):
            data = gpu_run(name, "a100-80gb", workers=1, gpus=A100.gpus)
            data["spec"]["scheduling"] = {"queueName": "gpus"}
            workdir = tmp_path if team == namespace else tmp_path / "team-b"
            reach_training(kube, team, workdir, data)
            if name != "a-two":
                wait_admitted(kube, team, f"{name}-train-1")

        why = wait_pending(kube, namespace, "a-two-train-1")
        assert why.endswith(
            f"insufficient unused quota for {GPU_RESOURCE} in flavor a100, 8 more needed"
        )
        assert suspended(kube, namespace, "a-two-train-1")
        assert not suspended(kube, team_b, "b-one-train-1")

        start_kuberay_operator(team_b)
        (worker_a,) = placed(kube, namespace, "ray.io/node-type=worker", count=1)
        (worker_b,) = placed(kube, team_b, "ray.io/node-type=worker", count=1)
        assert worker_a["metadata"]["labels"]["ray.io/cluster"].startswith("a-one-train-1")
        assert worker_b["metadata"]["labels"]["ray.io/cluster"].startswith("b-one-train-1")
        nodes = sorted([worker_a["spec"]["nodeName"], worker_b["spec"]["nodeName"]])
        assert nodes == A100.node_names
        assert suspended(kube, namespace, "a-two-train-1")
    finally:
        operator_b.stop()


def test_more_gpus_per_worker_than_a_node_has_is_refused(
    kube: Kube, namespace: str, start_operator: OperatorFactory
) -> None:
    start_operator()
    create_run(kube, namespace, gpu_run("oversized", "rtx4090", workers=2, gpus=8))
    run = wait_run(
        kube,
        namespace,
        "oversized",
        lambda r: (condition(r, "Ready") or {}).get("reason") == "GpusExceedNode",
        "refused",
    )
    ready = condition(run, "Ready")
    assert ready is not None and ready["status"] == "False"
    assert ready["message"] == (
        "spec.student.gpusPerWorker: 8 GPUs per worker, but a node of hardware profile "
        "rtx4090 has 4 (gpu.perNode) and a worker pod cannot span nodes; for the same 16 GPUs "
        "use workers: 4 with gpusPerWorker: 4"
    )
    assert phase(run) == "Pending"
    assert rayjobs(kube, namespace) == {}
    posted = wait_events(
        kube, namespace, "oversized", lambda r: "GpusExceedNode" in r, "the refusal's Event"
    )
    (warning,) = [e for e in posted if e["reason"] == "GpusExceedNode"]
    assert warning["type"] == "Warning" and warning["message"] == ready["message"]
