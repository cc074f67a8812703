"""The RayJob of one stage attempt (KubeRay `ray.io/v1`): a Ray cluster shaped for the stage,
created for the job and shut down when it ends.

Shapes: generate and validate fan out over CPU workers (teacher calls, sandboxed SQL) with the
driver on a head that takes no work; train runs Ray Train over `workers` pods of
`gpusPerWorker` GPUs, and evaluate scores in a driver placed on one GPU
(`entrypointNumGpus`), with the pods sized, placed and tuned by the hardware profile
(`distillrun.jobs.training.profiles`, the data the training code plans with). KubeRay's
own retries are off (`backoffLimit: 0`): a failed attempt is a new RayJob with the next attempt
number, so `kubectl get rayjobs` shows every attempt and none is hidden inside another.

Kueue: when a queue applies (`spec.scheduling.queueName`, else the operator's default), the
RayJob carries the `kueue.x-k8s.io/queue-name` label and is created suspended
(`spec.suspend: true`), as Kueue's RayJob integration expects: Kueue unsuspends it when the
queue admits it, so no pod is created before the quota allows. A suspended RayJob is waiting,
not failed (`planner.ObservedJob.describe` says so in the stage's message).

Secrets reach the pods only as references: the teacher API key as an environment variable from
a `secretKeyRef` (the spec's `apiKeySecretRef`, else the operator's default Secret), S3
credentials as a file projected from the Secret (an AWS shared-credentials file, pointed to by
`AWS_SHARED_CREDENTIALS_FILE`), and for a postgres or mysql run, the sandbox server's address
and password (`builders.sandbox.sandbox_env`) in the stages that run SQL: generate (its top-up
rounds judge the teacher's SQL in the sandbox), validate and evaluate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distillrun.api.resource import DistillRun
from distillrun.api.spec import SecretKeyRef, TeacherProvider
from distillrun.api.status import StageName
from distillrun.jobs.training.profiles import HardwareProfile, WorkerResources, worker_resources
from distillrun.operator.builders.common import (
    KUEUE_QUEUE_LABEL,
    LABEL_RUN,
    LABEL_RUN_UID,
    child_metadata,
)
from distillrun.operator.builders.config import CONFIG_MOUNT, CONFIG_PATH
from distillrun.operator.builders.sandbox import needs_server, sandbox_env
from distillrun.operator.settings import OperatorSettings

GPU_STAGES = frozenset({StageName.TRAIN, StageName.EVALUATE})
SQL_STAGES = frozenset({StageName.GENERATE, StageName.VALIDATE, StageName.EVALUATE})
"""Stages that execute SQL: for a server dialect they get the run's sandbox server. Generate is
one of them: its top-up rounds run the teacher's SQL in the sandbox to judge it."""
API_KEY_ENV = {
    TeacherProvider.ANTHROPIC: "ANTHROPIC_API_KEY",
    TeacherProvider.OPENAI_COMPATIBLE: "OPENAI_API_KEY",
}
AWS_CREDENTIALS_DIR = "/var/run/secrets/distillrun/aws"
ENTRYPOINT = f"python -m distillrun.jobs.entrypoint {CONFIG_PATH}"


def queue_name(run: DistillRun, settings: OperatorSettings) -> str | None:
    """The Kueue LocalQueue of the run's RayJobs: the spec's, else the operator's default
    (`DISTILLRUN_QUEUE_NAME`); None: not queued."""
    return run.spec.scheduling.queue_name or settings.default_queue_name


def teacher_secret(run: DistillRun, settings: OperatorSettings) -> SecretKeyRef | None:
    """The Secret key holding the teacher's API key, for the providers that call an API: the
    spec's `apiKeySecretRef`, else the operator's default (`DISTILLRUN_TEACHER_SECRET_NAME`).
    None for the synthetic teacher, or when neither names one (the pre-flight checks refuse
    that for a provider that needs a key)."""
    if TeacherProvider(run.spec.teacher.provider) not in API_KEY_ENV:
        return None
    return run.spec.teacher.api_key_secret_ref or settings.default_teacher_secret


def stage_workers(
    run: DistillRun, stage: StageName, profiles: Mapping[str, HardwareProfile]
) -> WorkerResources:
    """The worker pods of a train or evaluate attempt, from the hardware profile: training uses
    `workers` pods of `gpusPerWorker` GPUs (Ray Train, one process per GPU); evaluation scores
    on one GPU of one pod."""
    student = run.spec.student
    if stage == StageName.EVALUATE:
        student = student.model_copy(
            update={"workers": 1, "gpus_per_worker": min(student.gpus_per_worker, 1)}
        )
    return worker_resources(student, profiles)


def stage_rayjob(
    run: DistillRun,
    stage: StageName,
    attempt: int,
    settings: OperatorSettings,
    profiles: Mapping[str, HardwareProfile],
) -> dict[str, Any]:
    """The RayJob manifest of `stage`, attempt `attempt`, reading the ConfigMap of the same name.
    Raises ProfileError for a profile `profiles` lacks (the pre-flight checks catch it first)."""
    metadata = child_metadata(run, stage, attempt, settings.extra_labels)
    queue = queue_name(run, settings)
    if queue:
        metadata["labels"][KUEUE_QUEUE_LABEL] = queue
    workers = stage_workers(run, stage, profiles) if stage in GPU_STAGES else None
    spec: dict[str, Any] = {
        "entrypoint": ENTRYPOINT,
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
        "backoffLimit": 0,
        "rayClusterSpec": {
            "rayVersion": settings.ray_version,
            "headGroupSpec": {
                "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
                "template": _pod(run, stage, metadata["name"], settings, workers, head=True),
            },
            "workerGroupSpecs": [_worker_group(run, stage, metadata["name"], settings, workers)],
        },
    }
    if stage == StageName.EVALUATE and workers is not None and workers.gpus_per_replica:
        spec["entrypointNumGpus"] = workers.gpus_per_replica  # score on the GPU worker
    if queue:
        spec["suspend"] = True  # Kueue unsuspends it on admission
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": metadata, "spec": spec}


def _worker_group(
    run: DistillRun,
    stage: StageName,
    config_name: str,
    settings: OperatorSettings,
    workers: WorkerResources | None,
) -> dict[str, Any]:
    if workers is None:
        replicas, group = settings.cpu_workers, "cpu-workers"
    else:
        replicas = workers.replicas
        group = "gpu-workers" if workers.gpus_per_replica else "cpu-workers"
    return {
        "groupName": group,
        "replicas": replicas,
        "minReplicas": replicas,
        "maxReplicas": replicas,
        "rayStartParams": {},
        "template": _pod(run, stage, config_name, settings, workers, head=False),
    }


def _resources(
    settings: OperatorSettings, workers: WorkerResources | None, *, head: bool
) -> dict[str, dict[str, str]]:
    """Requests and limits of a head or worker container. The head runs the stage driver;
    when a GPU stage has no GPUs (the cpu profile) the work may run in the driver, so the head
    is sized like a worker."""
    if workers is not None and not (head and workers.gpus_per_replica):
        return {"requests": dict(workers.requests), "limits": dict(workers.limits)}
    if head:
        fixed = {"cpu": settings.head_cpu, "memory": settings.head_memory}
    else:
        fixed = {"cpu": settings.cpu_worker_cpu, "memory": settings.cpu_worker_memory}
    return {"requests": dict(fixed), "limits": {"memory": fixed["memory"]}}


def _pod(
    run: DistillRun,
    stage: StageName,
    config_name: str,
    settings: OperatorSettings,
    workers: WorkerResources | None,
    *,
    head: bool,
) -> dict[str, Any]:
    """The pod template of the head (`head=True`) or of the workers."""
    scheduling = run.spec.scheduling
    env: list[dict[str, Any]] = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    mounts: list[dict[str, Any]] = [
        {"name": "distillrun-config", "mountPath": CONFIG_MOUNT, "readOnly": True}
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "distillrun-config", "configMap": {"name": config_name}}
    ]
    node_selector = dict(scheduling.node_selector)
    tolerations = [
        t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in scheduling.tolerations
    ]

    api_key = teacher_secret(run, settings)
    if stage == StageName.GENERATE and api_key is not None:
        env.append(_secret_env(API_KEY_ENV[TeacherProvider(run.spec.teacher.provider)], api_key))
    if stage in SQL_STAGES and needs_server(run):
        env += sandbox_env(run)

    credentials = run.spec.artifacts.credentials_secret_ref
    if credentials is not None:
        env.append(
            {"name": "AWS_SHARED_CREDENTIALS_FILE", "value": f"{AWS_CREDENTIALS_DIR}/credentials"}
        )
        mounts.append(
            {"name": "aws-credentials", "mountPath": AWS_CREDENTIALS_DIR, "readOnly": True}
        )
        volumes.append(
            {
                "name": "aws-credentials",
                "secret": {
                    "secretName": credentials.name,
                    "items": [{"key": credentials.key, "path": "credentials"}],
                },
            }
        )

    if workers is not None and not head:
        env += [{"name": k, "value": v} for k, v in sorted(workers.env.items())]
        node_selector = {**workers.node_selector, **node_selector}
        tolerations = workers.tolerations + [t for t in tolerations if t not in workers.tolerations]
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        volumes.append(
            {
                "name": "dshm",
                "emptyDir": {"medium": "Memory", "sizeLimit": f"{workers.shared_memory_gib}Gi"},
            }
        )

    container: dict[str, Any] = {
        "name": "ray-head" if head else "ray-worker",
        "image": settings.jobs_image,
        "resources": _resources(settings, workers, head=head),
        "env": env,
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": volumes,
    }
    if node_selector:
        pod["nodeSelector"] = node_selector
    if tolerations:
        pod["tolerations"] = tolerations
    if scheduling.priority_class_name:
        pod["priorityClassName"] = scheduling.priority_class_name
    # The sandbox server's NetworkPolicy admits pods by the run-uid label.
    labels = {LABEL_RUN: run.metadata.name, LABEL_RUN_UID: run.metadata.uid or ""}
    return {"metadata": {"labels": labels}, "spec": pod}


def _secret_env(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
