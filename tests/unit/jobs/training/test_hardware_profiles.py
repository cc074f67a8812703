"""Hardware profiles as data: the shipped set, what the operator must request for a run, a
team's overrides and additions, DeepSpeed configs by name, and an import that stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from distillrun.api.profiles import (
    BUILTIN_PROFILES,
    GpusExceedNode,
    ProfileError,
    get_profile,
    load_profiles,
    worker_resources,
)
from distillrun.api.resource import parse_run
from distillrun.api.spec import StudentSpec
from distillrun.jobs.training import zero


def test_every_builtin_profile_loads_with_a_precision_and_limits() -> None:
    profiles = load_profiles()
    assert set(profiles) == set(BUILTIN_PROFILES)
    for name in ("a100-80gb", "a100-40gb", "h100-80gb", "rtx4090"):
        profile = profiles[name]
        assert profile.uses_gpu and profile.gpu is not None
        assert profile.precision == "bf16"
        assert profile.deepspeed is not None
        zero.settings(profile.deepspeed)  # names a config that exists
    assert profiles["a100-40gb"].gpu.memory_gib == 40  # type: ignore[union-attr]
    assert profiles["rtx4090"].env == {"NCCL_P2P_DISABLE": "1", "NCCL_IB_DISABLE": "1"}
    assert profiles["a100-80gb"].env == {}
    cpu = profiles["cpu"]
    assert not cpu.uses_gpu and cpu.precision == "fp32" and cpu.deepspeed is None


def test_worker_resources_say_what_the_operator_must_request() -> None:
    rtx = worker_resources(StudentSpec(hardware_profile="rtx4090", workers=2, gpus_per_worker=4))
    assert rtx.replicas == 2 and rtx.processes_per_replica == 4
    assert rtx.gpu_resource_name == "nvidia.com/gpu" and rtx.gpu_memory_gib == 24
    assert rtx.requests == {"cpu": "24", "memory": "192Gi", "nvidia.com/gpu": "4"}
    assert rtx.limits["nvidia.com/gpu"] == "4"
    assert rtx.node_selector == {"nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-4090"}
    assert rtx.tolerations == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert rtx.env == {"NCCL_P2P_DISABLE": "1", "NCCL_IB_DISABLE": "1"}

    cpu = worker_resources(StudentSpec(hardware_profile="cpu", workers=3, gpus_per_worker=0))
    assert cpu.replicas == 3 and cpu.gpus_per_replica == 0 and cpu.gpu_resource_name is None
    assert "nvidia.com/gpu" not in cpu.requests and cpu.node_selector == {}


@pytest.mark.parametrize(
    ("profile", "workers", "gpus", "fits", "advice"),
    [
        pytest.param("a100-80gb", 1, 8, True, "", id="a100 full node"),
        pytest.param("a100-80gb", 2, 16, False, "workers: 4 with gpusPerWorker: 8", id="a100 16"),
        pytest.param("a100-40gb", 1, 9, False, "workers: 3 with gpusPerWorker: 3", id="a100 9"),
        pytest.param("h100-80gb", 3, 12, False, "workers: 6 with gpusPerWorker: 6", id="h100 12"),
        pytest.param("rtx4090", 4, 4, True, "", id="rtx4090 full node"),
        pytest.param("rtx4090", 1, 5, False, "workers: 5 with gpusPerWorker: 1", id="rtx4090 5"),
        pytest.param("rtx4090", 1, 8, False, "workers: 2 with gpusPerWorker: 4", id="rtx4090 8"),
    ],
)
def test_a_worker_fits_on_one_node_of_its_profile(
    profile: str, workers: int, gpus: int, fits: bool, advice: str
) -> None:
    student = StudentSpec(hardware_profile=profile, workers=workers, gpus_per_worker=gpus)
    if fits:
        assert worker_resources(student).gpus_per_replica == gpus
        return
    with pytest.raises(GpusExceedNode) as refused:
        worker_resources(student)
    per_node = load_profiles()[profile].gpu.per_node  # type: ignore[union-attr]
    assert f"{gpus} GPUs per worker" in str(refused.value)
    assert f"hardware profile {profile} has {per_node} (gpu.perNode)" in str(refused.value)
    assert str(refused.value).endswith(advice)


def test_a_team_sets_the_gpus_of_its_nodes(tmp_path: Path) -> None:
    (tmp_path / "a100.yaml").write_text("name: a100-80gb\ngpu: {perNode: 4}\n")
    (tmp_path / "l4.yaml").write_text(
        "name: custom-l4\nextends: rtx4090\ngpu: {memoryGiB: 24, product: NVIDIA-L4}\n"
    )
    profiles = load_profiles(tmp_path)
    assert profiles["a100-80gb"].gpu.per_node == 4  # type: ignore[union-attr]
    assert profiles["custom-l4"].gpu.per_node == 4  # type: ignore[union-attr]  # inherited
    with pytest.raises(GpusExceedNode, match="has 4"):
        worker_resources(StudentSpec(hardware_profile="a100-80gb", gpus_per_worker=8), profiles)


def test_a_team_overrides_a_builtin_and_adds_its_own(tmp_path: Path) -> None:
    (tmp_path / "a100.yaml").write_text("name: a100-80gb\nmicroBatchSize: 2\n")
    (tmp_path / "l40s.yaml").write_text(
        "name: custom-l40s\nextends: a100-40gb\ndescription: L40S 48GB\n"
        "gpu: {memoryGiB: 48, product: NVIDIA-L40S}\nenv: {NCCL_P2P_DISABLE: '1'}\n"
    )
    (tmp_path / "deepspeed").mkdir()
    (tmp_path / "deepspeed" / "zero1.json").write_text('{"zero_optimization": {"stage": 1}}')
    profiles = load_profiles(tmp_path)
    assert profiles["a100-80gb"].micro_batch_size == 2
    assert profiles["a100-80gb"].gpu.memory_gib == 80  # type: ignore[union-attr]  # untouched
    l40s = profiles["custom-l40s"]
    assert l40s.gpu is not None and l40s.gpu.memory_gib == 48
    assert l40s.gpu.product == "NVIDIA-L40S" and l40s.gpu.resource_name == "nvidia.com/gpu"
    assert l40s.micro_batch_size == 4  # from a100-40gb
    assert zero.settings("zero1", tmp_path).stage == 1

    # The spec accepts custom- names; whether the profile exists is known where it is loaded.
    student = StudentSpec(hardware_profile="custom-l40s", gpus_per_worker=2)
    assert worker_resources(student, profiles).requests["nvidia.com/gpu"] == "2"
    with pytest.raises(ProfileError, match=r"known profiles: .*custom-l40s"):
        get_profile("custom-h200", profiles)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: l40s\n", "new profiles are named custom-"),
        ("name: custom-x\nextends: nothing\n", "extends unknown profile"),
        ("name: custom-x\nextends: cpu\nprecision: fp8\n", r"from .*bad\.yaml\) is invalid"),
        ("name: cpu\nmicroBatchSize: 0\n", r"'cpu' \(from .*bad\.yaml\) is invalid"),
        ("name: custom-x\nextends: [cpu]\n", "extends unknown profile"),
        ("- a list\n", "a mapping with a name"),
    ],
)
def test_a_bad_team_profile_is_named(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.yaml").write_text(content)
    with pytest.raises(ProfileError, match=message):
        load_profiles(tmp_path)


def test_unknown_profile_names_are_refused_by_the_spec() -> None:
    from distillrun.api.errors import ManifestError

    manifest = {
        "apiVersion": "distillrun.dev/v1alpha1",
        "kind": "DistillRun",
        "metadata": {"name": "x"},
        "spec": {
            "database": {"dialect": "sqlite", "schema": {"ddl": "CREATE TABLE t (a INT);"}},
            "seedQuestions": ["q?"],
            "student": {"hardwareProfile": "tpu-v5"},
        },
    }
    with pytest.raises(ManifestError, match="custom-<name>"):
        parse_run(manifest)


def test_deepspeed_configs_ship_by_name() -> None:
    assert [zero.settings(n).stage for n in zero.BUILTIN_CONFIGS] == [2, 2, 3, 3]
    assert zero.settings("zero2-offload").offload_optimizer
    assert not zero.settings("zero2-offload").offload_params
    assert zero.settings("zero3-offload").offload_params
    config = zero.load_config("zero3")
    assert config["train_micro_batch_size_per_gpu"] == "auto"
    assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    with pytest.raises(ProfileError, match="unknown DeepSpeed config"):
        zero.load_config("zero4")


def test_the_operator_can_size_pods_without_torch_or_ray() -> None:
    probe = (
        "import sys\n"
        "from distillrun.api.spec import StudentSpec\n"
        "from distillrun.api.profiles import worker_resources\n"
        "from distillrun.jobs.training.plan import make_plan\n"
        "worker_resources(StudentSpec())\n"
        "heavy = [m for m in ('torch', 'ray', 'transformers', 'deepspeed') if m in sys.modules]\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
