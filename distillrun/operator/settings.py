"""The operator's own settings: what the cluster offers and how children are shaped.

Per-run choices live in the DistillRun spec; these are per-installation (set by the Helm chart
through environment variables), so one team's operator can offer only the GPU pools it has.
Which namespaces are watched is kopf's own flag (`--namespace` or `--all-namespaces`).

Each setting has one name in three spellings, derived from its Helm value: the field is the
value's path in snake case with the dot as `_` (`jobs.rayTtlSeconds` is `jobs_ray_ttl_seconds`),
the variable is `DISTILLRUN_` and the field in capitals (`DISTILLRUN_JOBS_RAY_TTL_SECONDS`). A
field's first word is its Helm group when it names one (`HELM_GROUPS`); otherwise the value sits
at the top of the values (`hardware_profiles` is `hardwareProfiles`). Adding a setting is a
field here, its value in `helm/distillrun/values.yaml` (and its schema) and its variable in the
chart's Deployment; `tests/unit/chart` fails until all three agree.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from distillrun.api.settings import (
    ENV_PREFIX,
    RUNTIME_SETTINGS,
    Settings,
    SettingsError,
    refuse,
    whole_number,
)
from distillrun.api.spec import HARDWARE_PROFILE_PATTERN, SecretKeyRef
from distillrun.operator.pod_extras import (
    RESERVED_ENV,
    RESERVED_VOLUMES,
    KubeObjects,
    PodExtras,
    kube_objects,
)

__all__ = ["OperatorSettings", "SettingsError", "cpu_millicores", "helm_value"]

HELM_GROUPS = ("jobs", "artifacts", "scheduling", "teacher", "sandbox", "operator", "metrics")
"""The groups of the chart's values that hold operator settings."""

DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A DNS-1123 subdomain: the names of Secrets and Kueue LocalQueues."""

SECRET_NAME_MAX = 253

QUEUE_NAME_MAX = 63
"""A LocalQueue name is also the value of the `kueue.x-k8s.io/queue-name` label."""

SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]{1,253}$"
"""A key inside a Secret's data."""

LABEL_NAME_PATTERN = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"
"""A label value, or the name part of a label key (at most 63 characters either way)."""

LABEL_NAME_MAX = 63

DEFAULT_TEACHER_SECRET_KEY = "api-key"

CPU_QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$"
"""A CPU amount as Kubernetes writes it: cores (`1`, `0.5`) or millicores (`500m`)."""

MEMORY_QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?)?$"
"""A memory amount as Kubernetes writes it: bytes, or with a suffix (`2Gi`, `512Mi`, `4G`)."""

TOKEN_AUTH_MIN_RAY = (2, 52)
"""Ray's token authentication appeared in Ray 2.52; KubeRay refuses `authOptions` below it."""


def helm_value(field: str) -> str:
    """The Helm value of an operator setting's field (`jobs_head_cpu` is `jobs.headCpu`)."""
    first, *rest = field.split("_")
    if first in HELM_GROUPS and rest:
        return f"{first}.{rest[0]}{''.join(w.title() for w in rest[1:])}"
    return first + "".join(w.title() for w in rest)


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


def _quantity(kind: QuantityKind) -> Callable[[object], str]:
    """A CPU or memory amount, refused at start if Kubernetes would refuse it (every RayJob
    would be rejected) or if it is zero (no pod could run on it)."""

    def validate(raw: object) -> str:
        text = str(raw)
        if not re.fullmatch(kind.pattern, text):
            raise refuse(f"{text!r} is not {kind.what} (e.g. {kind.example})")
        if float(re.sub(r"[^0-9.]", "", text)) == 0:
            raise refuse(f"must be greater than 0 (got {text})")
        return text

    return validate


def _boolean(raw: object) -> bool:
    """`true` or `false` in any case; the looser spellings pydantic takes (`yes`, `1`) are
    refused, so a typo is not read as a choice."""
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("true", "false"):
        return str(raw).lower() == "true"
    raise refuse(f"{raw!r} is not true or false")


def _positive_seconds(raw: object) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise refuse(f"{raw!r} is not a number")
    if value < 0:
        raise refuse(f"must not be negative (got {raw})")
    if value == 0:
        raise refuse(f"must be greater than 0 (got {raw})")
    return value


def _profiles(raw: object) -> frozenset[str] | None:
    """A comma-separated list (as the chart joins `hardwareProfiles`) or a set of names."""
    if raw is None:
        return None
    names = raw.split(",") if isinstance(raw, str) else list(raw)  # type: ignore[call-overload]
    profiles = frozenset(str(p).strip() for p in names if str(p).strip())
    bad = sorted(p for p in profiles if not re.fullmatch(HARDWARE_PROFILE_PATTERN, p))
    if bad:
        raise refuse(
            f"{', '.join(bad)} cannot be a profile name (a builtin profile or custom-<name>)"
        )
    return profiles


def _labels(raw: object) -> dict[str, str]:
    """A JSON object of Kubernetes labels (as the chart writes `extraLabels`), checked here: a
    bad label would only show as every child refused by the apiserver."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise refuse(f"{raw!r} is not a JSON object of labels") from None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise refuse(f"{raw!r} is not an object of label names to string values")
    for key, value in raw.items():
        prefix, _, name = key.rpartition("/")
        if not (
            _label_name(name)
            and name
            and (not prefix or _dns_subdomain(prefix, SECRET_NAME_MAX))
            and _label_name(value)
        ):
            raise refuse(f"{key}={value!r} is not a Kubernetes label")
    return dict(raw)


def _dns_name(what: str, max_length: int) -> Callable[[str], str]:
    """A validator of a DNS-1123 subdomain name, refused at start: a bad queue or Secret name
    would only show as every RayJob refused."""

    def validate(name: str) -> str:
        if not _dns_subdomain(name, max_length):
            raise refuse(
                f"{name!r} cannot be {what} (a DNS-1123 subdomain: lowercase letters, digits, "
                f"'-' and '.', at most {max_length})"
            )
        return name

    return validate


def _unknown(name: str, known: set[str]) -> str:
    """The warning about an unknown variable, with the settings whose name ends like it (an old
    name is its new one without the Helm group)."""
    suffix = "_" + name.removeprefix(ENV_PREFIX)
    alike = sorted(k for k in known if k.endswith(suffix))
    hint = f"; did you mean {' or '.join(alike)}?" if alike else ""
    return f"{name}: not a distillrun setting, ignored{hint}"


def _label_name(text: str) -> bool:
    return len(text) <= LABEL_NAME_MAX and re.fullmatch(LABEL_NAME_PATTERN, text) is not None


def _dns_subdomain(name: str, max_length: int) -> bool:
    return len(name) <= max_length and re.fullmatch(DNS_SUBDOMAIN_PATTERN, name) is not None


Cpu = Annotated[str, BeforeValidator(_quantity(CPU))]
Memory = Annotated[str, BeforeValidator(_quantity(MEMORY))]
Boolean = Annotated[bool, BeforeValidator(_boolean)]
Seconds = Annotated[int, BeforeValidator(whole_number(0))]
AtLeastOne = Annotated[int, BeforeValidator(whole_number(1))]
QueueName = Annotated[str, AfterValidator(_dns_name("a Kueue queue name", QUEUE_NAME_MAX))]
SecretName = Annotated[str, AfterValidator(_dns_name("a Secret name", SECRET_NAME_MAX))]


class OperatorSettings(Settings):
    """Per-installation settings, each from its `DISTILLRUN_*` variable (see the module's
    docstring for how the Helm value, the variable and the field are named)."""

    jobs_image: str = "ghcr.io/distillrun/distillrun-jobs:0.1.0"
    """Image of every Ray head and worker: distillrun with its `jobs` extra (Ray, torch)."""

    jobs_ray_version: str = "2.60.0"
    """The Ray version inside `jobs_image`; KubeRay uses it to pick compatible start flags."""

    jobs_max_attempts: AtLeastOne = 3
    """RayJobs a stage may use before the run fails: retryable failures (crashes, lost pods, a
    RayJob deleted by hand) start a new attempt until this many have been made."""

    jobs_cpu_workers: AtLeastOne = 2
    """Ray workers for the CPU stages (generate, validate)."""

    jobs_cpu_worker_cpu: Cpu = "1"
    """CPU request and limit of each CPU-stage worker (a Kubernetes quantity: `1`, `500m`);
    Ray is told the same (`num-cpus`, rounded up to whole CPUs, at least 1)."""

    jobs_cpu_worker_memory: Memory = "2Gi"
    """Memory request and limit of each CPU-stage worker."""

    jobs_head_cpu: Cpu = "1"
    """CPU request and limit of every Ray head. The head runs the stage driver, not the work:
    it tells Ray it has no CPUs (`num-cpus: 0`), so no task is placed there. The defaults,
    a 1 CPU / 2 Gi head and two 1 CPU / 2 Gi workers, fit a 4-CPU node."""

    jobs_head_memory: Memory = "2Gi"
    """Memory request and limit of every Ray head (a Ray head with its dashboard uses about
    650 MB before the driver starts)."""

    jobs_ray_ttl_seconds: Seconds = 0
    """How long KubeRay keeps a finished stage's Ray cluster before deleting it. 0: at once,
    so the next stage's pods are not Pending behind a cluster that has nothing left to do; the
    driver's log stays in the RayJob's finished submitter pod (`kubectl logs job/<rayjob>`),
    which holds no CPU or memory."""

    jobs_ray_start_deadline_seconds: Seconds = 1200
    """Seconds a stage's Ray cluster may take to start (pods scheduled, images pulled, Ray up,
    job submitted) before the stage fails with `PreRunningDeadlineExceeded` (KubeRay's
    `preRunningDeadlineSeconds`): a RayJob whose pods cannot be scheduled ends the run with a
    reason instead of waiting forever. Time queued in Kueue does not count. 0: no deadline."""

    jobs_ray_job_deadline_seconds: Seconds = 0
    """Seconds a stage's RayJob may be active in all (KubeRay's `activeDeadlineSeconds`)
    before it fails with `DeadlineExceeded`. 0: no deadline (training can take days)."""

    jobs_ray_token_auth: Boolean = Field(default=True, validate_default=True)
    """Ray token authentication (KubeRay's `authOptions.mode: token`, Ray 2.52 or later):
    KubeRay generates a token Secret per cluster and gives it to the Ray pods and the submitter,
    so a pod that reaches the head's dashboard or GCS port cannot submit code without it."""

    artifacts_allow_file_store: Boolean = False
    """Accept `file://` artifact stores. Ray workers write their shards straight to the store,
    so `file://` works only where the operator and every Ray pod see one filesystem at the same
    path (a test that plays the pods' part in-process); a real cluster needs `s3://`, and a run
    naming `file://` is held `Ready=False` with `ArtifactsNotShared`."""

    artifacts_uri: str | None = None
    """Store for runs whose spec names none (`spec.artifacts.uri` wins when set)."""

    scheduling_queue_name: QueueName | None = None
    """Kueue LocalQueue of the RayJobs of runs whose spec names none
    (`spec.scheduling.queueName` wins when set); None: such runs are not queued."""

    teacher_secret_name: SecretName | None = None
    """Secret (in the run's namespace) of the teacher API key for anthropic and
    openai-compatible runs whose spec has no `teacher.apiKeySecretRef`, so a team stores its key
    once instead of naming it in every run; None: such runs must name one."""

    teacher_secret_key: str = DEFAULT_TEACHER_SECRET_KEY
    """Key of that Secret holding the API key; refused when set without the Secret's name."""

    hardware_profiles: Annotated[frozenset[str] | None, NoDecode, BeforeValidator(_profiles)] = None
    """Profiles this cluster can run (None: every profile the operator knows, the builtin ones
    and those in `DISTILLRUN_PROFILES_DIR`); a run asking for another is held `Ready=False`."""

    extra_labels: Annotated[dict[str, str], NoDecode, BeforeValidator(_labels)] = Field(
        default_factory=dict
    )
    """Labels added to every child (e.g. a team label for cost reports)."""

    jobs_extra_env: Annotated[
        KubeObjects, NoDecode, BeforeValidator(kube_objects("name", reserved=RESERVED_ENV))
    ] = ()
    """Kubernetes EnvVars added to every Ray head, worker and submitter pod (e.g. an
    S3-compatible endpoint, `AWS_ENDPOINT_URL`); see `operator.pod_extras`."""

    jobs_extra_volumes: Annotated[
        KubeObjects, NoDecode, BeforeValidator(kube_objects("name", reserved=RESERVED_VOLUMES))
    ] = ()
    """Kubernetes Volumes added to every jobs pod (a CA bundle, a Python environment)."""

    jobs_extra_volume_mounts: Annotated[
        KubeObjects, NoDecode, BeforeValidator(kube_objects("name", "mountPath"))
    ] = ()
    """Kubernetes VolumeMounts of those volumes in every jobs pod's container."""

    sandbox_postgres_image: str = "docker.io/library/postgres:15"
    """Server image of the per-run SQL sandbox of postgres runs."""

    sandbox_mysql_image: str = "docker.io/library/mariadb:10.11"
    """Server image of the per-run SQL sandbox of mysql runs."""

    operator_resync_seconds: Annotated[float, BeforeValidator(_positive_seconds)] = 30.0
    """Period of the level-based resync that recomputes every run's status from what exists, so
    a missed watch event or an operator that was down catches up."""

    operator_workers: AtLeastOne = 64
    """Threads reconciling at once (kopf runs the sync handlers in a pool of this size); the
    work is mostly waiting for the apiserver (a pass is 2-6 requests in a row), so more threads
    than cores pays off: with 200 runs finishing a stage at once on 2 cores, the p50 from a
    RayJob's completion to the next one was about 3 s with 16, 2 s with 32 and 1.1 s with 64
    (`bench/operator_scale.py`)."""

    metrics_port: Annotated[int, BeforeValidator(whole_number(0, maximum=65535))] = 9090
    """Port of the Prometheus `/metrics` endpoint; 0 turns it off."""

    @classmethod
    def describe(cls, field: str) -> str:
        return f"{cls.env_name(field)} (Helm value {helm_value(field)})"

    @classmethod
    def unknown_variables(cls, env: Mapping[str, str] | None = None) -> list[str]:
        """A warning for each `DISTILLRUN_*` variable of `env` (default: the process's) that no
        settings model defines: a typo, or a name from before the variables followed the Helm
        values (`..._HEAD_CPU` is now `DISTILLRUN_JOBS_HEAD_CPU`), whose value is
        ignored. Warned about rather than refused, since test and build tools have `DISTILLRUN_`
        variables of their own."""
        env = os.environ if env is None else env
        known = {m.env_name(f) for m in (cls, *RUNTIME_SETTINGS) for f in m.model_fields}
        unknown = sorted(n for n in env if n.startswith(ENV_PREFIX) and n not in known)
        return [_unknown(name, known) for name in unknown]

    @property
    def teacher_secret(self) -> SecretKeyRef | None:
        """The default teacher Secret and key, when a Secret is named."""
        if self.teacher_secret_name is None:
            return None
        return SecretKeyRef(name=self.teacher_secret_name, key=self.teacher_secret_key)

    @field_validator("jobs_ray_token_auth")
    @classmethod
    def _token_auth_needs_a_recent_ray(cls, enabled: bool, info: ValidationInfo) -> bool:
        """Refused with a Ray version too old for it (or not a version): KubeRay would fail
        every RayJob's validation instead."""
        ray_version = str(info.data.get("jobs_ray_version", ""))
        version = re.match(r"^(\d+)\.(\d+)\.\d+$", ray_version)
        if enabled and (version is None or (int(version[1]), int(version[2])) < TOKEN_AUTH_MIN_RAY):
            minimum = ".".join(map(str, TOKEN_AUTH_MIN_RAY))
            raise refuse(
                f"Ray token authentication needs Ray {minimum}.0 or later, but "
                f"{cls.describe('jobs_ray_version')} is {ray_version!r}; upgrade the jobs image "
                f"or set {cls.env_name('jobs_ray_token_auth')}=false"
            )
        return enabled

    @field_validator("artifacts_uri")
    @classmethod
    def _file_store_needs_allowing(cls, uri: str | None, info: ValidationInfo) -> str | None:
        """A `file://` default without `artifacts_allow_file_store` would hold every run that
        relies on it, so it stops the operator at start instead."""
        allowed = info.data.get("artifacts_allow_file_store", False)
        if uri is not None and uri.startswith("file://") and not allowed:
            raise refuse(
                f"{uri} is a file:// store, which the Ray pods on other nodes cannot reach; use "
                f"an s3:// store (or set {cls.env_name('artifacts_allow_file_store')}=true "
                "where the operator and every Ray pod share that path)"
            )
        return uri

    @field_validator("teacher_secret_key")
    @classmethod
    def _secret_key(cls, key: str) -> str:
        if not re.fullmatch(SECRET_KEY_PATTERN, key):
            raise refuse(
                f"{key!r} cannot be a Secret key (letters, digits, '-', '_' and '.', at most 253)"
            )
        return key

    @property
    def jobs_pod_extras(self) -> PodExtras:
        """What every jobs pod gets in addition to what the stages need."""
        return PodExtras(
            env=self.jobs_extra_env,
            volumes=self.jobs_extra_volumes,
            volume_mounts=self.jobs_extra_volume_mounts,
        )

    @model_validator(mode="after")
    def _mounts_name_extra_volumes(self) -> Self:
        unmounted = self.jobs_pod_extras.unmounted()
        if unmounted:
            raise refuse(
                f"{self.describe('jobs_extra_volume_mounts')}: {', '.join(unmounted)} names no "
                f"volume of {self.describe('jobs_extra_volumes')}"
            )
        return self

    @model_validator(mode="after")
    def _no_secret_key_without_a_name(self) -> Self:
        """A key given without a Secret name is refused rather than ignored, since it shows a
        half-done configuration."""
        if "teacher_secret_key" in self.model_fields_set and self.teacher_secret_name is None:
            raise refuse(
                f"{self.describe('teacher_secret_key')}: set without "
                f"{self.describe('teacher_secret_name')}"
            )
        return self
