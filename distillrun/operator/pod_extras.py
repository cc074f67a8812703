"""Extra environment variables, volumes and volume mounts for every pod of a stage's RayJob
(Ray head, workers and the submitter): what a cluster needs to complete the jobs image, e.g. an
S3-compatible endpoint (`AWS_ENDPOINT_URL`), a CA bundle from a ConfigMap, or a Python
environment mounted read-only from the node (the real-pod test bed runs the project's `.venv`
on a bare Debian image this way). Set by the Helm chart's `jobs.extraEnv`, `jobs.extraVolumes`
and `jobs.extraVolumeMounts`, passed to the operator as JSON lists in `DISTILLRUN_JOBS_EXTRA_ENV`,
`DISTILLRUN_JOBS_EXTRA_VOLUMES` and `DISTILLRUN_JOBS_EXTRA_VOLUME_MOUNTS`.

Each item is a Kubernetes object of that kind (an `EnvVar`, a `Volume`, a `VolumeMount`), used
as written; only what would make every RayJob invalid is refused here: an item without a name,
a mount without a path or naming no extra volume, and a name the stages use themselves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RESERVED_VOLUMES = frozenset({"distillrun-config", "dshm", "aws-credentials"})
"""Volumes every stage pod already has (builders.rayjob)."""
RESERVED_ENV = frozenset({"PYTHONUNBUFFERED", "AWS_SHARED_CREDENTIALS_FILE"})
"""Variables the stages set themselves."""


class PodExtrasError(ValueError):
    """An extra the pods cannot use; the message names the variable and the item."""


@dataclass(frozen=True)
class PodExtras:
    """What every jobs pod gets in addition (each list in the order written)."""

    env: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    volumes: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    volume_mounts: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PodExtras:
        extras = cls(
            env=_objects(env, "DISTILLRUN_JOBS_EXTRA_ENV", "name"),
            volumes=_objects(env, "DISTILLRUN_JOBS_EXTRA_VOLUMES", "name"),
            volume_mounts=_objects(env, "DISTILLRUN_JOBS_EXTRA_VOLUME_MOUNTS", "name", "mountPath"),
        )
        _refuse_repeated_or_reserved(extras.env, "DISTILLRUN_JOBS_EXTRA_ENV", RESERVED_ENV)
        _refuse_repeated_or_reserved(
            extras.volumes, "DISTILLRUN_JOBS_EXTRA_VOLUMES", RESERVED_VOLUMES
        )
        volumes = {v["name"] for v in extras.volumes}
        for mount in extras.volume_mounts:
            if mount["name"] not in volumes:
                raise PodExtrasError(
                    f"DISTILLRUN_JOBS_EXTRA_VOLUME_MOUNTS: {mount['name']!r} names no volume of "
                    "DISTILLRUN_JOBS_EXTRA_VOLUMES"
                )
        return extras

    def env_list(self) -> list[dict[str, Any]]:
        """The extra variables, copied (manifests share no objects)."""
        return [json.loads(json.dumps(item)) for item in self.env]

    def volume_list(self) -> list[dict[str, Any]]:
        return [json.loads(json.dumps(item)) for item in self.volumes]

    def mount_list(self) -> list[dict[str, Any]]:
        return [json.loads(json.dumps(item)) for item in self.volume_mounts]


def _objects(env: Mapping[str, str], name: str, *required: str) -> tuple[Mapping[str, Any], ...]:
    """A JSON list of objects, each with the `required` string fields, from variable `name`."""
    raw = env.get(name)
    if not raw:
        return ()
    try:
        items = json.loads(raw)
    except ValueError as exc:
        raise PodExtrasError(f"{name}: not JSON ({exc})") from exc
    if not isinstance(items, list):
        raise PodExtrasError(f"{name}: must be a JSON list of objects")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PodExtrasError(f"{name}[{index}]: must be an object")
        for key in required:
            if not isinstance(item.get(key), str) or not item[key]:
                raise PodExtrasError(f"{name}[{index}]: needs a {key!r} string")
    return tuple(items)


def _refuse_repeated_or_reserved(
    items: tuple[Mapping[str, Any], ...], name: str, reserved: frozenset[str]
) -> None:
    names = [item["name"] for item in items]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise PodExtrasError(f"{name}: {', '.join(repeated)} given more than once")
    clashes = sorted(item["name"] for item in items if item["name"] in reserved)
    if clashes:
        raise PodExtrasError(f"{name}: {', '.join(clashes)} is set by the operator itself")
