"""What runs beside the bed for a DistillRun on real pods: the CRDs, the real KubeRay operator
(outside the cluster network, reaching Ray dashboards through the apiserver's service proxy),
an S3 API server (moto in server mode) inside the bed's network where pods and the machine both
reach it, and the distillrun operator as a team installs it: its image built from the
Dockerfile, `helm install` of the chart. Every process is recorded in the bed's pids/ directory,
so `scripts/testbed/node-down` stops it even if a test could not."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml
from kubernetes import client

from distillrun.api.crd import build_crd
from distillrun.operator.kube import core_path
from tests.e2e.bed import Bed
from tests.integration.controlplane import ROOT, cache_dir, create_namespace, established, wait_for

NODE_IP = "10.250.0.2"
S3_PORT = 9000
S3_ENDPOINT = f"http://{NODE_IP}:{S3_PORT}"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "e2e", "AWS_SECRET_ACCESS_KEY": "e2e-secret"}
S3_REGION = "us-east-1"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
BUCKET = "e2e-artifacts"
_IN_BED_NETWORK = ("nsenter", "--net=/run/netns/distillrun-bed", "--")
"""How a server started here listens inside the bed's network, on the node's address."""


class BedProcess:
    """A process started for the bed, its pid in `<bed>/pids/<name>.pid`, its output in
    `<bed>/logs/<name>.log`."""

    def __init__(self, bed: Bed, name: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.name = name
        self.pid_file = bed.workdir / "pids" / f"{name}.pid"
        self.log_path = bed.workdir / "logs" / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=ROOT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self.process.pid}\n")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.pid_file.unlink(missing_ok=True)


def install_crds(bed: Bed) -> None:
    """DistillRun's CRD as the models generate it, and KubeRay's three (its operator watches
    all of them)."""
    crds: list[dict[str, Any]] = [build_crd()]
    for name in ("rayjobs", "rayclusters", "rayservices"):
        text = (cache_dir() / "crds" / f"ray.io_{name}.yaml").read_text()
        crds.append(yaml.safe_load(text))
    for crd in crds:
        bed.kube.create(CRD_PATH, crd)
    for crd in crds:
        name = crd["metadata"]["name"]
        wait_for(lambda name=name: established(bed.kube.get(f"{CRD_PATH}/{name}")), f"CRD {name}")


def start_kuberay(bed: Bed) -> BedProcess:
    binary = cache_dir() / "bin" / "kuberay-operator"
    argv = [
        str(binary),
        f"--kubeconfig={bed.kubeconfig}",
        "--enable-leader-election=false",
        "--metrics-addr=0",
        "--health-probe-bind-address=0",
        "--log-stdout-encoder=console",
        # It polls each Ray head's dashboard; from outside the bed's network only through the
        # apiserver's service proxy.
        "--use-kubernetes-proxy",
    ]
    return BedProcess(bed, "kuberay-operator", argv, os.environ)


def start_s3(bed: Bed, bucket: str) -> BedProcess:
    """moto's S3 server on the node's address inside the bed's network namespace, with
    `bucket` created."""
    argv = [
        *_IN_BED_NETWORK,
        sys.executable,
        "-m",
        "moto.server",
        "-H",
        NODE_IP,
        "-p",
        str(S3_PORT),
    ]
    server = BedProcess(bed, "s3", argv, os.environ)
    client = s3_client()

    def bucket_made() -> bool:
        try:
            client.create_bucket(Bucket=bucket)
        except Exception:  # not up yet
            if server.process.poll() is not None:
                raise AssertionError(f"the S3 server exited:\n{server.log_tail()}") from None
            return False
        return True

    wait_for(bucket_made, "the S3 server", timeout=60, interval=0.5)
    return server


TEACHER_PORT = 9100
TEACHER_URL = f"http://{NODE_IP}:{TEACHER_PORT}"
TEACHER_KEY = "e2e-teacher-key"
"""The API key the fake teacher accepts (the runs' Secret holds it)."""


def start_teacher(bed: Bed, latency_s: float, log: Path) -> BedProcess:
    """The fake Anthropic API inside the bed's network (`tests.e2e.teacher_server`), answering
    each message after `latency_s` and logging what it billed to `log`."""
    argv = [
        *_IN_BED_NETWORK,
        sys.executable,
        "-m",
        "tests.e2e.teacher_server",
        f"--host={NODE_IP}",
        f"--port={TEACHER_PORT}",
        f"--api-key={TEACHER_KEY}",
        f"--latency={latency_s}",
        f"--log={log}",
    ]
    server = BedProcess(bed, "teacher", argv, os.environ)

    def listening() -> bool:
        if server.process.poll() is not None:
            raise AssertionError(f"the fake teacher exited:\n{server.log_tail()}")
        with socket.socket() as probe:
            probe.settimeout(1)
            return probe.connect_ex((NODE_IP, TEACHER_PORT)) == 0

    wait_for(listening, "the fake teacher", timeout=60, interval=0.5)
    return server


def s3_client() -> Any:
    return boto3.client(
        "s3",
        endpoint_url=S3_ENDPOINT,
        region_name=S3_REGION,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def credentials_file() -> str:
    """The S3 credentials as an AWS shared-credentials file (what the run's Secret holds)."""
    return (
        "[default]\n"
        f"aws_access_key_id = {S3_CREDENTIALS['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {S3_CREDENTIALS['AWS_SECRET_ACCESS_KEY']}\n"
    )


def jobs_extras() -> dict[str, list[dict[str, Any]]]:
    """The chart's `jobs.extraEnv`, `extraVolumes` and `extraVolumeMounts` that run this
    checkout's virtual environment read-only on the bed's bare Debian image: its interpreter's
    installation, the venv and the source tree (hostPath: the node is this machine), the venv
    first on PATH, and the S3 endpoint."""
    python_home = Path(sys.base_prefix)
    venv = Path(sys.prefix)
    paths = {"python-home": python_home, "venv": venv, "source": ROOT}
    if python_home == Path("/usr"):  # Debian's own Python: the image has the same one there
        del paths["python-home"]
    system_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return {
        "extraEnv": [
            {"name": "PATH", "value": f"{venv}/bin:{system_path}"},
            {"name": "PYTHONPATH", "value": str(ROOT)},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            {"name": "AWS_ENDPOINT_URL", "value": S3_ENDPOINT},
            {"name": "AWS_DEFAULT_REGION", "value": S3_REGION},
        ],
        "extraVolumes": [
            {"name": name, "hostPath": {"path": str(path), "type": "Directory"}}
            for name, path in paths.items()
        ],
        "extraVolumeMounts": [
            {"name": name, "mountPath": str(path), "readOnly": True} for name, path in paths.items()
        ],
    }


OPERATOR_IMAGE = "localhost/distillrun-operator:e2e"
POSTGRES_IMAGE = "localhost/distillrun-postgres:15"
"""The postgres runs' sandbox server: Debian's postgresql-15 on the bed's base image, built by
scripts/testbed/node-build (scripts/testbed/postgres/) and imported by node-up."""
S3_SECRET = "s3"
"""The Secret, in the team namespace, that runs name in `spec.artifacts.credentialsSecretRef`."""


def build_operator_image(bed: Bed) -> None:
    """The Dockerfile's `operator` target built with podman on the bed's Debian image
    (`--build-arg BASE_IMAGE`; about 1 minute), then
    imported into the node's containerd (no registry)."""
    cache = cache_dir()
    env = {**os.environ, "CONTAINERS_CONF": str(cache / "podman" / "containers.conf")}
    podman = ["podman", "--root", f"{cache}/podman/storage", "--runroot", f"{cache}/podman/run"]
    build = [*podman, "build", "--network=host", "--target", "operator"]
    build += ["--build-arg", "BASE_IMAGE=localhost/debian-python:bookworm"]
    if Path("/etc/pip.conf").exists():  # this machine's index and certificates, for pip
        build += ["-v", "/etc/pip.conf:/etc/pip.conf:ro"]
    archive = bed.workdir / "operator-image.tar"
    for command in (
        [*build, "-q", "-t", OPERATOR_IMAGE, str(ROOT)],
        [*podman, "save", "-q", "-o", str(archive), OPERATOR_IMAGE],
        [*podman, "image", "prune", "-f"],  # what earlier builds left untagged (disk)
        [
            "ctr",
            "-a",
            str(bed.workdir / "containerd" / "containerd.sock"),
            "-n",
            "k8s.io",
            "images",
            "import",
            str(archive),
        ],
    ):
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stderr[-3000:]}"
    archive.unlink()


def helm_install_operator(bed: Bed, namespace: str) -> None:
    """`helm install` of helm/distillrun into `namespace`, as a team installs it, with the
    image built above, the bed's jobs image, extras and postgres sandbox image, and S3
    credentials for the operator."""
    repository, tag = OPERATOR_IMAGE.split(":")
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "jobs": {
            "image": "localhost/debian-python:bookworm",
            "cpuWorkers": 1,
            "rayStartDeadlineSeconds": 300,
            **jobs_extras(),
        },
        "sandbox": {"postgresImage": POSTGRES_IMAGE},
        "operator": {
            "resyncSeconds": 2,
            "extraEnv": [
                {"name": name, "value": value}
                for name, value in {
                    **S3_CREDENTIALS,
                    "AWS_ENDPOINT_URL": S3_ENDPOINT,
                    "AWS_DEFAULT_REGION": S3_REGION,
                }.items()
            ],
        },
    }
    values_file = bed.workdir / f"values-{namespace}.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm = cache_dir() / "bin" / "helm"
    command = [
        str(helm),
        "install",
        "distillrun",
        str(ROOT / "helm" / "distillrun"),
        "--namespace",
        namespace,
        "--kubeconfig",
        str(bed.kubeconfig),
        "-f",
        str(values_file),
        "--wait",
        "--timeout",
        "180s",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]


def create_s3_secret(bed: Bed, namespace: str) -> None:
    """The S3 credentials as the Secret runs name (`S3_SECRET`, key `credentials`)."""
    bed.kube.create(
        core_path(namespace, "secrets"),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": S3_SECRET},
            "stringData": {"credentials": credentials_file()},
        },
    )


def operator_log(bed: Bed, namespace: str) -> str:
    """The tail of the operator pod's log (for a failed run's assertion message)."""
    pods = bed.kube.list(core_path(namespace, "pods"), "app.kubernetes.io/name=distillrun")
    if not pods:
        return "(no operator pod)"
    name = pods[0]["metadata"]["name"]
    return str(client.CoreV1Api(bed.kube.api).read_namespaced_pod_log(name, namespace))[-3000:]


@dataclass(frozen=True)
class Team:
    """A team namespace with the distillrun operator `helm install`ed (its image built from the
    Dockerfile), beside the real KubeRay operator and an S3 server holding `BUCKET`; runs name
    the Secret `S3_SECRET` for their artifacts."""

    bed: Bed
    namespace: str


@contextmanager
def fresh_namespace(bed: Bed) -> Iterator[str]:
    """A new namespace, deleted at the end (the controller-manager deletes what it holds)."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    create_namespace(bed.kube, name)
    try:
        yield name
    finally:
        bed.kube.delete(f"/api/v1/namespaces/{name}")


@contextmanager
def installed_team(bed: Bed) -> Iterator[Team]:
    """Everything a run on the bed needs, as a platform team would set it up: the CRDs, KubeRay
    and S3 beside the bed, and the operator installed into a fresh team namespace; stopped and
    deleted at the end (the bed itself stays up)."""
    install_crds(bed)
    started = [start_kuberay(bed), start_s3(bed, BUCKET)]
    try:
        with fresh_namespace(bed) as namespace:
            create_s3_secret(bed, namespace)
            build_operator_image(bed)
            helm_install_operator(bed, namespace)
            yield Team(bed, namespace)
    finally:
        for process in started:
            process.stop()
