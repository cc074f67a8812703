"""Runs on the bed: the manifest, waiting for the end while watching, and RELIABILITY.md's
invariants checked on what the run left in the cluster and in S3."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distillrun.api.layout import ACCEPTED_KEY, MANIFEST_KEY, SHARDS_PREFIX, shard_object_key
from distillrun.api.resource import DistillRun
from distillrun.api.status import STAGE_ORDER, StageName
from distillrun.operator.builders.common import run_selector
from distillrun.operator.builders.config import run_store_uri
from distillrun.operator.controller import rayjob_path
from distillrun.teacher.base import ShardOutput
from tests.e2e.stack import BUCKET, S3_SECRET, Team, s3_client
from tests.integration.helpers import condition, phase, run_manifest, wait_run

RUN_TIMEOUT_S = 1500.0
"""Four stages on a 2-core machine: each starts a Ray head and worker (about 30 s) and runs."""


def run_on_s3(name: str) -> dict[str, Any]:
    """The integration suite's small synthetic run, its artifacts in the bed's S3 bucket."""
    manifest: dict[str, Any] = run_manifest(name, artifacts=f"s3://{BUCKET}/runs")
    manifest["spec"]["artifacts"]["credentialsSecretRef"] = {
        "name": S3_SECRET,
        "key": "credentials",
    }
    return manifest


def wait_ended(
    team: Team, name: str, look: Callable[[], None] = lambda: None, timeout: float = RUN_TIMEOUT_S
) -> dict[str, Any]:
    """The run once it ended, Succeeded or Failed (`look()` is called on every poll until
    then); a run that is still going after `timeout` fails the test: a stall."""

    def ended(run: dict[str, Any]) -> bool:
        look()
        return phase(run) in ("Succeeded", "Failed")

    return wait_run(team.bed.kube, team.namespace, name, ended, "the run to end", timeout=timeout)


@dataclass
class RayJobWatch:
    """Every RayJob of the run seen while it went (they are deleted when their stage ends)."""

    team: Team
    run: DistillRun
    seen: set[str] = field(default_factory=set)

    def look(self) -> None:
        selector = run_selector(self.run.metadata.uid or "")
        for job in self.team.bed.kube.list(rayjob_path(self.team.namespace), selector):
            self.seen.add(job["metadata"]["name"])


def store_prefix(run: DistillRun) -> str:
    """The run's key prefix in `BUCKET`."""
    return run_store_uri(f"s3://{BUCKET}/runs", run).removeprefix(f"s3://{BUCKET}/")


def committed_shards(run: DistillRun) -> set[str]:
    """The keys of the generate shards in the bucket now."""
    prefix = f"{store_prefix(run)}/{SHARDS_PREFIX}"
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {
        o["Key"].removeprefix(prefix).removesuffix(".json")
        for page in pages
        for o in page.get("Contents", [])
    }


def shard_plan(run: DistillRun) -> list[str]:
    """The shard keys generate planned, in shard index order (its committed manifest)."""
    body = s3_client().get_object(Bucket=BUCKET, Key=f"{store_prefix(run)}/{MANIFEST_KEY}")
    plan: list[str] = json.loads(body["Body"].read())["plan"]
    return plan


def assert_invariants(
    run: DistillRun, ended: dict[str, Any], rayjobs: set[str], retried: set[StageName]
) -> None:
    """RELIABILITY.md's I1-I3 on the bucket (the bucket keeps versions, so a shard written
    twice shows) and I5-I6 on the cluster, for a run that Succeeded; only the stages in
    `retried` may have needed more than one attempt. I4 (no teacher call for a committed
    shard) is the teacher's side: the test that has one checks it."""
    name, status = run.metadata.name, ended["status"]
    # I6: the final condition and the generation it is about.
    succeeded = condition(ended, "Succeeded")
    assert succeeded is not None and succeeded["status"] == "True", json.dumps(status, indent=1)
    assert succeeded["reason"] == "Completed"
    assert status["observedGeneration"] == ended["metadata"]["generation"]
    # I5: one RayJob per (stage, attempt), and attempts only where a fault made one fail.
    for stage in STAGE_ORDER:
        attempts = status["stages"][stage]["attempts"]
        if stage not in retried:
            assert attempts == 1, f"{stage}: {attempts} attempts without a fault"
        wanted = {f"{name}-{stage}-{n}" for n in range(1, attempts + 1)}
        assert {j for j in rayjobs if j.startswith(f"{name}-{stage}-")} == wanted
    # I1-I3: every planned shard committed once, nothing else, each intact and readable.
    plan = shard_plan(run)
    assert committed_shards(run) == set(plan), "shards missing or outside the plan"
    s3, prefix = s3_client(), store_prefix(run)
    for key in plan:
        object_key = f"{prefix}/{shard_object_key(key)}"
        versions = s3.list_object_versions(Bucket=BUCKET, Prefix=object_key)
        assert len(versions.get("Versions", [])) == 1, f"shard {key} was written more than once"
        got = s3.get_object(Bucket=BUCKET, Key=object_key)
        body = got["Body"].read()
        assert got["ETag"].strip('"') == hashlib.md5(body).hexdigest()
        ShardOutput.model_validate_json(body)
    accepted = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{ACCEPTED_KEY}")["Body"].read()
    ids = [json.loads(line)["id"] for line in accepted.decode().splitlines() if line.strip()]
    assert ids and len(ids) == len(set(ids)), "duplicate record ids in the accepted dataset"
