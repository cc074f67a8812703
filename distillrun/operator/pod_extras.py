"""Extra environment variables, volumes and volume mounts for every pod of a stage's RayJob
(Ray head, workers and the submitter): what a cluster needs to complete the jobs image, e.g. an
S3-compatible endpoint (`AWS_ENDPOINT_URL`), a CA bundle from a ConfigMap, or a Python
environment mounted read-only from the node (the real-pod test bed runs the project's `.venv`
on a bare Debian image this way). Set by the Helm chart's `jobs.extraEnv`, `jobs.extraVolumes`
and `jobs.extraVolumeMounts` (the operator's `jobs_extra_*` settings, JSON lists in
`DISTILLRUN_JOBS_EXTRA_*`).

Each item is a Kubernetes object of that kind (an `EnvVar`, a `Volume`, a `VolumeMount`), used
as written; only what would make every RayJob invalid is refused: an item without a name, a
mount without a path or naming no extra volume, and a name the stages use themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from distillrun.api.settings import refuse

RESERVED_VOLUMES = frozenset({"distillrun-config", "dshm", "aws-credentials"})
"""Volumes every stage pod already has (builders.rayjob)."""
RESERVED_ENV = frozenset({"PYTHONUNBUFFERED", "AWS_SHARED_CREDENTIALS_FILE"})
"""Variables the stages set themselves."""

KubeObjects = tuple[Mapping[str, Any], ...]


def kube_objects(
    *required: str, reserved: frozenset[str] = frozenset()
) -> Callable[[object], KubeObjects]:
    """A validator of a JSON list (or a list) of objects, each with the `required` string fields,
    no `name` given twice and none of the `reserved` names."""

    def validate(raw: object) -> KubeObjects:
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError as exc:
                raise refuse(f"not JSON ({exc})") from None
        if not isinstance(raw, list | tuple):
            raise refuse("must be a JSON list of objects")
        for index, item in enumerate(raw):
            if not isinstance(item, Mapping):
                raise refuse(f"item {index} must be an object")
            for key in required:
                if not isinstance(item.get(key), str) or not item[key]:
                    raise refuse(f"item {index} needs a {key!r} string")
        names = [item["name"] for item in raw]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise refuse(f"{', '.join(repeated)} given more than once")
        clashes = sorted(n for n in names if n in reserved)
        if clashes:
            raise refuse(f"{', '.join(clashes)} is set by the operator itself")
        return tuple(raw)

    return validate


@dataclass(frozen=True)
class PodExtras:
    """What every jobs pod gets in addition (each list in the order written)."""

    env: KubeObjects = ()
    volumes: KubeObjects = ()
    volume_mounts: KubeObjects = ()

    def unmounted(self) -> list[str]:
        """Names of the mounts that name no extra volume."""
        volumes = {v["name"] for v in self.volumes}
        return [m["name"] for m in self.volume_mounts if m["name"] not in volumes]

    def env_list(self) -> list[dict[str, Any]]:
        """The extra variables, copied (manifests share no objects)."""
        return _copies(self.env)

    def volume_list(self) -> list[dict[str, Any]]:
        return _copies(self.volumes)

    def mount_list(self) -> list[dict[str, Any]]:
        return _copies(self.volume_mounts)


def _copies(items: KubeObjects) -> list[dict[str, Any]]:
    return [json.loads(json.dumps(item)) for item in items]
