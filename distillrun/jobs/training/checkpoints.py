"""Training checkpoints in the artifact store, complete or not at all.

Every N optimizer steps the trainer writes a checkpoint directory (adapter or weights,
optimizer and scheduler state, per-rank RNG state, DeepSpeed shards, trainer state with the
loss history). Each node uploads what its processes wrote to
`train/checkpoints/step-<N>/`; once every node is done, rank 0 writes `_done.json` there,
listing the files and the training fingerprint. Only a checkpoint with that marker, the same
fingerprint and every listed file present counts, so a checkpoint cut short by a killed worker
or driver is never resumed from; it is deleted by the next attempt.

A restarted training (a Ray worker replaced, or the stage run again) resumes from the latest
complete checkpoint, so it loses at most `checkpointEverySteps` steps. Older checkpoints are
pruned once a newer one is complete, and all of them once the adapter is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillrun.store import Store, StoreError

PREFIX = "train/checkpoints/"
DONE = "_done.json"
KEEP = 2
"""Complete checkpoints kept: the newest, and one before it in case the newest is unreadable."""

_STEP_DIR = re.compile(r"^step-(\d+)$")


def prefix_for(step: int) -> str:
    return f"{PREFIX}step-{step:08d}/"


@dataclass(frozen=True)
class StoredCheckpoint:
    """A complete checkpoint in the store."""

    step: int
    prefix: str
    marker: dict[str, Any]


def _by_step(store: Store) -> dict[int, list[str]]:
    """Every key under the checkpoints prefix, grouped by the step directory it is in."""
    groups: dict[int, list[str]] = {}
    for key in store.list_keys(PREFIX):
        directory = key[len(PREFIX) :].split("/", 1)[0]
        match = _STEP_DIR.match(directory)
        if match is not None:
            groups.setdefault(int(match.group(1)), []).append(key)
    return groups


def _complete(
    store: Store, step: int, keys: list[str], fingerprint: str
) -> StoredCheckpoint | None:
    prefix = prefix_for(step)
    marker_key = prefix + DONE
    if marker_key not in keys:
        return None
    try:
        marker = store.get_json(marker_key)
    except StoreError:  # unreadable (corrupt, checksum mismatch): not a checkpoint to resume
        return None
    if not isinstance(marker, dict) or marker.get("fingerprint") != fingerprint:
        return None
    present = set(keys)
    if any(prefix + name not in present for name in marker.get("files", [])):
        return None
    return StoredCheckpoint(step=step, prefix=prefix, marker=marker)


def complete_checkpoints(store: Store, fingerprint: str) -> list[StoredCheckpoint]:
    """The complete checkpoints of the training with `fingerprint`, oldest first."""
    found = []
    for step, keys in sorted(_by_step(store).items()):
        checkpoint = _complete(store, step, keys, fingerprint)
        if checkpoint is not None:
            found.append(checkpoint)
    return found


def latest(store: Store, fingerprint: str) -> StoredCheckpoint | None:
    """The checkpoint to resume from, if there is one."""
    found = complete_checkpoints(store, fingerprint)
    return found[-1] if found else None


def _delete_step(store: Store, keys: list[str], step: int) -> None:
    marker = prefix_for(step) + DONE
    if marker in keys:
        store.delete(marker)  # first: a half-deleted checkpoint is never taken for complete
    for key in keys:
        if key != marker:
            store.delete(key)


def prune(store: Store, fingerprint: str, keep: int = KEEP) -> None:
    """Deletes incomplete checkpoints, checkpoints of other trainings, and all but the newest
    `keep` complete ones. Only call it while no checkpoint is being written."""
    groups = _by_step(store)
    kept = {c.step for c in complete_checkpoints(store, fingerprint)[-keep:]} if keep else set()
    for step, keys in groups.items():
        if step not in kept:
            _delete_step(store, keys, step)


def upload(store: Store, step: int, local_dir: Path) -> None:
    """Uploads the files one node wrote for the checkpoint at `step` (each file atomically;
    the checkpoint is not complete until `commit`)."""
    store.put_tree(prefix_for(step), local_dir)


def commit(store: Store, step: int, fingerprint: str, details: dict[str, Any]) -> None:
    """Marks the checkpoint at `step` complete: call once every node has uploaded."""
    prefix = prefix_for(step)
    files = [key[len(prefix) :] for key in store.list_keys(prefix) if not key.endswith(DONE)]
    store.put_json(
        prefix + DONE, {"step": step, "fingerprint": fingerprint, "files": files, **details}
    )


def download(store: Store, checkpoint: StoredCheckpoint, local_dir: Path) -> Path:
    """The checkpoint's files in `local_dir` (what `Trainer.train(resume_from_checkpoint=)`
    takes)."""
    store.get_tree(checkpoint.prefix, local_dir)
    (local_dir / DONE).unlink(missing_ok=True)
    return local_dir
