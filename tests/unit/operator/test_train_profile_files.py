"""A team's profile files reach the train stage's Ray pods: the operator reads its profiles
directory (`DISTILLRUN_PROFILES_DIR`, where the chart mounts `hardwareProfileFiles`), checks
runs and sizes pods with those profiles, and carries the same files in each train attempt's
ConfigMap, in the run's own namespace; the attempt's head and workers mount them at the
directory their own `DISTILLRUN_PROFILES_DIR` names, so training plans with the profiles and
DeepSpeed configs the operator accepted the run with."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from distillrun.api.profiles import (
    PROFILES_ENV,
    HardwareProfile,
    ProfileError,
    load_profiles,
    profile_files,
)
from distillrun.api.resource import DistillRun, parse_run
from distillrun.api.stage_config import StageConfig
from distillrun.api.status import StageName
from distillrun.jobs.training import zero
from distillrun.operator.builders.config import (
    CONFIG_PATH,
    PROFILES_DIR,
    run_store_uri,
    stage_config,
    stage_config_map,
)
from distillrun.operator.builders.rayjob import stage_rayjob
from distillrun.operator.controller import Controller, rayjob_path, run_path
from distillrun.operator.metrics import Metrics
from distillrun.operator.planner import Start
from distillrun.operator.preflight import Inputs
from distillrun.operator.settings import OperatorSettings
from tests.unit.operator.conftest import cpu_manifest, gpu_manifest
from tests.unit.operator.pod_files import env_of, in_pod, mount_config_maps
from tests.unit.operator.test_pass_requests import FakeKube

SETTINGS = OperatorSettings(jobs_image="registry.example/distillrun-jobs:1.0")
STORE = "s3://team-a-ml/distill"
L4 = (
    "name: custom-l4\n"
    "extends: a100-40gb\n"
    "deepspeed: zero3-l4\n"
    "gpu: {memoryGiB: 24, product: NVIDIA-L4, peakTflops: 121, perNode: 4}\n"
    "microBatchSize: 2\n"
)
ZERO3_L4 = json.dumps({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}})
FILES = {"custom-l4.yaml": L4, "deepspeed/zero3-l4.json": ZERO3_L4}
"""A team's files: a profile of its own and the DeepSpeed config that profile names."""


def team_directory(root: Path) -> Path:
    """FILES written into `root`, as the chart's ConfigMap appears in the operator's pod."""
    for path, text in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def l4_run(manifest: dict[str, Any]) -> DistillRun:
    manifest["spec"]["student"] |= {"hardwareProfile": "custom-l4", "gpusPerWorker": 4}
    return parse_run(manifest)


def stage_children(
    run: DistillRun,
    stage: StageName,
    profiles: Mapping[str, HardwareProfile],
    files: Mapping[str, str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ConfigMap and RayJob of attempt 1 of `stage`, built as the operator builds them."""
    config = stage_config(run, stage, 1, run_store_uri(STORE, run), {})
    return (
        stage_config_map(run, stage, 1, config, {}, files),
        stage_rayjob(run, stage, 1, SETTINGS, profiles, files),
    )


def pod_templates(rayjob: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod templates of the head and of each worker group."""
    cluster = rayjob["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"]]
    return templates + [group["template"] for group in cluster["workerGroupSpecs"]]


def test_the_operator_reads_the_files_the_profiles_come_from(tmp_path: Path) -> None:
    team = team_directory(tmp_path / "profiles")
    (team / "README.md").write_text("not a profile")
    (team / "deepspeed" / "notes.txt").write_text("not a DeepSpeed config")
    assert profile_files(team) == FILES
    assert profile_files() == {}  # no directory: the builtin profiles only
    with pytest.raises(ProfileError, match="is not a directory"):
        profile_files(tmp_path / "missing")


def test_the_train_pods_mount_the_files_where_their_variable_points(tmp_path: Path) -> None:
    profiles = load_profiles(team_directory(tmp_path))
    config_map, rayjob = stage_children(l4_run(gpu_manifest()), StageName.TRAIN, profiles, FILES)
    assert config_map["data"]["profiles.custom-l4.yaml"] == L4
    assert config_map["data"]["profiles.deepspeed.zero3-l4.json"] == ZERO3_L4
    templates = pod_templates(rayjob)
    assert len(templates) == 2
    for template in templates:
        assert env_of(template)[PROFILES_ENV] == PROFILES_DIR == "/etc/distillrun/profiles"
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert volumes["distillrun-config"]["configMap"] == {
            "name": config_map["metadata"]["name"],
            "items": [
                {"key": "run.json", "path": "run.json"},
                {"key": "profiles.custom-l4.yaml", "path": "profiles/custom-l4.yaml"},
                {
                    "key": "profiles.deepspeed.zero3-l4.json",
                    "path": "profiles/deepspeed/zero3-l4.json",
                },
            ],
        }
    submitter = rayjob["spec"]["submitterPodTemplate"]["spec"]
    assert "volumes" not in submitter and "env" not in submitter["containers"][0]
    worker = templates[1]["spec"]
    assert worker["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L4"  # sized by custom-l4


@pytest.mark.parametrize("stage", [StageName.GENERATE, StageName.VALIDATE, StageName.EVALUATE])
def test_the_other_stages_carry_no_profile_files(tmp_path: Path, stage: StageName) -> None:
    """They read no profile (evaluate's pods are sized by the operator, not by the stage)."""
    profiles = load_profiles(team_directory(tmp_path))
    run = l4_run(gpu_manifest())
    assert stage_children(run, stage, profiles, FILES) == stage_children(run, stage, profiles, {})


def test_a_custom_profile_round_trips_to_the_train_pods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the operator loaded from its directory is what each train pod loads from its
    mounted files, through the variable the stage reads, DeepSpeed config included."""
    operator_dir = team_directory(tmp_path / "operator")
    accepted = load_profiles(operator_dir)
    l4 = accepted["custom-l4"]
    assert l4.gpu is not None and (l4.gpu.memory_gib, l4.micro_batch_size) == (24, 2)
    run = l4_run(gpu_manifest())
    config_map, rayjob = stage_children(run, StageName.TRAIN, accepted, profile_files(operator_dir))
    for index, template in enumerate(pod_templates(rayjob)):
        root = mount_config_maps(
            template, {config_map["metadata"]["name"]: config_map}, tmp_path / f"pod-{index}"
        )
        assert StageConfig.read(in_pod(root, CONFIG_PATH)).stage == StageName.TRAIN
        monkeypatch.setenv(PROFILES_ENV, str(in_pod(root, env_of(template)[PROFILES_ENV])))
        assert load_profiles() == accepted  # as the train stage loads them
        assert zero.load_config("zero3-l4") == json.loads(ZERO3_L4)
        assert zero.settings("zero3-l4").offload_optimizer


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    api = client.ApiClient()
    yield FakeKube(api)
    api.close()  # type: ignore[no-untyped-call]


def test_the_controller_carries_its_directory_to_the_train_stage_only(
    kube: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PROFILES_ENV, str(team_directory(tmp_path)))
    manifest = cpu_manifest()
    run = l4_run(manifest)
    kube.objects[run_path("team-a", "shop")] = kube.stamp(manifest)
    controller = Controller(kube, OperatorSettings(metrics_port=0), Metrics())
    assert "custom-l4" in controller.profiles and controller.profile_files == FILES

    # The run names the team's profile: the checks accept it and the first stage starts.
    logger = logging.getLogger("test-train-profile-files")
    controller.reconcile("team-a", "shop", logger, seen=kube.objects[run_path("team-a", "shop")])
    generate = kube.objects["/api/v1/namespaces/team-a/configmaps/shop-generate-1"]
    assert list(generate["data"]) == ["run.json"]

    train = Start(StageName.TRAIN, 1, Inputs(run_store_uri(STORE, run)))
    assert controller._start(run, train) is None
    config_map = kube.objects["/api/v1/namespaces/team-a/configmaps/shop-train-1"]
    assert config_map["data"]["profiles.custom-l4.yaml"] == L4
    for template in pod_templates(kube.objects[rayjob_path("team-a", "shop-train-1")]):
        assert env_of(template)[PROFILES_ENV] == PROFILES_DIR


def _start_the_operator(directory: Path) -> subprocess.CompletedProcess[str]:
    """`import distillrun.operator.main`, as `kopf run -m` does before it starts serving, with
    `DISTILLRUN_PROFILES_DIR` naming `directory`."""
    return subprocess.run(
        [sys.executable, "-c", "import distillrun.operator.main"],
        capture_output=True,
        text=True,
        env={**os.environ, PROFILES_ENV: str(directory)},
        timeout=120,
    )


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        ("custom-l4.yaml", L4 + "gpu: [\n", "cannot read hardware profile"),
        ("custom-l4.yaml", L4.replace("microBatchSize: 2", "microBatchSize: 0"), "is invalid"),
        ("a100.yaml", "name: a100-80gb\nprecision: fp64\n", "is invalid"),
        ("l4.yaml", "name: l4\naccelerator: cuda\n", "new profiles are named custom-"),
    ],
    ids=["bad-yaml", "invalid-custom-profile", "invalid-override", "bad-name"],
)
def test_a_profile_file_the_operator_cannot_load_stops_it_naming_the_file(
    tmp_path: Path, file: str, text: str, message: str
) -> None:
    """Before kopf starts, so the pod exits (CrashLoopBackOff, the reason in its log) rather
    than retrying its startup handler forever without serving."""
    team = team_directory(tmp_path)
    (team / file).write_text(text)
    result = _start_the_operator(team)
    assert result.returncode == 1
    assert result.stderr.startswith("distillrun operator: ")
    assert str(team / file) in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_operator_starts_with_the_team_files(tmp_path: Path) -> None:
    result = _start_the_operator(team_directory(tmp_path))
    assert result.returncode == 0, result.stderr
