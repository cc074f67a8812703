"""The RayJob of one stage attempt (KubeRay `ray.io/v1`): a Ray cluster shaped for the stage,
created for the job and shut down when it ends.

Shapes: generate and validate fan out over CPU workers (teacher calls, sandboxed SQL) with the
driver on a head that takes no work; train runs Ray Train over `workers` pods of
`gpusPerWorker` GPUs, and evaluate scores in a driver placed on one GPU
(`entrypointNumGpus`), with the pods sized, placed and tuned by the hardware profile
(`distillrun.api.profiles`, the data the training code plans with). Every Ray
container's CPU and memory are both requested and limited, and Ray is told the same numbers
(`num-cpus`, `num-gpus` in `rayStartParams`) instead of guessing them from the node; each pod has
a memory-backed `/dev/shm` for Ray's object store. KubeRay's own retries are off (`backoffLimit:
0`, and `submitterConfig.backoffLimit: 0` for the submitter Job): a failed attempt is a new
RayJob with the next attempt number, so `kubectl get rayjobs` shows every attempt and none is
hidden inside another.

Submission: `K8sJobMode` with our own `submitterPodTemplate`. The submitter runs only `ray job
submit` against the head, so it gets the jobs image, the run's placement (node selector,
tolerations, priority class), the same securityContext and `automountServiceAccountToken:
false` as the Ray pods, small resources, and none of the stage's Secrets or volumes (only the
operator's `jobs_pod_extras`, which complete the image for every pod). The other
modes were weighed: `HTTPMode` needs no pod but makes the KubeRay operator itself submit (and
would need to reach every team's head); `SidecarMode` injects KubeRay's default container into
the head pod, which we cannot harden or size. The finished submitter pod keeps the driver's log
(`kubectl logs job/<rayjob>`) and holds no resources, so the cluster itself can go at once.

Lifetime: the Ray cluster is deleted `ttlSecondsAfterFinished` (the operator's
`ray_ttl_seconds`, 0 by default) after the job ends, so the next stage's pods do not wait behind
it; a cluster that does not start within `ray_start_deadline_seconds` (pods that cannot be
scheduled, an image that cannot be pulled) fails with KubeRay's `PreRunningDeadlineExceeded`,
and a job active longer than `ray_job_deadline_seconds` (if set) with `DeadlineExceeded`; the
planner ends the run with that reason.

Authentication: Ray's token authentication (`authOptions.mode: token`, KubeRay v1.5.1+, Ray
2.52+) unless the operator turns it off: KubeRay generates a token Secret per cluster and puts
it in the head, the workers and the submitter, and Ray then refuses any dashboard, job
submission or GCS request without it. This was preferred to a NetworkPolicy, which a plain
bridge CNI does not enforce and which would have to admit the KubeRay operator (it polls the
dashboard for the job's status) from a namespace this operator cannot know.

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

The Ray pods of a train stage get the team's profile files from the stage's ConfigMap (see
`builders.config`), with `DISTILLRUN_PROFILES_DIR` set to where they are; the other stages
read no profile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from distillrun.api.profiles import (
    PROFILES_ENV,
    HardwareProfile,
    WorkerResources,
    worker_resources,
)
from distillrun.api.resource import DistillRun
from distillrun.api.spec import SecretKeyRef, TeacherProvider
from distillrun.api.status import SQL_STAGES, StageName
from distillrun.operator.builders.common import (
    KUEUE_QUEUE_LABEL,
    LABEL_RUN,
    LABEL_RUN_UID,
    child_metadata,
)
from distillrun.operator.builders.config import (
    CONFIG_MOUNT,
    CONFIG_PATH,
    CONFIG_VOLUME,
    NO_PROFILE_FILES,
    PROFILES_DIR,
    config_volume,
    stage_profile_files,
)
from distillrun.operator.builders.sandbox import needs_server, sandbox_env
from distillrun.operator.settings import OperatorSettings, cpu_millicores

GPU_STAGES = frozenset({StageName.TRAIN, StageName.EVALUATE})
API_KEY_ENV = {
    TeacherProvider.ANTHROPIC: "ANTHROPIC_API_KEY",
    TeacherProvider.OPENAI_COMPATIBLE: "OPENAI_API_KEY",
}
AWS_CREDENTIALS_DIR = "/var/run/secrets/distillrun/aws"
ENTRYPOINT = f"python -m distillrun.jobs.entrypoint {CONFIG_PATH}"
SUBMITTER_CPU = "100m", "500m"
SUBMITTER_MEMORY = "256Mi", "512Mi"
"""Request and limit of the submitter, which only runs `ray job submit` and follows the job's
log (the `ray` CLI, about 150 MB)."""


def queue_name(run: DistillRun, settings: OperatorSettings) -> str | None:
    """The Kueue LocalQueue of the run's RayJobs: the spec's, else the operator's default
    (`DISTILLRUN_SCHEDULING_QUEUE_NAME`); None: not queued."""
    return run.spec.scheduling.queue_name or settings.scheduling_queue_name


def teacher_secret(run: DistillRun, settings: OperatorSettings) -> SecretKeyRef | None:
    """The Secret key holding the teacher's API key, for the providers that call an API: the
    spec's `apiKeySecretRef`, else the operator's default (`DISTILLRUN_TEACHER_SECRET_NAME`).
    None for the synthetic teacher, or when neither names one (the pre-flight checks refuse
    that for a provider that needs a key)."""
    if run.spec.teacher.provider not in API_KEY_ENV:
        return None
    return run.spec.teacher.api_key_secret_ref or settings.teacher_secret


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
    profile_files: Mapping[str, str] = NO_PROFILE_FILES,
) -> dict[str, Any]:
    """The RayJob manifest of `stage`, attempt `attempt`, reading the ConfigMap of the same name
    (which holds `profile_files`, the files `profiles` came from, for train). Raises
    ProfileError for a profile `profiles` lacks (the pre-flight checks catch it first)."""
    metadata = child_metadata(run, stage, attempt, settings.extra_labels)
    queue = queue_name(run, settings)
    if queue:
        metadata["labels"][KUEUE_QUEUE_LABEL] = queue
    workers = stage_workers(run, stage, profiles) if stage in GPU_STAGES else None
    files = stage_profile_files(stage, profile_files)
    cluster: dict[str, Any] = {"rayVersion": settings.jobs_ray_version}
    if settings.jobs_ray_token_auth:
        cluster["authOptions"] = {"mode": "token"}
    head_pod = _pod(run, stage, metadata["name"], settings, workers, files, head=True)
    worker_pod = _pod(run, stage, metadata["name"], settings, workers, files, head=False)
    cluster["headGroupSpec"] = {
        # The head runs the driver and takes no Ray task (its CPUs are 0 to Ray).
        "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
        "template": head_pod,
    }
    cluster["workerGroupSpecs"] = [_worker_group(settings, workers, worker_pod)]
    spec: dict[str, Any] = {
        "entrypoint": ENTRYPOINT,
        "submissionMode": "K8sJobMode",
        "submitterPodTemplate": _submitter_pod(run, settings),
        "submitterConfig": {"backoffLimit": 0},
    }
    if settings.jobs_ray_start_deadline_seconds:
        spec["preRunningDeadlineSeconds"] = settings.jobs_ray_start_deadline_seconds
    if settings.jobs_ray_job_deadline_seconds:
        spec["activeDeadlineSeconds"] = settings.jobs_ray_job_deadline_seconds
    spec |= {
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": settings.jobs_ray_ttl_seconds,
        "backoffLimit": 0,
        "rayClusterSpec": cluster,
    }
    if stage == StageName.EVALUATE and workers is not None and workers.gpus_per_replica:
        spec["entrypointNumGpus"] = workers.gpus_per_replica  # score on the GPU worker
    if queue:
        spec["suspend"] = True  # Kueue unsuspends it on admission
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": metadata, "spec": spec}


def _worker_group(
    settings: OperatorSettings, workers: WorkerResources | None, template: dict[str, Any]
) -> dict[str, Any]:
    """The worker group: `workers` pods (CPU workers from the settings without a profile),
    each from `template`."""
    if workers is None:
        replicas, group = settings.jobs_cpu_workers, "cpu-workers"
    else:
        replicas = workers.replicas
        group = "gpu-workers" if workers.gpus_per_replica else "cpu-workers"
    return {
        "groupName": group,
        "replicas": replicas,
        "minReplicas": replicas,
        "maxReplicas": replicas,
        "rayStartParams": _ray_resources(_resources(settings, workers, head=False), workers),
        "template": template,
    }


def _ray_resources(
    resources: dict[str, dict[str, str]], workers: WorkerResources | None
) -> dict[str, str]:
    """What a worker tells Ray it has: its container's CPUs, rounded up to whole ones (Ray
    counts whole CPUs, and a worker with 0 would take no task), and its GPUs."""
    params = {
        "num-cpus": str(max(1, math.ceil(cpu_millicores(resources["requests"]["cpu"]) / 1000)))
    }
    if workers is not None and workers.gpus_per_replica:
        params["num-gpus"] = str(workers.gpus_per_replica)
    return params


def _resources(
    settings: OperatorSettings, workers: WorkerResources | None, *, head: bool
) -> dict[str, dict[str, str]]:
    """Requests and limits of a head or worker container. The head runs the stage driver;
    when a GPU stage has no GPUs (the cpu profile) the work may run in the driver, so the head
    is sized like a worker. The operator's sizes are both requested and limited: the pod gets
    what Ray is told it has, no more."""
    if workers is not None and not (head and workers.gpus_per_replica):
        return {"requests": dict(workers.requests), "limits": dict(workers.limits)}
    if head:
        fixed = {"cpu": settings.jobs_head_cpu, "memory": settings.jobs_head_memory}
    else:
        fixed = {"cpu": settings.jobs_cpu_worker_cpu, "memory": settings.jobs_cpu_worker_memory}
    return {"requests": dict(fixed), "limits": dict(fixed)}


def _placement(run: DistillRun) -> dict[str, Any]:
    """The run's own placement of its pods: `spec.scheduling`'s node selector, tolerations
    and priority class."""
    scheduling = run.spec.scheduling
    placement: dict[str, Any] = {}
    if scheduling.node_selector:
        placement["nodeSelector"] = dict(scheduling.node_selector)
    if scheduling.tolerations:
        placement["tolerations"] = [
            t.model_dump(mode="json", by_alias=True, exclude_none=True)
            for t in scheduling.tolerations
        ]
    if scheduling.priority_class_name:
        placement["priorityClassName"] = scheduling.priority_class_name
    return placement


def _with_profile_placement(placement: dict[str, Any], workers: WorkerResources) -> dict[str, Any]:
    """The run's placement of GPU workers joined with the profile's: both node selectors (the
    run's wins on a clash) and both tolerations."""
    node_selector = {**workers.node_selector, **placement.get("nodeSelector", {})}
    own = placement.get("tolerations", [])
    tolerations = workers.tolerations + [t for t in own if t not in workers.tolerations]
    joined = {**placement}
    if node_selector:
        joined["nodeSelector"] = node_selector
    if tolerations:
        joined["tolerations"] = tolerations
    return joined


def _container_security() -> dict[str, Any]:
    """The securityContext of every container of a stage (a new dict each time: manifests
    share no objects)."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _pod(
    run: DistillRun,
    stage: StageName,
    config_name: str,
    settings: OperatorSettings,
    workers: WorkerResources | None,
    profile_files: Mapping[str, str],
    *,
    head: bool,
) -> dict[str, Any]:
    """The pod template of the head (`head=True`) or of the workers; `profile_files` (by path)
    are mounted from the stage's ConfigMap at PROFILES_DIR."""
    resources = _resources(settings, workers, head=head)
    env: list[dict[str, Any]] = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    mounts: list[dict[str, Any]] = [
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    # Ray's object store lives in /dev/shm (a container's own is 64 MB). Its pages count
    # against the memory limit anyway, so the limit is the most it could hold.
    shared_memory = resources["limits"]["memory"]
    if workers is not None and not head:
        shared_memory = f"{workers.shared_memory_gib}Gi"
    volumes: list[dict[str, Any]] = [
        config_volume(config_name, profile_files),
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shared_memory}},
    ]
    placement = _placement(run)
    if profile_files:
        env.append({"name": PROFILES_ENV, "value": PROFILES_DIR})

    api_key = teacher_secret(run, settings)
    if stage == StageName.GENERATE and api_key is not None:
        env.append(_secret_env(API_KEY_ENV[run.spec.teacher.provider], api_key))
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
        placement = _with_profile_placement(placement, workers)

    extras = settings.jobs_pod_extras
    container: dict[str, Any] = {
        "name": "ray-head" if head else "ray-worker",
        "image": settings.jobs_image,
        "resources": resources,
        "env": env + extras.env_list(),
        "volumeMounts": mounts + extras.mount_list(),
        "securityContext": _container_security(),
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": volumes + extras.volume_list(),
        **placement,
    }
    # The sandbox server's NetworkPolicy admits pods by the run-uid label.
    labels = {LABEL_RUN: run.metadata.name, LABEL_RUN_UID: run.metadata.uid or ""}
    return {"metadata": {"labels": labels}, "spec": pod}


def _submitter_pod(run: DistillRun, settings: OperatorSettings) -> dict[str, Any]:
    """The pod template of the submitter Job: see the module docstring. No run-uid label:
    the submitter has no business with the sandbox server."""
    extras = settings.jobs_pod_extras
    container: dict[str, Any] = {
        "name": "ray-job-submitter",
        "image": settings.jobs_image,
        "resources": {
            "requests": {"cpu": SUBMITTER_CPU[0], "memory": SUBMITTER_MEMORY[0]},
            "limits": {"cpu": SUBMITTER_CPU[1], "memory": SUBMITTER_MEMORY[1]},
        },
        "securityContext": _container_security(),
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "restartPolicy": "Never",
        "containers": [container],
        **_placement(run),
    }
    # The operator's extras complete the image (an endpoint, a mounted environment): the
    # submitter runs the same image, so it gets them too.
    if extras.env:
        container["env"] = extras.env_list()
    if extras.volumes:
        container["volumeMounts"] = extras.mount_list()
        pod["volumes"] = extras.volume_list()
    return {"metadata": {"labels": {LABEL_RUN: run.metadata.name}}, "spec": pod}


def _secret_env(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
