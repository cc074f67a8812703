"""The chart's `hardwareProfileFiles` and `deepSpeedConfigFiles`, rendered by Helm: a ConfigMap
the operator mounts where its `DISTILLRUN_PROFILES_DIR` points (and nothing of it when both are
empty), holding files the operator loads as they were given and carries on to the Ray pods of
each train stage, in the run's namespace, whichever namespaces the operator watches.

Needs Helm, which `scripts/testbed/build` builds into the testbed cache (`scripts/test` runs it
first); without it the tests fail naming that command, never skip.
`tests/integration/test_chart.py` lints the chart and has the apiserver accept what it renders,
these values included."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from distillrun.api.profiles import PROFILES_ENV, load_profiles, profile_files
from distillrun.api.status import StageName
from distillrun.operator.settings import OperatorSettings
from tests.unit.operator.conftest import gpu_manifest
from tests.unit.operator.pod_files import env_of, in_pod, mount_config_maps
from tests.unit.operator.test_train_profile_files import (
    FILES,
    L4,
    ZERO3_L4,
    l4_run,
    pod_templates,
    stage_children,
)

ROOT = Path(__file__).parents[3]
CHART = ROOT / "helm" / "distillrun"
VALUES: dict[str, Any] = {
    "hardwareProfileFiles": {"custom-l4.yaml": L4},
    "deepSpeedConfigFiles": {"zero3-l4.json": ZERO3_L4},
}


@pytest.fixture(scope="module")
def helm() -> Path:
    build = ROOT / "scripts" / "testbed" / "build"
    printed = subprocess.run([str(build), "--print"], capture_output=True, text=True, check=True)
    binary = Path(printed.stdout.strip()) / "bin" / "helm"
    if not binary.exists():
        pytest.fail(f"no {binary}: build Helm with scripts/testbed/build")
    return binary


def helm_template(
    helm: Path, tmp_path: Path, values: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    command = [str(helm), "template", "team", str(CHART), "-n", "team-a", "-f", str(values_file)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def render(helm: Path, tmp_path: Path, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The rendered objects by kind (one of each in these installs, but the ClusterRoles)."""
    result = helm_template(helm, tmp_path, values)
    assert result.returncode == 0, result.stderr
    return {doc["kind"]: doc for doc in yaml.safe_load_all(result.stdout) if doc}


def operator_pod(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    template: dict[str, Any] = manifests["Deployment"]["spec"]["template"]
    return template


def test_without_files_nothing_of_them_is_rendered(helm: Path, tmp_path: Path) -> None:
    manifests = render(helm, tmp_path, {})
    assert "ConfigMap" not in manifests
    pod = operator_pod(manifests)
    assert PROFILES_ENV not in env_of(pod)
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["tmp"]
    assert [m["name"] for m in pod["spec"]["containers"][0]["volumeMounts"]] == ["tmp"]
    assert "annotations" not in pod["metadata"]


def test_the_files_are_mounted_where_the_operators_variable_points(
    helm: Path, tmp_path: Path
) -> None:
    manifests = render(helm, tmp_path, VALUES)
    config_map = manifests["ConfigMap"]
    assert config_map["metadata"]["name"] == "team-distillrun-profiles"
    assert config_map["metadata"]["namespace"] == "team-a"
    assert config_map["data"] == {"custom-l4.yaml": L4, "deepspeed.zero3-l4.json": ZERO3_L4}
    pod = operator_pod(manifests)
    env = env_of(pod)
    assert env[PROFILES_ENV] == "/etc/distillrun/profiles"
    assert OperatorSettings.unknown_variables(env) == []
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "profiles")
    assert volume["configMap"] == {
        "name": "team-distillrun-profiles",
        "items": [
            {"key": "custom-l4.yaml", "path": "custom-l4.yaml"},
            {"key": "deepspeed.zero3-l4.json", "path": "deepspeed/zero3-l4.json"},
        ],
    }
    mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "profiles")
    assert mount == {"name": "profiles", "mountPath": env[PROFILES_ENV], "readOnly": True}


def test_changed_files_restart_the_operator(helm: Path, tmp_path: Path) -> None:
    """The operator reads its profiles at start: a `helm upgrade` that changes a file changes
    the pod template (a checksum annotation), so the operator is restarted with it."""
    mine = {"team": "a"}
    before = operator_pod(render(helm, tmp_path, {**VALUES, "operator": {"podAnnotations": mine}}))
    changed = {**VALUES, "hardwareProfileFiles": {"custom-l4.yaml": L4 + "maxSeqLength: 2048\n"}}
    after = operator_pod(render(helm, tmp_path, changed))
    checksum = before["metadata"]["annotations"].pop("checksum/profiles")
    assert before["metadata"]["annotations"] == mine
    assert after["metadata"]["annotations"]["checksum/profiles"] != checksum


def test_a_custom_profile_from_the_chart_reaches_the_train_pods(
    helm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart's files, as the operator's pod sees them, load as the custom profile; the
    train stage built from them hands the train pods the same files."""
    manifests = render(helm, tmp_path, VALUES)
    operator = operator_pod(manifests)
    config_maps = {manifests["ConfigMap"]["metadata"]["name"]: manifests["ConfigMap"]}
    root = mount_config_maps(operator, config_maps, tmp_path / "operator")
    monkeypatch.setenv(PROFILES_ENV, str(in_pod(root, env_of(operator)[PROFILES_ENV])))
    accepted, files = load_profiles(), profile_files()  # as the operator loads them at start
    assert files == FILES
    assert accepted["custom-l4"].deepspeed == "zero3-l4"

    config_map, rayjob = stage_children(l4_run(gpu_manifest()), StageName.TRAIN, accepted, files)
    for index, template in enumerate(pod_templates(rayjob)):
        pod_root = mount_config_maps(
            template, {config_map["metadata"]["name"]: config_map}, tmp_path / f"pod-{index}"
        )
        directory = in_pod(pod_root, env_of(template)[PROFILES_ENV])
        assert load_profiles(directory) == accepted
        deepspeed = directory / "deepspeed" / "zero3-l4.json"
        assert json.loads(deepspeed.read_text()) == json.loads(ZERO3_L4)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"hardwareProfileFiles": {"custom-l4.yml": L4}}, "invalid propertyName 'custom-l4.yml'"),
        (
            {"deepSpeedConfigFiles": {"deepspeed/zero3-l4.json": ZERO3_L4}},
            "invalid propertyName 'deepspeed/zero3-l4.json'",
        ),
        (
            {"hardwareProfileFiles": {"custom-l4.yaml": {"name": "custom-l4"}}},
            "/hardwareProfileFiles/custom-l4.yaml",
        ),
    ],
)
def test_files_the_operator_would_not_read_are_refused(
    helm: Path, tmp_path: Path, values: dict[str, Any], fragment: str
) -> None:
    """Only `*.yaml` profiles and `<name>.json` configs are read, and each is text. (Helm
    names a file name it refuses, but not always under the right value: the message is
    matched on the name.)"""
    result = helm_template(helm, tmp_path, values)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert fragment in result.stderr, result.stderr
