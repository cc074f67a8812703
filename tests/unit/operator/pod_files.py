"""What a pod would see of its ConfigMap volumes, written to a directory the way the kubelet
mounts them, so a test can read a pod's files with the code the pod runs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def mount_config_maps(
    template: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, Any]], root: Path
) -> Path:
    """Writes under `root` the files of every ConfigMap volume the first container of the pod
    `template` mounts: each of the volume's `items` (every key when it has none) at its path
    under the mount's path. `config_maps` are ConfigMaps by name. Returns `root`."""
    spec = template["spec"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for mount in spec["containers"][0]["volumeMounts"]:
        source = volumes[mount["name"]].get("configMap")
        if source is None:
            continue
        data = config_maps[source["name"]]["data"]
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            target = root / mount["mountPath"].lstrip("/") / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
    return root


def env_of(template: Mapping[str, Any]) -> dict[str, str]:
    """The plain (`value`) environment variables of the pod's first container."""
    container = template["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def in_pod(root: Path, path: str) -> Path:
    """Where the pod's absolute `path` lies under `root`."""
    return root / path.lstrip("/")
