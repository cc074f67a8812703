"""The builders are pure: the same run gives byte-identical child manifests, compared against
golden YAML under golden/ (regenerate after an intended change with
`DISTILLRUN_UPDATE_GOLDEN=1 pytest tests/unit/operator/test_builders.py`, then review the diff)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from distillrun.api.profiles import load_profiles
from distillrun.api.resource import DistillRun, parse_run
from distillrun.api.spec import SecretKeyRef
from distillrun.api.status import StageName
from distillrun.operator.builders.common import RAYJOB_NAME_MAX, child_name
from distillrun.operator.builders.config import run_store_uri, stage_config, stage_config_map
from distillrun.operator.builders.rayjob import stage_rayjob, teacher_secret
from distillrun.operator.settings import OperatorSettings, cpu_millicores
from tests.unit.operator.conftest import UID, cpu_manifest

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = OperatorSettings(jobs_image="registry.example/distillrun-jobs:1.0")


def _settings(**changes: Any) -> OperatorSettings:
    """SETTINGS with `changes`, checked as the operator checks them."""
    return OperatorSettings(**{"jobs_image": SETTINGS.jobs_image, **changes})


PROFILES = load_profiles()  # the builtin ones (DISTILLRUN_PROFILES_DIR is unset in tests)


def _golden(name: str, manifest: dict[str, Any]) -> None:
    path = GOLDEN / f"{name}.yaml"
    text = yaml.safe_dump(manifest, sort_keys=False, width=100)
    if os.environ.get("DISTILLRUN_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}; create it with DISTILLRUN_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from golden/{path.name}"


@pytest.mark.parametrize("stage", list(StageName))
def test_cpu_run_rayjobs_match_golden(cpu_run: DistillRun, stage: StageName) -> None:
    _golden(f"cpu-{stage}-rayjob", stage_rayjob(cpu_run, stage, 1, SETTINGS, PROFILES))


@pytest.mark.parametrize("stage", [StageName.GENERATE, StageName.TRAIN, StageName.EVALUATE])
def test_gpu_run_rayjobs_match_golden(gpu_run: DistillRun, stage: StageName) -> None:
    _golden(f"gpu-{stage}-rayjob", stage_rayjob(gpu_run, stage, 2, SETTINGS, PROFILES))


def test_config_map_matches_golden_and_inlines_the_config_map_schema(gpu_run: DistillRun) -> None:
    ddl = "CREATE TABLE orders (id INT PRIMARY KEY, total NUMERIC);"
    store = run_store_uri("s3://team-a-ml/distill", gpu_run)
    config = stage_config(gpu_run, StageName.GENERATE, 2, store, {"schema": ddl})
    manifest = stage_config_map(gpu_run, StageName.GENERATE, 2, config, {})
    document = json.loads(manifest["data"]["run.json"])
    assert document["run"]["spec"]["database"]["schema"] == {"ddl": ddl}
    assert document["store"] == f"s3://team-a-ml/distill/team-a/sales-analytics/{UID}"
    resolved = parse_run(document["run"])
    assert resolved.spec.database.schema_source.ddl == ddl
    expected = gpu_run.spec.database.model_copy(
        update={"schema_source": resolved.spec.database.schema_source}
    )
    assert resolved.spec == gpu_run.spec.model_copy(update={"database": expected})
    assert manifest["immutable"] is True
    # The golden file pins everything around the spec (which the spec's own tests pin).
    document["run"]["spec"] = "<the run's spec, schema resolved>"
    _golden("gpu-generate-configmap", {**manifest, "data": {"run.json": document}})


def test_gpu_workers_get_the_profile(gpu_run: DistillRun) -> None:
    train = stage_rayjob(gpu_run, StageName.TRAIN, 1, SETTINGS, PROFILES)["spec"]
    workers = train["rayClusterSpec"]["workerGroupSpecs"][0]
    pod = workers["template"]["spec"]
    container = pod["containers"][0]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 2
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert container["resources"]["requests"] == {
        "cpu": "32",
        "memory": "384Gi",
        "nvidia.com/gpu": "4",
    }
    assert pod["nodeSelector"] == {
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
        "pool": "training",
    }
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert {"key": "team-a", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "entrypointNumGpus" not in train  # Ray Train places the GPU workers
    evaluate = stage_rayjob(gpu_run, StageName.EVALUATE, 1, SETTINGS, PROFILES)["spec"]
    scorer = evaluate["rayClusterSpec"]["workerGroupSpecs"][0]
    assert scorer["replicas"] == 1
    assert (
        scorer["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    )
    assert evaluate["entrypointNumGpus"] == 1


def test_the_profile_environment_reaches_the_workers(gpu_run: DistillRun) -> None:
    student = gpu_run.spec.student.model_copy(update={"hardware_profile": "rtx4090"})
    run = gpu_run.model_copy(update={"spec": gpu_run.spec.model_copy(update={"student": student})})
    train = stage_rayjob(run, StageName.TRAIN, 1, SETTINGS, PROFILES)["spec"]
    worker = train["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["NCCL_P2P_DISABLE"] == env["NCCL_IB_DISABLE"] == "1"


def test_cpu_stages_use_cpu_workers_and_kueue_only_when_asked(
    cpu_run: DistillRun, gpu_run: DistillRun
) -> None:
    generate = stage_rayjob(cpu_run, StageName.GENERATE, 1, SETTINGS, PROFILES)
    spec = generate["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] == 0
    worker = spec["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in worker["resources"]["limits"]
    assert "kueue.x-k8s.io/queue-name" not in generate["metadata"]["labels"]
    assert "suspend" not in spec  # not queued: KubeRay starts it at once
    queued = stage_rayjob(gpu_run, StageName.GENERATE, 1, SETTINGS, PROFILES)
    assert queued["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-gpus"
    assert queued["spec"]["suspend"] is True  # Kueue unsuspends it on admission


def test_the_operator_default_queue_applies_when_the_spec_names_none(
    cpu_run: DistillRun, gpu_run: DistillRun
) -> None:
    settings = _settings(scheduling_queue_name="team-a-default")
    for stage in StageName:
        job = stage_rayjob(cpu_run, stage, 1, settings, PROFILES)
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-default"
        assert job["spec"]["suspend"] is True
    spec_wins = stage_rayjob(gpu_run, StageName.TRAIN, 1, settings, PROFILES)["metadata"]
    assert spec_wins["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-gpus"


def _head_env(run: DistillRun, stage: StageName, settings: OperatorSettings) -> dict[str, Any]:
    job = stage_rayjob(run, stage, 1, settings, PROFILES)
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    return {e["name"]: e for e in head["containers"][0]["env"]}


@pytest.mark.parametrize(
    ("provider", "env_name"),
    [("anthropic", "ANTHROPIC_API_KEY"), ("openai-compatible", "OPENAI_API_KEY")],
)
def test_the_operator_default_teacher_secret_fills_a_missing_ref(
    provider: str, env_name: str
) -> None:
    data = cpu_manifest()
    data["spec"]["teacher"] = {"provider": provider, "model": "m", "baseUrl": "http://t:8000/v1"}
    run = parse_run(data)
    default = SecretKeyRef(name="team-a-teacher", key="api-key")
    settings = _settings(teacher_secret_name="team-a-teacher")
    assert teacher_secret(run, settings) == default
    env = _head_env(run, StageName.GENERATE, settings)
    assert env[env_name]["valueFrom"] == {
        "secretKeyRef": {"name": "team-a-teacher", "key": "api-key"}
    }
    assert env_name not in _head_env(run, StageName.VALIDATE, settings)
    assert env_name not in _head_env(run, StageName.GENERATE, SETTINGS)  # no default, no ref


def test_the_spec_teacher_secret_wins_and_the_synthetic_teacher_gets_none(
    cpu_run: DistillRun, gpu_run: DistillRun
) -> None:
    settings = _settings(teacher_secret_name="other", teacher_secret_key="k")
    assert teacher_secret(gpu_run, settings) == SecretKeyRef(name="anthropic", key="api-key")
    env = _head_env(gpu_run, StageName.GENERATE, settings)
    assert env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "anthropic"
    assert teacher_secret(cpu_run, settings) is None  # synthetic: no API, no key
    names = set(_head_env(cpu_run, StageName.GENERATE, settings))
    assert not names & {"ANTHROPIC_API_KEY", "OPENAI_API_KEY"}


def test_secrets_are_references_only(gpu_run: DistillRun) -> None:
    generate = stage_rayjob(gpu_run, StageName.GENERATE, 1, SETTINGS, PROFILES)
    head = generate["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    env = {e["name"]: e for e in head["containers"][0]["env"]}
    assert env["ANTHROPIC_API_KEY"] == {
        "name": "ANTHROPIC_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "anthropic", "key": "api-key"}},
    }
    volumes = {v["name"]: v for v in head["volumes"]}
    assert volumes["aws-credentials"]["secret"] == {
        "secretName": "team-a-s3",
        "items": [{"key": "credentials", "path": "credentials"}],
    }
    train = stage_rayjob(gpu_run, StageName.TRAIN, 1, SETTINGS, PROFILES)
    train_head = train["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert "ANTHROPIC_API_KEY" not in {e["name"] for e in train_head["containers"][0]["env"]}


def test_children_are_owned_and_labelled(cpu_run: DistillRun) -> None:
    meta = stage_rayjob(cpu_run, StageName.VALIDATE, 3, SETTINGS, PROFILES)["metadata"]
    assert meta["name"] == "shop-validate-3"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "distillrun.dev/v1alpha1",
            "kind": "DistillRun",
            "name": "shop",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"]["distillrun.dev/run-uid"] == UID
    assert meta["labels"]["distillrun.dev/attempt"] == "3"


def test_names_are_deterministic_short_and_distinct() -> None:
    long_a = "a" * 60 + "-one"
    long_b = "a" * 60 + "-two"
    names = {child_name(n, s, k) for n in (long_a, long_b) for s in StageName for k in (1, 12)}
    assert len(names) == 2 * len(StageName) * 2
    assert all(len(n) <= RAYJOB_NAME_MAX for n in names)
    assert all(n[0].isalnum() and n[-1].isalnum() for n in names)
    assert child_name(long_a, StageName.TRAIN, 1) == child_name(long_a, StageName.TRAIN, 1)
    assert child_name("shop", StageName.TRAIN, 1) == "shop-train-1"


def test_a_run_without_uid_cannot_own_children() -> None:
    data = cpu_manifest()
    del data["metadata"]["uid"]
    with pytest.raises(ValueError, match=r"metadata\.uid"):
        stage_rayjob(parse_run(data), StageName.GENERATE, 1, SETTINGS, PROFILES)


def test_sql_stages_of_a_server_dialect_reach_the_sandbox(gpu_run: DistillRun) -> None:
    def env_names(stage: StageName) -> set[str]:
        cluster = stage_rayjob(gpu_run, stage, 1, SETTINGS, PROFILES)["spec"]["rayClusterSpec"]
        pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
        names = [{e["name"] for e in p["template"]["spec"]["containers"][0]["env"]} for p in pods]
        assert all(n == names[0] for n in names)
        for pod in pods:
            assert pod["template"]["metadata"]["labels"]["distillrun.dev/run-uid"] == UID
        return names[0]

    sandbox = {"DISTILLRUN_SANDBOX_HOST", "DISTILLRUN_SANDBOX_PASSWORD"}
    assert sandbox <= env_names(StageName.GENERATE)  # top-up rounds judge SQL in the sandbox
    assert sandbox <= env_names(StageName.VALIDATE)
    assert sandbox <= env_names(StageName.EVALUATE)
    assert not sandbox & env_names(StageName.TRAIN)


def _cluster(run: DistillRun, stage: StageName, settings: OperatorSettings) -> dict[str, Any]:
    cluster: dict[str, Any] = stage_rayjob(run, stage, 1, settings, PROFILES)["spec"][
        "rayClusterSpec"
    ]
    return cluster


def test_the_operator_sizes_heads_and_cpu_workers_and_ray_is_told_the_same(
    cpu_run: DistillRun,
) -> None:
    """Requests equal limits, so a pod gets what Ray counts on; a fractional worker CPU is one
    Ray CPU (Ray counts whole ones), 1500m is two."""
    sizes = _settings(
        jobs_head_cpu="500m",
        jobs_head_memory="1Gi",
        jobs_cpu_worker_cpu="1500m",
        jobs_cpu_worker_memory="3Gi",
    )
    for stage in (StageName.GENERATE, StageName.VALIDATE):
        cluster = _cluster(cpu_run, stage, sizes)
        head = cluster["headGroupSpec"]
        worker = cluster["workerGroupSpecs"][0]
        head_size = {"cpu": "500m", "memory": "1Gi"}
        worker_size = {"cpu": "1500m", "memory": "3Gi"}
        resources = head["template"]["spec"]["containers"][0]["resources"]
        assert resources == {"requests": head_size, "limits": head_size}
        resources = worker["template"]["spec"]["containers"][0]["resources"]
        assert resources == {"requests": worker_size, "limits": worker_size}
        assert head["rayStartParams"]["num-cpus"] == "0"  # the driver's pod takes no task
        assert worker["rayStartParams"] == {"num-cpus": "2"}
    small = _settings(jobs_cpu_worker_cpu="250m")
    worker = _cluster(cpu_run, StageName.GENERATE, small)["workerGroupSpecs"][0]
    assert worker["rayStartParams"] == {"num-cpus": "1"}


def test_the_default_generate_rayjob_fits_a_four_cpu_node(cpu_run: DistillRun) -> None:
    spec = stage_rayjob(cpu_run, StageName.GENERATE, 1, SETTINGS, PROFILES)["spec"]
    cluster = spec["rayClusterSpec"]
    group = cluster["workerGroupSpecs"][0]
    pods = [cluster["headGroupSpec"]["template"]] + [group["template"]] * group["replicas"]
    pods.append(spec["submitterPodTemplate"])
    requests = [p["spec"]["containers"][0]["resources"]["requests"] for p in pods]
    millicores = sum(cpu_millicores(r["cpu"]) for r in requests)
    assert millicores <= 3500  # a 4-CPU node keeps 500m for the kubelet and system pods


def test_gpu_workers_tell_ray_their_cpus_and_gpus(gpu_run: DistillRun) -> None:
    train = _cluster(gpu_run, StageName.TRAIN, SETTINGS)["workerGroupSpecs"][0]
    assert train["rayStartParams"] == {"num-cpus": "32", "num-gpus": "4"}
    scorer = _cluster(gpu_run, StageName.EVALUATE, SETTINGS)["workerGroupSpecs"][0]
    assert scorer["rayStartParams"] == {"num-cpus": "8", "num-gpus": "1"}


def test_every_ray_pod_has_a_memory_backed_dev_shm(
    cpu_run: DistillRun, gpu_run: DistillRun
) -> None:
    for run, stage in ((cpu_run, StageName.GENERATE), (gpu_run, StageName.TRAIN)):
        cluster = _cluster(run, stage, SETTINGS)
        for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
            pod = group["template"]["spec"]
            mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
            assert mounts["dshm"] == "/dev/shm"
            shm = next(v for v in pod["volumes"] if v["name"] == "dshm")["emptyDir"]
            assert shm["medium"] == "Memory" and shm["sizeLimit"]
    head = _cluster(cpu_run, StageName.GENERATE, SETTINGS)["headGroupSpec"]["template"]["spec"]
    shm = next(v for v in head["volumes"] if v["name"] == "dshm")["emptyDir"]
    assert shm["sizeLimit"] == head["containers"][0]["resources"]["limits"]["memory"]


def test_the_submitter_is_hardened_small_and_not_retried(gpu_run: DistillRun) -> None:
    spec = stage_rayjob(gpu_run, StageName.GENERATE, 1, SETTINGS, PROFILES)["spec"]
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["submitterConfig"] == {"backoffLimit": 0}
    template = spec["submitterPodTemplate"]
    pod = template["spec"]
    (container,) = pod["containers"]
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    assert container["image"] == SETTINGS.jobs_image
    assert container["securityContext"] == head["containers"][0]["securityContext"]
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    for key in ("nodeSelector", "tolerations", "priorityClassName"):
        assert pod[key] == head.get(key)  # the run's own placement
    # It runs `ray job submit` only: no Secret, no volume, not admitted to the sandbox.
    assert "env" not in container and "volumes" not in pod
    assert "distillrun.dev/run-uid" not in template["metadata"]["labels"]


def test_finished_clusters_go_at_once_and_deadlines_follow_the_settings(
    cpu_run: DistillRun,
) -> None:
    spec = stage_rayjob(cpu_run, StageName.VALIDATE, 1, SETTINGS, PROFILES)["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] == 0
    assert spec["preRunningDeadlineSeconds"] == 1200
    assert "activeDeadlineSeconds" not in spec
    settings = _settings(
        jobs_ray_ttl_seconds=60,
        jobs_ray_start_deadline_seconds=0,
        jobs_ray_job_deadline_seconds=7200,
    )
    spec = stage_rayjob(cpu_run, StageName.VALIDATE, 1, settings, PROFILES)["spec"]
    assert spec["ttlSecondsAfterFinished"] == 60
    assert "preRunningDeadlineSeconds" not in spec
    assert spec["activeDeadlineSeconds"] == 7200


def test_ray_token_auth_is_on_unless_the_operator_turns_it_off(cpu_run: DistillRun) -> None:
    assert _cluster(cpu_run, StageName.GENERATE, SETTINGS)["authOptions"] == {"mode": "token"}
    off = _settings(jobs_ray_token_auth=False)
    assert "authOptions" not in _cluster(cpu_run, StageName.GENERATE, off)
