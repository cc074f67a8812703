"""The Helm chart against the real apiserver: `helm lint`, `helm template` with every values file
in `chart_values/` applied with server-side dry-run (the apiserver accepts every object), values
that break `values.schema.json` refused with the field at fault; then two teams installed with
`helm install` into two namespaces: each operator's ServiceAccount may do in its own namespace
what the operator does and nothing in the other's (SubjectAccessReview, as `kubectl auth can-i`),
the real operator runs under that ServiceAccount, and `helm uninstall` leaves nothing behind.
The operator settings every values file renders are ones the operator accepts, and the README's
install commands render and are accepted as written.

Helm is built by `scripts/testbed/build` into the testbed cache; a missing binary fails."""

from __future__ import annotations

import re
import shlex
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from distillrun.api.spec import SecretKeyRef
from distillrun.operator.kube import ApiError, Kube, core_path
from distillrun.operator.settings import OperatorSettings
from tests.integration.conftest import InProcessOperator, fast_settings
from tests.integration.controlplane import ControlPlane, create_namespace
from tests.integration.helpers import (
    create_run,
    phase,
    run_manifest,
    wait_events,
    wait_rayjob,
    wait_run,
)

ROOT = Path(__file__).parents[2]
CHART = ROOT / "helm" / "distillrun"
VALUES = sorted((Path(__file__).parent / "chart_values").glob("*.yaml"))
INVALID = Path(__file__).parent / "chart_values_invalid"
APPLY_PATCH = "application/apply-patch+yaml"

# kind -> (API root, plural, namespaced) of every kind the chart renders.
KINDS: dict[str, tuple[str, str, bool]] = {
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Service": ("/api/v1", "services", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "CustomResourceDefinition": (
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
    ),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors", True),
}


@pytest.fixture(scope="module")
def helm(control_plane: ControlPlane) -> Path:
    binary = control_plane.cache / "bin" / "helm"
    if not binary.exists():
        pytest.fail(
            f"missing {binary}: the chart tests need Helm; build it once with "
            "`scripts/testbed/build` (about 2-3 minutes on 2 cores; `scripts/test` does it)",
            pytrace=False,
        )
    return binary


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)


def render(helm: Path, namespace: str, values: Path | None = None) -> list[dict[str, Any]]:
    args = ["template", "team", str(CHART), "--namespace", namespace]
    if values is not None:
        args += ["--values", str(values)]
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def object_path(manifest: dict[str, Any]) -> str:
    root, plural, namespaced = KINDS[manifest["kind"]]
    meta = manifest["metadata"]
    if namespaced:
        return f"{root}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"
    return f"{root}/{plural}/{meta['name']}"


def dry_run_apply(kube: Kube, manifest: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = kube.request(
        "PATCH",
        object_path(manifest),
        query={"dryRun": "All", "fieldManager": "helm-chart-test", "force": "true"},
        body=yaml.safe_dump(manifest),
        content_type=APPLY_PATCH,
    )
    return answer


def served(kube: Kube, group_version: str) -> bool:
    try:
        kube.get(f"/apis/{group_version}")
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_helm_lint_passes_with_every_values_file(helm: Path) -> None:
    for values in [None, *VALUES]:
        args = ["lint", "--strict", str(CHART)]
        if values is not None:
            args += ["--values", str(values)]
        result = run_helm(helm, *args)
        assert result.returncode == 0, f"{values}: {result.stdout}{result.stderr}"


def test_the_values_files_cover_every_kind_the_chart_renders(helm: Path) -> None:
    kinds = {doc["kind"] for values in VALUES for doc in render(helm, "team-a", values)}
    assert kinds == set(KINDS)


@pytest.mark.parametrize("values", VALUES, ids=[v.stem for v in VALUES])
def test_the_apiserver_accepts_every_rendered_object(
    helm: Path, kube: Kube, namespace: str, values: Path
) -> None:
    manifests = render(helm, namespace, values)
    assert manifests
    monitoring = served(kube, "monitoring.coreos.com/v1")
    for manifest in manifests:
        if manifest["kind"] == "ServiceMonitor" and not monitoring:
            check_service_monitor(manifest, manifests)
            continue
        accepted = dry_run_apply(kube, manifest)
        assert accepted["kind"] == manifest["kind"]
        assert accepted["metadata"]["name"] == manifest["metadata"]["name"]


def check_service_monitor(monitor: dict[str, Any], manifests: list[dict[str, Any]]) -> None:
    """Without prometheus-operator's CRD the ServiceMonitor cannot be sent; it must at least
    select the rendered metrics Service by its labels and scrape its named port."""
    services = [m for m in manifests if m["kind"] == "Service"]
    assert len(services) == 1
    service = services[0]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert "metrics" in ports
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [monitor["metadata"]["namespace"]]


def test_the_default_install_is_per_team(helm: Path) -> None:
    manifests = {doc["kind"]: doc for doc in render(helm, "team-a")}
    assert set(manifests) == {
        "Deployment",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
    }  # the two user ClusterRoles share a kind; the operator's own role is namespaced
    deployment = manifests["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--namespace=team-a"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    pod_security = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    settings = OperatorSettings.from_env(operator_env(list(manifests.values())))
    assert settings.scheduling_queue_name is None  # no queue and no teacher Secret unless asked
    assert settings.teacher_secret is None


def operator_env(manifests: list[dict[str, Any]]) -> dict[str, str]:
    """The operator's `DISTILLRUN_*` settings as the rendered Deployment sets them."""
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("DISTILLRUN_")}


@pytest.mark.parametrize("values", VALUES, ids=[v.stem for v in VALUES])
def test_the_operator_accepts_the_settings_every_values_file_renders(
    helm: Path, values: Path
) -> None:
    OperatorSettings.from_env(operator_env(render(helm, "team-a", values)))


def test_the_queue_and_teacher_secret_values_reach_the_operator(helm: Path) -> None:
    custom = next(v for v in VALUES if v.stem == "custom")
    settings = OperatorSettings.from_env(operator_env(render(helm, "team-a", custom)))
    assert settings.scheduling_queue_name == "team-a.gpu-queue"
    assert settings.teacher_secret == SecretKeyRef(name="team-a-teacher", key="ANTHROPIC_API_KEY")


def test_every_custom_value_reaches_the_operator(helm: Path) -> None:
    custom = next(v for v in VALUES if v.stem == "custom")
    settings = OperatorSettings.from_env(operator_env(render(helm, "team-a", custom)))
    assert settings.hardware_profiles == frozenset({"a100-80gb", "rtx4090", "custom-l4"})
    assert settings.extra_labels == {"team": "team-a", "example.com/cost-center": "ml-42"}
    assert (settings.jobs_max_attempts, settings.jobs_ray_ttl_seconds) == (5, 60)
    assert (settings.operator_resync_seconds, settings.operator_workers) == (10.0, 4)
    assert settings.sandbox_mysql_image == "registry.example/mariadb:11"
    assert (settings.jobs_head_cpu, settings.jobs_head_memory) == ("0.5", "1536Mi")
    assert (settings.jobs_cpu_worker_cpu, settings.jobs_cpu_worker_memory) == ("1500m", "3Gi")
    deadlines = (settings.jobs_ray_start_deadline_seconds, settings.jobs_ray_job_deadline_seconds)
    assert deadlines == (600, 86400)
    assert settings.jobs_ray_token_auth is False and settings.artifacts_allow_file_store is False


def readme_install_commands() -> list[list[str]]:
    """The shell commands of the README's "Install on a cluster" section, each split as the
    shell would (continuation lines joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Install on a cluster\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if words := shlex.split(line, comments=True):
                commands.append(words)
    return commands


def test_the_readme_install_renders_with_its_teacher_secret(
    helm: Path, kube: Kube, namespace: str
) -> None:
    """The README's `helm install` (its `<registry>` filled in, into a test namespace) renders
    objects the apiserver accepts, and its default teacher Secret is the one the README's
    `kubectl create secret` makes."""
    commands = readme_install_commands()
    install = next(c for c in commands if c[:2] == ["helm", "install"])
    args = [a.replace("<registry>", "registry.example") for a in install[2:]]
    args[args.index("-n") + 1] = namespace
    result = run_helm(helm, "template", *args[:1], str(ROOT / args[1]), *args[2:])
    assert result.returncode == 0, result.stderr
    manifests = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    for manifest in manifests:
        assert dry_run_apply(kube, manifest)["kind"] == manifest["kind"]
    create = next(c for c in commands if c[:1] == ["kubectl"] and "generic" in c)
    name = create[create.index("generic") + 1]
    key = next(a for a in create if a.startswith("--from-literal=")).split("=")[1]
    settings = OperatorSettings.from_env(operator_env(manifests))
    assert settings.teacher_secret == SecretKeyRef(name=name, key=key)


def test_the_operator_pod_meets_pod_security_restricted(helm: Path, kube: Kube) -> None:
    """The Deployment's pod, created (dry-run) in a namespace that enforces the `restricted`
    Pod Security level: the apiserver's admission accepts it."""
    namespace = f"restricted-{uuid.uuid4().hex[:6]}"
    kube.create(
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        },
    )
    manifests = {doc["kind"]: doc for doc in render(helm, namespace)}
    kube.create(core_path(namespace, "serviceaccounts"), manifests["ServiceAccount"])
    template = manifests["Deployment"]["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "operator"}, **template}
    pod["metadata"] = {**template["metadata"], "name": "operator"}
    accepted = kube.request("POST", core_path(namespace, "pods"), query={"dryRun": "All"}, body=pod)
    assert accepted["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_crd_template_installs_the_committed_crd(helm: Path) -> None:
    crds_values = next(v for v in VALUES if v.stem == "crds-install")
    rendered = next(
        doc
        for doc in render(helm, "team-a", crds_values)
        if doc["kind"] == "CustomResourceDefinition"
    )
    committed = yaml.safe_load((ROOT / "crds" / "distillrun.dev_distillruns.yaml").read_text())
    assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert rendered["metadata"]["labels"]["app.kubernetes.io/instance"] == "team"
    for key in ("labels", "annotations"):
        rendered["metadata"].pop(key)
    assert rendered == committed


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ("bad-scope.yaml", "/watch/scope"),
        ("bad-profile.yaml", "/hardwareProfiles/0"),
        ("unknown-key.yaml", "additional properties 'imag' not allowed"),
        ("bad-attempts.yaml", "/jobs/maxAttempts"),
        ("bad-ray-size.yaml", "/jobs/headCpu"),
        ("bad-queue.yaml", "/scheduling/queueName"),
        ("bad-teacher-secret.yaml", "/teacher/secretName"),
        ("bad-extra-label.yaml", "/extraLabels/team"),
    ],
)
def test_values_breaking_the_schema_are_refused(helm: Path, values: str, fragment: str) -> None:
    result = run_helm(helm, "template", "team", str(CHART), "--values", str(INVALID / values))
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert fragment in result.stderr, result.stderr


# What the operator does (distillrun/operator/controller.py, handlers.py, and kopf underneath),
# written from the code, not from the chart: (group, resource, subresource, verbs).
OPERATOR_NEEDS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("distillrun.dev", "distillruns", "", ("get", "list", "watch", "patch")),
    ("distillrun.dev", "distillruns", "status", ("patch",)),
    ("ray.io", "rayjobs", "", ("list", "watch", "create", "delete")),
    ("", "configmaps", "", ("get", "list", "create", "delete")),
    ("", "secrets", "", ("get", "list", "create", "delete")),
    ("", "services", "", ("list", "create", "delete")),
    ("apps", "deployments", "", ("list", "create", "delete")),
    ("networking.k8s.io", "networkpolicies", "", ("list", "create", "delete")),
    ("", "events", "", ("create",)),
]
# What it never does, so its Role must not allow it.
OPERATOR_NEVER: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("distillrun.dev", "distillruns", "", ("create", "update", "delete")),
    ("", "secrets", "", ("update", "patch")),
    ("", "pods", "", ("create", "delete")),
    ("ray.io", "rayclusters", "", ("create",)),
    ("apps", "deployments", "", ("update", "patch")),
    ("rbac.authorization.k8s.io", "roles", "", ("create", "bind", "escalate")),
]
RELEASE = "distillrun"


def can_i(
    kube: Kube,
    namespace: str,
    service_account: str,
    target: str,
    group: str,
    resource: str,
    subresource: str,
    verb: str,
) -> bool:
    """`kubectl auth can-i --as system:serviceaccount:<namespace>:<service_account>` through a
    SubjectAccessReview."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{namespace}:{service_account}",
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ],
            "resourceAttributes": {
                "namespace": target,
                "group": group,
                "resource": resource,
                "subresource": subresource,
                "verb": verb,
            },
        },
    }
    answer = kube.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    return bool(answer["status"].get("allowed"))


def helm_at(helm: Path, control_plane: ControlPlane, *args: str) -> None:
    result = run_helm(helm, *args, "--kubeconfig", str(control_plane.kubeconfig))
    assert result.returncode == 0, result.stderr


def release_objects(kube: Kube, namespace: str) -> list[str]:
    """Every object of the release `RELEASE` in `namespace` (and the cluster-scoped ones it
    made), as kind/name, Helm's own release records included."""
    selector = f"app.kubernetes.io/instance={RELEASE}"
    found = []
    for kind, (root, plural, namespaced) in KINDS.items():
        if kind in ("CustomResourceDefinition", "ServiceMonitor"):
            continue  # not in the default install
        path = f"{root}/namespaces/{namespace}/{plural}" if namespaced else f"{root}/{plural}"
        for item in kube.list(path, selector):
            name = item["metadata"]["name"]
            if namespaced or name.startswith(f"{namespace}-"):
                found.append(f"{kind}/{name}")
    for item in kube.list(f"/api/v1/namespaces/{namespace}/secrets", f"name={RELEASE},owner=helm"):
        found.append(f"Secret/{item['metadata']['name']}")
    return sorted(found)


@pytest.fixture
def two_teams(helm: Path, kube: Kube, control_plane: ControlPlane) -> Iterator[tuple[str, str]]:
    """Two namespaces, each with the chart installed by `helm install` with default values."""
    suffix = uuid.uuid4().hex[:6]
    teams = (f"team-a-{suffix}", f"team-b-{suffix}")
    for team in teams:
        create_namespace(kube, team)
        helm_at(helm, control_plane, "install", RELEASE, str(CHART), "--namespace", team)
    yield teams
    for team in teams:
        if release_objects(kube, team):
            helm_at(helm, control_plane, "uninstall", RELEASE, "--namespace", team, "--wait")


def test_a_team_operator_may_do_what_it_needs_only_in_its_namespace(
    kube: Kube, two_teams: tuple[str, str]
) -> None:
    team_a, team_b = two_teams
    for group, resource, subresource, verbs in OPERATOR_NEEDS:
        for verb in verbs:
            what = f"{verb} {group}/{resource}/{subresource}"
            assert can_i(kube, team_a, RELEASE, team_a, group, resource, subresource, verb), what
            assert not can_i(kube, team_a, RELEASE, team_b, group, resource, subresource, verb), (
                f"team A's operator may {what} in team B's namespace"
            )
            assert not can_i(kube, team_a, RELEASE, "", group, resource, subresource, verb), (
                f"team A's operator may {what} cluster-wide"
            )
    for group, resource, subresource, verbs in OPERATOR_NEVER:
        for verb in verbs:
            assert not can_i(kube, team_a, RELEASE, team_a, group, resource, subresource, verb), (
                f"team A's operator may {verb} {group}/{resource}, which it never does"
            )


def service_account_client(kube: Kube, namespace: str, name: str) -> Callable[[], client.ApiClient]:
    """API clients authenticated as ServiceAccount `namespace/name` (a TokenRequest token), as
    the operator pod would be."""
    token = kube.create(
        core_path(namespace, "serviceaccounts", name) + "/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )["status"]["token"]
    admin = kube.api.configuration

    def factory() -> client.ApiClient:
        configuration = client.Configuration()
        configuration.host = admin.host
        configuration.ssl_ca_cert = admin.ssl_ca_cert
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(configuration)

    return factory


def test_the_installed_role_is_all_the_operator_needs(
    kube: Kube, two_teams: tuple[str, str], tmp_path: Path
) -> None:
    """The real operator, authenticated as team A's ServiceAccount (kopf's finalizer, watches and
    progress annotations included), starts a run's first stage, records it and posts Events."""
    team_a, _ = two_teams
    operator = InProcessOperator(
        team_a, fast_settings(tmp_path), service_account_client(kube, team_a, RELEASE)
    )
    try:
        create_run(kube, team_a, run_manifest("shop"))
        wait_rayjob(kube, team_a, "shop-generate-1")
        wait_run(kube, team_a, "shop", lambda r: phase(r) == "Generating", "Generating")
        wait_events(kube, team_a, "shop", bool, "an Event from the operator")
    finally:
        operator.stop()


def test_helm_uninstall_leaves_no_objects(
    helm: Path, kube: Kube, control_plane: ControlPlane, two_teams: tuple[str, str]
) -> None:
    team_a, team_b = two_teams
    installed = release_objects(kube, team_a)
    assert installed == sorted(
        [
            f"ClusterRole/{team_a}-{RELEASE}-editor",
            f"ClusterRole/{team_a}-{RELEASE}-viewer",
            f"Deployment/{RELEASE}",
            f"Role/{RELEASE}",
            f"RoleBinding/{RELEASE}",
            f"Secret/sh.helm.release.v1.{RELEASE}.v1",
            f"ServiceAccount/{RELEASE}",
        ]
    )
    helm_at(helm, control_plane, "uninstall", RELEASE, "--namespace", team_a, "--wait")
    assert release_objects(kube, team_a) == []
    assert len(release_objects(kube, team_b)) == len(installed), "team B's install was touched"
