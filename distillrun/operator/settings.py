"""The operator's own settings: what the cluster offers and how children are shaped.

Per-run choices live in the DistillRun spec; these are per-installation (set by the Helm chart
through environment variables), so one team's operator can offer only the GPU pools it has.
Which namespaces are watched is kopf's own flag (`--namespace` or `--all-namespaces`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from distillrun.api.spec import HARDWARE_PROFILE_PATTERN, SecretKeyRef
from distillrun.operator.pod_extras import PodExtras, PodExtrasError

DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A DNS-1123 subdomain: the names of Secrets and Kueue LocalQueues."""

SECRET_NAME_MAX = 253

QUEUE_NAME_MAX = 63
"""A LocalQueue name is also the value of the `kueue.x-k8s.io/queue-name` label."""

SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]{1,253}$"
"""A key inside a Secret's data."""

DEFAULT_TEACHER_SECRET_KEY = "api-key"

CPU_QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$"
"""A CPU amount as Kubernetes writes it: cores (`1`, `0.5`) or millicores (`500m`)."""

MEMORY_QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?)?$"
"""A memory amount as Kubernetes writes it: bytes, or with a suffix (`2Gi`, `512Mi`, `4G`)."""

TOKEN_AUTH_MIN_RAY = (2, 52)
"""Ray's token authentication appeared in Ray 2.52; KubeRay refuses `authOptions` below it."""


@dataclass(frozen=True)
class QuantityKind:
    """What a resource setting holds: its pattern, and an example for the error message."""

    what: str
    pattern: str
    example: str


CPU = QuantityKind("a CPU amount", CPU_QUANTITY_PATTERN, "1, 0.5 or 500m")
MEMORY = QuantityKind("a memory amount", MEMORY_QUANTITY_PATTERN, "2Gi or 512Mi")


def cpu_millicores(quantity: str) -> int:
    """Millicores of a CPU amount that matches CPU_QUANTITY_PATTERN."""
    if quantity.endswith("m"):
        return int(quantity[:-1])
    return math.ceil(float(quantity) * 1000)


class SettingsError(ValueError):
    """An environment variable the operator cannot use; the message names it."""


@dataclass(frozen=True)
class OperatorSettings:
    """Per-installation settings; `from_env` reads each from a `DISTILLRUN_*` variable, except
    `extra_labels`, which has none. The Ray pods' settings share one name across the chart, the
    variable and the field: `jobs.headCpu`, `DISTILLRUN_HEAD_CPU`, `head_cpu`."""

    jobs_image: str = "ghcr.io/distillrun/distillrun-jobs:0.1.0"
    """Image of every Ray head and worker: distillrun with its `jobs` extra (Ray, torch)."""

    ray_version: str = "2.60.0"
    """The Ray version inside `jobs_image`; KubeRay uses it to pick compatible start flags."""

    default_artifacts_uri: str | None = None
    """Store for runs whose spec names none (`spec.artifacts.uri` wins when set)."""

    default_queue_name: str | None = None
    """Kueue LocalQueue of the RayJobs of runs whose spec names none
    (`spec.scheduling.queueName` wins when set); None: such runs are not queued."""

    default_teacher_secret: SecretKeyRef | None = None
    """Secret (in the run's namespace) and key of the teacher API key for anthropic and
    openai-compatible runs whose spec has no `teacher.apiKeySecretRef`, so a team stores its key
    once instead of naming it in every run; None: such runs must name one."""

    resync_interval_s: float = 30.0
    """Period of the level-based resync that recomputes every run's status from what exists, so
    a missed watch event or an operator that was down catches up."""

    max_attempts: int = 3
    """RayJobs a stage may use before the run fails: retryable failures (crashes, lost pods, a
    RayJob deleted by hand) start a new attempt until this many have been made."""

    hardware_profiles: frozenset[str] | None = None
    """Profiles this cluster can run (None: every profile the operator knows, the builtin ones
    and those in `DISTILLRUN_PROFILES_DIR`); a run asking for another is held `Ready=False`."""

    cpu_workers: int = 2
    """Ray workers for the CPU stages (generate, validate)."""

    cpu_worker_cpu: str = "1"
    """CPU request and limit of each CPU-stage worker (a Kubernetes quantity: `1`, `500m`);
    Ray is told the same (`num-cpus`, rounded up to whole CPUs, at least 1)."""

    cpu_worker_memory: str = "2Gi"
    """Memory request and limit of each CPU-stage worker."""

    head_cpu: str = "1"
    """CPU request and limit of every Ray head. The head runs the stage driver, not the work:
    it tells Ray it has no CPUs (`num-cpus: 0`), so no task is placed there. The defaults,
    a 1 CPU / 2 Gi head and two 1 CPU / 2 Gi workers, fit a 4-CPU node."""

    head_memory: str = "2Gi"
    """Memory request and limit of every Ray head (a Ray head with its dashboard uses about
    650 MB before the driver starts)."""

    sandbox_postgres_image: str = "docker.io/library/postgres:15"
    """Server image of the per-run SQL sandbox of postgres runs."""

    sandbox_mysql_image: str = "docker.io/library/mariadb:10.11"
    """Server image of the per-run SQL sandbox of mysql runs."""

    ray_ttl_seconds: int = 0
    """How long KubeRay keeps a finished stage's Ray cluster before deleting it. 0: at once,
    so the next stage's pods are not Pending behind a cluster that has nothing left to do; the
    driver's log stays in the RayJob's finished submitter pod (`kubectl logs job/<rayjob>`),
    which holds no CPU or memory."""

    ray_start_deadline_seconds: int = 1200
    """Seconds a stage's Ray cluster may take to start (pods scheduled, images pulled, Ray up,
    job submitted) before the stage fails with `PreRunningDeadlineExceeded` (KubeRay's
    `preRunningDeadlineSeconds`): a RayJob whose pods cannot be scheduled ends the run with a
    reason instead of waiting forever. Time queued in Kueue does not count. 0: no deadline."""

    ray_job_deadline_seconds: int = 0
    """Seconds a stage's RayJob may be active in all (KubeRay's `activeDeadlineSeconds`)
    before it fails with `DeadlineExceeded`. 0: no deadline (training can take days)."""

    ray_token_auth: bool = True
    """Ray token authentication (KubeRay's `authOptions.mode: token`, Ray 2.52 or later):
    KubeRay generates a token Secret per cluster and gives it to the Ray pods and the submitter,
    so a pod that reaches the head's dashboard or GCS port cannot submit code without it."""

    allow_file_store: bool = False
    """Accept `file://` artifact stores. Ray workers write their shards straight to the store,
    so `file://` works only where the operator and every Ray pod see one filesystem at the same
    path (a test that plays the pods' part in-process); a real cluster needs `s3://`, and a run
    naming `file://` is held `Ready=False` with `ArtifactsNotShared`."""

    workers: int = 64
    """Threads reconciling at once (kopf runs the sync handlers in a pool of this size); the
    work is mostly waiting for the apiserver (a pass is 2-6 requests in a row), so more threads
    than cores pays off: with 200 runs finishing a stage at once on 2 cores, the p50 from a
    RayJob's completion to the next one was about 3 s with 16, 2 s with 32 and 1.1 s with 64
    (`bench/operator_scale.py`)."""

    metrics_port: int = 9090
    """Port of the Prometheus `/metrics` endpoint; 0 turns it off."""

    extra_labels: Mapping[str, str] = field(default_factory=dict)
    """Labels added to every child (e.g. a team label for cost reports)."""
    jobs_pod_extras: PodExtras = field(default_factory=PodExtras)
    """Extra env, volumes and mounts of every RayJob pod (`operator.pod_extras`)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        """Settings from `DISTILLRUN_*` variables; unset ones keep their defaults."""
        env = os.environ if env is None else env
        defaults = cls()
        profiles = defaults.hardware_profiles
        if raw := env.get("DISTILLRUN_HARDWARE_PROFILES"):
            profiles = frozenset(p.strip() for p in raw.split(",") if p.strip())
            bad = sorted(p for p in profiles if not re.fullmatch(HARDWARE_PROFILE_PATTERN, p))
            if bad:
                raise SettingsError(
                    f"DISTILLRUN_HARDWARE_PROFILES: {', '.join(bad)} cannot be a profile name "
                    "(a builtin profile or custom-<name>)"
                )
        ray_version = env.get("DISTILLRUN_RAY_VERSION", defaults.ray_version)
        allow_file_store = _boolean(env, "DISTILLRUN_ALLOW_FILE_STORE", defaults.allow_file_store)
        try:
            jobs_pod_extras = PodExtras.from_env(env)
        except PodExtrasError as exc:
            raise SettingsError(str(exc)) from exc
        return cls(
            jobs_image=env.get("DISTILLRUN_JOBS_IMAGE", defaults.jobs_image),
            ray_version=ray_version,
            default_artifacts_uri=_artifacts_uri(env, allow_file_store),
            default_queue_name=_queue_name(env),
            default_teacher_secret=_teacher_secret(env),
            resync_interval_s=_number(
                env, "DISTILLRUN_RESYNC_SECONDS", defaults.resync_interval_s, positive=True
            ),
            max_attempts=_integer(env, "DISTILLRUN_MAX_ATTEMPTS", defaults.max_attempts, 1),
            hardware_profiles=profiles,
            cpu_workers=_integer(env, "DISTILLRUN_CPU_WORKERS", defaults.cpu_workers, 1),
            cpu_worker_cpu=_quantity(
                env, "DISTILLRUN_CPU_WORKER_CPU", defaults.cpu_worker_cpu, CPU
            ),
            cpu_worker_memory=_quantity(
                env, "DISTILLRUN_CPU_WORKER_MEMORY", defaults.cpu_worker_memory, MEMORY
            ),
            head_cpu=_quantity(env, "DISTILLRUN_HEAD_CPU", defaults.head_cpu, CPU),
            head_memory=_quantity(env, "DISTILLRUN_HEAD_MEMORY", defaults.head_memory, MEMORY),
            sandbox_postgres_image=env.get(
                "DISTILLRUN_SANDBOX_POSTGRES_IMAGE", defaults.sandbox_postgres_image
            ),
            sandbox_mysql_image=env.get(
                "DISTILLRUN_SANDBOX_MYSQL_IMAGE", defaults.sandbox_mysql_image
            ),
            ray_ttl_seconds=_integer(
                env, "DISTILLRUN_RAY_TTL_SECONDS", defaults.ray_ttl_seconds, 0
            ),
            ray_start_deadline_seconds=_integer(
                env, "DISTILLRUN_RAY_START_DEADLINE_SECONDS", defaults.ray_start_deadline_seconds, 0
            ),
            ray_job_deadline_seconds=_integer(
                env, "DISTILLRUN_RAY_JOB_DEADLINE_SECONDS", defaults.ray_job_deadline_seconds, 0
            ),
            ray_token_auth=_token_auth(env, ray_version),
            allow_file_store=allow_file_store,
            workers=_integer(env, "DISTILLRUN_WORKERS", defaults.workers, 1),
            metrics_port=_integer(
                env, "DISTILLRUN_METRICS_PORT", defaults.metrics_port, 0, maximum=65535
            ),
            jobs_pod_extras=jobs_pod_extras,
        )


def _quantity(env: Mapping[str, str], name: str, default: str, kind: QuantityKind) -> str:
    """A CPU or memory amount, refused here if Kubernetes would refuse it (every RayJob would
    be rejected) or if it is zero (no pod could run on it)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(kind.pattern, raw):
        raise SettingsError(f"{name}: {raw!r} is not {kind.what} (e.g. {kind.example})")
    if float(re.sub(r"[^0-9.]", "", raw)) == 0:
        raise SettingsError(f"{name}: must be greater than 0 (got {raw})")
    return raw


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise SettingsError(f"{name}: {raw!r} is not true or false")


def _token_auth(env: Mapping[str, str], ray_version: str) -> bool:
    """DISTILLRUN_RAY_TOKEN_AUTH, refused with a Ray version too old for it (or not a version):
    KubeRay would fail every RayJob's validation instead."""
    enabled = _boolean(env, "DISTILLRUN_RAY_TOKEN_AUTH", OperatorSettings.ray_token_auth)
    version = re.match(r"^(\d+)\.(\d+)\.\d+$", ray_version)
    if enabled and (version is None or (int(version[1]), int(version[2])) < TOKEN_AUTH_MIN_RAY):
        minimum = ".".join(map(str, TOKEN_AUTH_MIN_RAY))
        raise SettingsError(
            f"DISTILLRUN_RAY_TOKEN_AUTH: Ray token authentication needs Ray {minimum}.0 or "
            f"later, but DISTILLRUN_RAY_VERSION is {ray_version!r}; upgrade the jobs image or "
            "set DISTILLRUN_RAY_TOKEN_AUTH=false"
        )
    return enabled


def _artifacts_uri(env: Mapping[str, str], allow_file_store: bool) -> str | None:
    """DISTILLRUN_ARTIFACTS_URI; a `file://` default without DISTILLRUN_ALLOW_FILE_STORE would
    hold every run that relies on it, so it stops the operator at start instead."""
    uri = env.get("DISTILLRUN_ARTIFACTS_URI") or None
    if uri is not None and uri.startswith("file://") and not allow_file_store:
        raise SettingsError(
            f"DISTILLRUN_ARTIFACTS_URI: {uri} is a file:// store, which the Ray pods on other "
            "nodes cannot reach; use an s3:// store (or set DISTILLRUN_ALLOW_FILE_STORE=true "
            "where the operator and every Ray pod share that path)"
        )
    return uri


def _queue_name(env: Mapping[str, str]) -> str | None:
    """DISTILLRUN_QUEUE_NAME, checked here: a bad name would only show as every RayJob refused."""
    name = env.get("DISTILLRUN_QUEUE_NAME") or None
    if name is not None and not _dns_subdomain(name, QUEUE_NAME_MAX):
        raise SettingsError(
            f"DISTILLRUN_QUEUE_NAME: {name!r} cannot be a Kueue queue name (a DNS-1123 "
            f"subdomain: lowercase letters, digits, '-' and '.', at most {QUEUE_NAME_MAX})"
        )
    return name


def _teacher_secret(env: Mapping[str, str]) -> SecretKeyRef | None:
    """DISTILLRUN_TEACHER_SECRET_NAME and _KEY (default `api-key`); a key without a name is
    refused rather than ignored, since it shows a half-done configuration."""
    name = env.get("DISTILLRUN_TEACHER_SECRET_NAME") or None
    key = env.get("DISTILLRUN_TEACHER_SECRET_KEY") or None
    if name is None:
        if key is not None:
            raise SettingsError(
                "DISTILLRUN_TEACHER_SECRET_KEY: set without DISTILLRUN_TEACHER_SECRET_NAME"
            )
        return None
    if not _dns_subdomain(name, SECRET_NAME_MAX):
        raise SettingsError(
            f"DISTILLRUN_TEACHER_SECRET_NAME: {name!r} cannot be a Secret name (a DNS-1123 "
            f"subdomain: lowercase letters, digits, '-' and '.', at most {SECRET_NAME_MAX})"
        )
    key = key or DEFAULT_TEACHER_SECRET_KEY
    if not re.fullmatch(SECRET_KEY_PATTERN, key):
        raise SettingsError(
            f"DISTILLRUN_TEACHER_SECRET_KEY: {key!r} cannot be a Secret key (letters, digits, "
            "'-', '_' and '.', at most 253)"
        )
    return SecretKeyRef(name=name, key=key)


def _dns_subdomain(name: str, max_length: int) -> bool:
    return len(name) <= max_length and re.fullmatch(DNS_SUBDOMAIN_PATTERN, name) is not None


def _number(env: Mapping[str, str], name: str, default: float, *, positive: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name}: {raw!r} is not a number")
    if value < 0:
        raise SettingsError(f"{name}: must not be negative (got {raw})")
    if positive and value == 0:
        raise SettingsError(f"{name}: must be greater than 0 (got {raw})")
    return value


def _integer(
    env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    """A whole number within bounds, refused here rather than later (0 CPU workers would make
    RayJobs without workers; a port above 65535 would only fail when the server binds it)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        number = float(raw)  # Helm may render a large whole number as 1e+06
    except ValueError:
        number = math.nan
    if not number.is_integer():
        raise SettingsError(f"{name}: {raw!r} is not a whole number")
    value = int(number)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"at least {minimum}" if maximum is None else f"{minimum} to {maximum}"
        raise SettingsError(f"{name}: must be {bounds} (got {raw})")
    return value
