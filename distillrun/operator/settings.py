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

DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A DNS-1123 subdomain: the names of Secrets and Kueue LocalQueues."""

SECRET_NAME_MAX = 253

QUEUE_NAME_MAX = 63
"""A LocalQueue name is also the value of the `kueue.x-k8s.io/queue-name` label."""

SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]{1,253}$"
"""A key inside a Secret's data."""

DEFAULT_TEACHER_SECRET_KEY = "api-key"


class SettingsError(ValueError):
    """An environment variable the operator cannot use; the message names it."""


@dataclass(frozen=True)
class OperatorSettings:
    """Per-installation settings; `from_env` reads most from `DISTILLRUN_*` variables (the Ray
    pods' CPU and memory sizes and `extra_labels` have none: they keep these defaults)."""

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

    cpu_worker_cpu: str = "2"
    """CPU request and limit of each CPU-stage worker."""

    cpu_worker_memory: str = "4Gi"
    """Memory request and limit of each CPU-stage worker."""

    head_cpu: str = "1"
    """CPU of every Ray head (it runs the stage driver, not the work)."""

    head_memory: str = "4Gi"
    """Memory of every Ray head."""

    sandbox_postgres_image: str = "docker.io/library/postgres:15"
    """Server image of the per-run SQL sandbox of postgres runs."""

    sandbox_mysql_image: str = "docker.io/library/mariadb:10.11"
    """Server image of the per-run SQL sandbox of mysql runs."""

    ttl_seconds_after_finished: int = 300
    """How long KubeRay keeps a finished stage's Ray cluster (for logs) before deleting it."""

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
        return cls(
            jobs_image=env.get("DISTILLRUN_JOBS_IMAGE", defaults.jobs_image),
            ray_version=env.get("DISTILLRUN_RAY_VERSION", defaults.ray_version),
            default_artifacts_uri=env.get("DISTILLRUN_ARTIFACTS_URI") or None,
            default_queue_name=_queue_name(env),
            default_teacher_secret=_teacher_secret(env),
            resync_interval_s=_number(
                env, "DISTILLRUN_RESYNC_SECONDS", defaults.resync_interval_s, positive=True
            ),
            max_attempts=_integer(env, "DISTILLRUN_MAX_ATTEMPTS", defaults.max_attempts, 1),
            hardware_profiles=profiles,
            cpu_workers=_integer(env, "DISTILLRUN_CPU_WORKERS", defaults.cpu_workers, 1),
            sandbox_postgres_image=env.get(
                "DISTILLRUN_SANDBOX_POSTGRES_IMAGE", defaults.sandbox_postgres_image
            ),
            sandbox_mysql_image=env.get(
                "DISTILLRUN_SANDBOX_MYSQL_IMAGE", defaults.sandbox_mysql_image
            ),
            ttl_seconds_after_finished=_integer(
                env, "DISTILLRUN_RAY_TTL_SECONDS", defaults.ttl_seconds_after_finished, 0
            ),
            workers=_integer(env, "DISTILLRUN_WORKERS", defaults.workers, 1),
            metrics_port=_integer(
                env, "DISTILLRUN_METRICS_PORT", defaults.metrics_port, 0, maximum=65535
            ),
        )


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
