"""The per-run sandbox server's manifests: golden YAML for a PostgreSQL and a MariaDB run
(regenerate after an intended change with `DISTILLRUN_UPDATE_GOLDEN=1 pytest
tests/unit/operator/test_sandbox_builders.py`, then review the diff), and the properties a
security review checks, asserted directly: Pod Security `restricted`, the network policy, no
secret text outside the Secret, resource limits, names."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from distillrun.api.resource import DistillRun, parse_run
from distillrun.operator.builders.common import LABEL_RUN_UID
from distillrun.operator.builders.sandbox import (
    MAX_SCRIPTS_BYTES,
    SandboxBuildError,
    SandboxImages,
    needs_server,
    sandbox_config_map,
    sandbox_env,
    sandbox_manifests,
    sandbox_name,
)
from distillrun.sql.target import ENV_HOST, ENV_PASSWORD, ENV_PORT, ENV_USER
from tests.unit.operator.conftest import UID, cpu_manifest, gpu_manifest

GOLDEN = Path(__file__).parent / "golden" / "sandbox"
DDL = "CREATE TABLE orders (id INT PRIMARY KEY, total NUMERIC(10, 2));\n"
SEED = "INSERT INTO orders VALUES (1, 9.5);\nINSERT INTO orders VALUES (2, 12);\n"
PASSWORD = "canary-5f1d2e3c4b5a69788796a5b4"
TEAM = {"team": "a"}


def run_with(dialect: str, **resources: str) -> DistillRun:
    data = gpu_manifest()
    data["spec"]["database"]["dialect"] = dialect
    if resources:
        data["spec"]["database"]["sandbox"] = {"resources": resources}
    return parse_run(data)


def manifests(run: DistillRun) -> list[dict[str, Any]]:
    return sandbox_manifests(
        run, ddl=DDL, seed=SEED, password=PASSWORD, images=SandboxImages(), extra_labels=TEAM
    )


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
def test_manifests_match_golden(dialect: str) -> None:
    text = yaml.safe_dump_all(manifests(run_with(dialect)), sort_keys=False, width=100)
    path = GOLDEN / f"{dialect}.yaml"
    if os.environ.get("DISTILLRUN_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}; create it with DISTILLRUN_UPDATE_GOLDEN=1"
    assert text == path.read_text(), (
        f"the {dialect} sandbox differs from golden/sandbox/{path.name}"
    )


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
def test_pod_meets_pod_security_restricted(dialect: str) -> None:
    pod = by_kind(manifests(run_with(dialect)))["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
    for volume in pod["volumes"]:
        assert set(volume) - {"name"} <= {"emptyDir", "configMap"}, volume
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    emptied = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    assert {m["name"] for m in container["volumeMounts"] if not m.get("readOnly")} <= emptied
    assert "/tmp" in writable
    assert container["resources"]["requests"] == container["resources"]["limits"]


def test_resources_come_from_the_spec() -> None:
    run = run_with("postgres", cpu="2", memory="4Gi")
    container = by_kind(manifests(run))["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}


@pytest.mark.parametrize(("dialect", "port"), [("postgres", 5432), ("mysql", 3306)])
def test_network_policy_admits_only_the_runs_ray_pods_and_denies_egress(
    dialect: str, port: int
) -> None:
    objects = by_kind(manifests(run_with(dialect)))
    policy = objects["NetworkPolicy"]["spec"]
    server_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= server_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"] == []
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}, "same namespace only: no namespaceSelector, no ipBlock"
    assert peer["podSelector"]["matchLabels"] == {LABEL_RUN_UID: UID}
    assert peer["podSelector"]["matchExpressions"] == [
        {"key": "ray.io/node-type", "operator": "Exists"}
    ]
    assert objects["Service"]["spec"]["ports"][0]["port"] == port


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
def test_password_only_in_the_secret(dialect: str) -> None:
    objects = manifests(run_with(dialect))
    for manifest in objects:
        text = yaml.safe_dump(manifest)
        assert PASSWORD not in text, manifest["kind"]
    secret = by_kind(objects)["Secret"]
    assert base64.b64decode(secret["data"]["password"]).decode() == PASSWORD
    env = sandbox_env(run_with(dialect))
    assert [e["name"] for e in env] == [ENV_HOST, ENV_PORT, ENV_USER, ENV_PASSWORD]
    assert env[3]["valueFrom"] == {
        "secretKeyRef": {"name": secret["metadata"]["name"], "key": "password"}
    }
    assert env[0]["value"] == by_kind(objects)["Service"]["metadata"]["name"]


def test_schema_and_seed_are_loaded_at_start_from_the_config_map() -> None:
    objects = by_kind(manifests(run_with("postgres")))
    scripts = objects["ConfigMap"]["data"]
    assert scripts == {"10-schema.sql": DDL, "20-seed.sql": SEED}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "init")
    assert mount == {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True}
    assert {"name": "init", "configMap": {"name": "sales-analytics-sandbox"}} in pod["volumes"]


def test_every_object_is_owned_by_the_run_and_labelled() -> None:
    for manifest in manifests(run_with("mysql")):
        meta = manifest["metadata"]
        assert meta["name"] == "sales-analytics-sandbox" and meta["namespace"] == "team-a"
        assert meta["ownerReferences"][0]["uid"] == UID
        assert meta["labels"]["team"] == "a" and meta["labels"][LABEL_RUN_UID] == UID


def test_embedded_dialects_need_no_server() -> None:
    run = parse_run(cpu_manifest())
    assert not needs_server(run) and needs_server(run_with("postgres"))
    with pytest.raises(SandboxBuildError, match=r"spec.database.dialect: sqlite"):
        manifests(run)


def test_scripts_too_large_for_a_config_map_are_refused() -> None:
    seed = "INSERT INTO orders VALUES (1, 9.5);\n" * (MAX_SCRIPTS_BYTES // 30)
    with pytest.raises(SandboxBuildError, match=r"spec\.database\.seedData"):
        sandbox_config_map(run_with("postgres"), DDL, seed, {})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("shop", "shop-sandbox"),
        ("7shop", "sql-7shop-sandbox"),
        ("a" * 63, None),
    ],
)
def test_names_are_valid_service_names(name: str, expected: str | None) -> None:
    data = gpu_manifest()
    data["metadata"]["name"] = name
    result = sandbox_name(parse_run(data))
    assert len(result) <= 63 and result[0].isalpha() and result.endswith("-sandbox")
    if expected is not None:
        assert result == expected
    assert sandbox_name(parse_run(data)) == result
