"""What every child of a DistillRun carries: a deterministic name, the labels the operator finds
it by, and the owner reference that lets Kubernetes garbage-collect it with its run."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from distillrun.api.constants import API_VERSION, GROUP, KIND
from distillrun.api.resource import DistillRun
from distillrun.api.status import StageName

RAYJOB_NAME_MAX = 47
"""KubeRay refuses longer RayJob names (`MaxRayJobNameLength`: its RayCluster gets a 6-character
suffix and must stay within 53), so every child name is cut to this and stays unique by hash."""

MANAGED_BY = "distillrun-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_RUN = f"{GROUP}/run"
LABEL_RUN_UID = f"{GROUP}/run-uid"
LABEL_STAGE = f"{GROUP}/stage"
LABEL_ATTEMPT = f"{GROUP}/attempt"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def child_name(run_name: str, stage: StageName, attempt: int) -> str:
    """`<run>-<stage>-<attempt>`, or `<run prefix>-<hash>-<stage>-<attempt>` when that would be
    longer than KubeRay allows; the same inputs always give the same name, so a second create
    after a restart meets the first one (409) instead of making a twin."""
    suffix = f"-{stage}-{attempt}"
    name = f"{run_name}{suffix}"
    if len(name) <= RAYJOB_NAME_MAX:
        return name
    digest = hashlib.sha256(run_name.encode()).hexdigest()[:8]
    keep = RAYJOB_NAME_MAX - len(suffix) - len(digest) - 1
    return f"{run_name[:keep].rstrip('-')}-{digest}{suffix}"


def run_selector(uid: str) -> str:
    """Label selector of every child of the run with this uid."""
    return f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_RUN_UID}={uid}"


def child_labels(
    run: DistillRun, stage: StageName, attempt: int, extra: Mapping[str, str]
) -> dict[str, str]:
    """Labels of a stage child; the uid label makes a re-created run with the same name never
    adopt its predecessor's children."""
    uid = run.metadata.uid or ""
    return {
        **extra,
        LABEL_NAME: "distillrun",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: str(stage),
        LABEL_RUN: run.metadata.name,
        LABEL_RUN_UID: uid,
        LABEL_STAGE: str(stage),
        LABEL_ATTEMPT: str(attempt),
    }


def owner_reference(run: DistillRun) -> dict[str, Any]:
    """The run as the controlling owner: deleting the run garbage-collects the child."""
    if not run.metadata.uid:
        raise ValueError("a run needs metadata.uid (set by the apiserver) to own children")
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": run.metadata.name,
        "uid": run.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(
    run: DistillRun, stage: StageName, attempt: int, extra_labels: Mapping[str, str]
) -> dict[str, Any]:
    """Name, namespace, labels and owner of a stage child."""
    return {
        "name": child_name(run.metadata.name, stage, attempt),
        "namespace": run.metadata.namespace,
        "labels": child_labels(run, stage, attempt, extra_labels),
        "ownerReferences": [owner_reference(run)],
    }
