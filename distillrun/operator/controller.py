"""Reads what exists, asks the planner what the run's status is, and makes it so.

One `reconcile(namespace, name)` serves every trigger (a change to the run, a RayJob event, the
periodic resync, the operator's start): it reads the run (or takes the copy a watch event
delivered, or the one its own last pass left: `known`) and its RayJobs fresh, plans, creates the
one child attempt the plan asks for (a 409 means it is already there), writes the status with
the resourceVersion it read (a 409 means someone changed the run meanwhile: read again, plan
again), and only then posts the Events, so a transition that was not recorded is not announced.
Calls for the same run are serialized by a lock; kopf runs these sync handlers in threads.

The controller also keeps the runs to resync (`watch`, `unwatch`, `watched`): the ones the watch
has shown alive, dropped once deleted. The resync itself is a thread of
`distillrun.operator.handlers`, not a kopf timer (which says why: nolar/kopf#1305).
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import kopf

from distillrun.api.conditions import ConditionReason, ConditionStatus, ConditionType
from distillrun.api.constants import GROUP, KIND, PLURAL, VERSION
from distillrun.api.errors import ManifestError
from distillrun.api.profiles import HardwareProfile, load_profiles, profile_files
from distillrun.api.resource import DistillRun, parse_run
from distillrun.api.status import Condition, DistillRunStatus, StageName
from distillrun.api.transitions import condition_of, with_condition
from distillrun.operator import planner, preflight
from distillrun.operator.builders.common import (
    KUEUE_QUEUE_LABEL,
    LABEL_ATTEMPT,
    LABEL_STAGE,
    run_selector,
)
from distillrun.operator.builders.config import run_store_uri, stage_config, stage_config_map
from distillrun.operator.builders.rayjob import stage_rayjob
from distillrun.operator.builders.sandbox import (
    SandboxImages,
    needs_server,
    sandbox_manifests,
    sandbox_name,
)
from distillrun.operator.errors import CONFLICT, is_retryable, mapped
from distillrun.operator.kube import ApiError, Kube, core_path, custom_path, namespaced_path
from distillrun.operator.metrics import Metrics
from distillrun.operator.outputs import StoreOutputs
from distillrun.operator.settings import OperatorSettings

MAX_CONFLICTS = 5
PLURALS = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
    "Deployment": "deployments",
    "NetworkPolicy": "networkpolicies",
    "RayJob": "rayjobs",
}
SANDBOX_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
)
"""The sandbox server's objects, in the order they are deleted (the server first)."""

Logger = logging.Logger | logging.LoggerAdapter[Any]
COMPONENT = "distillrun-operator"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_path(namespace: str, name: str = "") -> str:
    return custom_path(GROUP, VERSION, namespace, PLURAL, name)


def rayjob_path(namespace: str, name: str = "") -> str:
    return custom_path("ray.io", "v1", namespace, "rayjobs", name)


def manifest_path(manifest: dict[str, Any]) -> str:
    """The collection a child manifest is created in."""
    meta = manifest["metadata"]
    return namespaced_path(manifest["apiVersion"], meta["namespace"], PLURALS[manifest["kind"]])


class _NamespaceLookup:
    """`preflight.Lookup` over the apiserver; Secret values are read only to list their keys."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace

    def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.kube.get(core_path(self.namespace, plural, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def secret_keys(self, name: str) -> frozenset[str] | None:
        secret = self._get("secrets", name)
        if secret is None:
            return None
        return frozenset(secret.get("data") or {})

    def config_map_data(self, name: str) -> dict[str, str] | None:
        config_map = self._get("configmaps", name)
        if config_map is None:
            return None
        return dict(config_map.get("data") or {})


def observed_job(body: dict[str, Any]) -> planner.ObservedJob | None:
    """The planner's view of a RayJob, or None when its labels are not ours."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    try:
        stage = StageName(labels.get(LABEL_STAGE, ""))
        attempt = int(labels.get(LABEL_ATTEMPT, ""))
    except ValueError:
        return None
    status = body.get("status") or {}
    return planner.ObservedJob(
        name=str(meta.get("name", "")),
        stage=stage,
        attempt=attempt,
        deployment_status=str(status.get("jobDeploymentStatus") or ""),
        job_status=str(status.get("jobStatus") or ""),
        reason=str(status.get("reason") or ""),
        message=str(status.get("message") or ""),
        start_time=status.get("startTime"),
        end_time=status.get("endTime"),
        suspended=bool((body.get("spec") or {}).get("suspend")),
        queue=str(labels.get(KUEUE_QUEUE_LABEL, "")),
    )


class Controller:
    """Reconciles DistillRuns; one per operator process."""

    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        metrics: Metrics,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.profiles: Mapping[str, HardwareProfile] = load_profiles()
        self.profile_files: Mapping[str, str] = profile_files()
        """The files of the team's profiles directory, for the train stage's pods."""
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._generations: dict[str, int] = {}
        self._stopped: set[str] = set()
        """Runs whose children were stopped: a watch event queued before the deletion must
        not start a child again."""
        self._watched: dict[tuple[str, str], tuple[str, Logger]] = {}
        """Runs to resync, by namespace and name: their uid and the logger of their events."""
        self._known: dict[tuple[str, str], dict[str, Any]] = {}
        """Each run as this process last saw it, planned from it or wrote it, by namespace and
        name: see `known`."""
        self._locks_guard = threading.Lock()

    @contextmanager
    def _serialized(self, namespace: str, name: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault((namespace, name), threading.Lock())
        with lock:
            yield

    def reconcile(
        self,
        namespace: str,
        name: str,
        logger: Logger,
        seen: Mapping[str, Any] | None = None,
        created: bool = False,
    ) -> None:
        """Brings run `namespace/name` up to date with what exists. `seen` is the run as a
        watch event delivered it (or as `known` keeps it): the first pass plans from it instead
        of reading it again (a stale copy is harmless: children are adopted, not duplicated,
        and its status write meets a conflict, after which the run is read afresh). The resync
        passes none: it is the safety net for a missed event, so it reads the run.

        `created`: `seen` is from the watch event of the run's creation (an ADDED event, not
        the listing kopf starts with): a child of it can exist only if this process made one,
        so unless it did, the first pass plans with no RayJobs instead of listing them. A run
        that existed before this process started (children of a crashed process to adopt) comes
        from the listing, and a second pass (after a conflict) lists."""
        started = time.monotonic()
        outcome = "error"
        try:
            with self._serialized(namespace, name), mapped(f"reconciling {namespace}/{name}"):
                body = copy.deepcopy(dict(seen)) if seen is not None else None
                for _ in range(MAX_CONFLICTS):
                    if self._reconcile_once(namespace, name, logger, body, created):
                        outcome = "ok"
                        return
                    body, created = None, False
                outcome = "conflict"
                raise kopf.TemporaryError("the run kept changing while it was written", delay=1)
        finally:
            self.metrics.reconciles.labels(outcome=outcome).inc()
            self.metrics.reconcile_seconds.observe(time.monotonic() - started)

    def watch(self, namespace: str, name: str, uid: str, logger: Logger) -> None:
        """Resyncs run `namespace/name` (uid `uid`) from now on, logging to `logger`."""
        with self._locks_guard:
            self._watched[(namespace, name)] = (uid, logger)

    def unwatch(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Resyncs run `namespace/name` no more, and forgets its copy; with `uid`, only if it is
        still that run (a run deleted and created again under its name is watched again before
        the old one's DELETED event may arrive: kopf handles the events of different uids
        concurrently)."""
        with self._locks_guard:
            watched = self._watched.get((namespace, name))
            if watched is not None and uid in (None, watched[0]):
                del self._watched[(namespace, name)]
            known = self._known.get((namespace, name))
            if known is not None and uid in (None, known["metadata"].get("uid")):
                del self._known[(namespace, name)]

    def known(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """Run `namespace/name` as this process last saw it on the watch, planned from it or
        wrote it (the apiserver's answer to the status write), for a pass that a RayJob event
        triggers to plan from instead of reading the run again: one request less per pass.
        Like any `seen` copy it may be stale (a write whose event is still queued, an older
        event handled after a newer write); its status write then meets a conflict."""
        with self._locks_guard:
            return self._known.get((namespace, name))

    def seen_on_watch(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """The watch showed run `namespace/name` as `body`: it becomes the copy `known` keeps
        (kopf's own writes, such as its finalizer, are news to that copy), unless the copy is
        that version already (the echo of this process's write)."""
        version = body["metadata"].get("resourceVersion")
        with self._locks_guard:
            known = self._known.get((namespace, name))
            if known is not None and known["metadata"].get("resourceVersion") == version:
                return
        copied = copy.deepcopy(dict(body))
        with self._locks_guard:
            self._known[(namespace, name)] = copied

    def watched(self) -> list[tuple[str, str, Logger]]:
        """The runs to resync: namespace, name and logger of each."""
        with self._locks_guard:
            return [(ns, name, logger) for (ns, name), (_, logger) in self._watched.items()]

    def reconciled(self, uid: str, generation: int | None) -> bool:
        """Whether generation `generation` of run `uid` was reconciled by this process: a watch
        event that changes no spec (a status write, a label, kopf's finalizer) needs no pass."""
        return generation is not None and self._generations.get(uid) == generation

    def _reconcile_once(
        self,
        namespace: str,
        name: str,
        logger: Logger,
        seen: dict[str, Any] | None,
        created: bool,
    ) -> bool:
        """One read-plan-write pass; False when the status write met a conflict."""
        body: dict[str, Any]
        if seen is not None:
            body = seen
        else:
            try:
                body = self.kube.get(run_path(namespace, name))
            except ApiError as exc:
                if exc.status == 404:  # deleted unseen (e.g. while the watch reconnected)
                    self.unwatch(namespace, name)
                    return True
                raise
        if body["metadata"].get("deletionTimestamp") or body["metadata"]["uid"] in self._stopped:
            return True  # the deletion handler stops (or stopped) the children
        try:
            run = parse_run(body, f"{namespace}/{name}")
        except ManifestError as exc:
            if not self._write_spec_invalid(body, exc):
                return False
            raise kopf.PermanentError(str(exc)) from None
        recorded = run.status or DistillRunStatus()
        uid = run.metadata.uid or ""
        with self._locks_guard:
            childless = created and uid not in self._generations
        jobs = [] if childless else self._jobs(namespace, uid)
        artifacts = run.spec.artifacts.uri or self.settings.artifacts_uri
        outputs = StoreOutputs(run_store_uri(artifacts, run) if artifacts else None)
        lookup = _NamespaceLookup(self.kube, namespace)
        plan = planner.plan(
            run,
            jobs,
            outputs,
            lambda: preflight.check(run, self.settings, self.profiles, lookup),
            max_attempts=self.settings.jobs_max_attempts,
            now=self.clock(),
        )
        if plan.start is not None:
            rejected = self._start(run, plan.start)
            if rejected is not None:
                plan = self._rejected(recorded, rejected, run.metadata.generation)
        latest: dict[str, Any] | None = body
        if plan.status != recorded:
            latest = self._write_status(body, plan.status)
        if latest is None:
            with self._locks_guard:
                self._known.pop((namespace, name), None)
            return False
        ended = plan.status.phase in planner.TERMINAL_PHASES
        if ended and recorded.phase not in planner.TERMINAL_PHASES and needs_server(run):
            self._delete_sandbox(run)
        for event in plan.events:
            self._post_event(body, event)
            logger.info(f"{event.reason}: {event.message}")
        self.metrics.stage_transitions(recorded, plan.status)
        self.metrics.set_phase(uid, str(plan.status.phase))
        with self._locks_guard:
            self._generations[uid] = run.metadata.generation or 0
            self._known[(namespace, name)] = latest
        return True

    def _jobs(self, namespace: str, uid: str) -> list[planner.ObservedJob]:
        """The RayJobs of run `uid`, read fresh."""
        listed = self.kube.list(rayjob_path(namespace), run_selector(uid))
        return [job for job in map(observed_job, listed) if job is not None]

    # -- writes ------------------------------------------------------------------------------

    def _start(self, run: DistillRun, start: planner.Start) -> ApiError | None:
        """Creates the attempt's ConfigMap, then its RayJob; the apiserver's refusal (not a
        conflict, not a retryable error) is returned for the status to show."""
        config = stage_config(
            run, start.stage, start.attempt, start.inputs.store_uri, start.inputs.resolved_sql
        )
        extra = self.settings.extra_labels
        children: list[dict[str, Any]] = []
        sandbox = start.inputs.sandbox
        if sandbox is not None:  # every start makes sure it exists (it may have been deleted)
            images = SandboxImages(
                postgres=self.settings.sandbox_postgres_image,
                mysql=self.settings.sandbox_mysql_image,
            )
            children += sandbox_manifests(
                run,
                ddl=sandbox.ddl,
                seed=sandbox.seed,
                password=secrets.token_urlsafe(24),  # kept only if its Secret is new
                images=images,
                extra_labels=extra,
            )
        children += [
            stage_config_map(run, start.stage, start.attempt, config, extra, self.profile_files),
            stage_rayjob(
                run, start.stage, start.attempt, self.settings, self.profiles, self.profile_files
            ),
        ]
        for manifest in children:
            try:
                self.kube.create(manifest_path(manifest), manifest)
            except ApiError as exc:
                if exc.status == CONFLICT:
                    continue  # created before a restart or by a concurrent pass: the same child
                if is_retryable(exc):
                    raise
                return exc
        return None

    def _rejected(
        self, recorded: DistillRunStatus, error: ApiError, generation: int | None
    ) -> planner.Plan:
        """The plan when the apiserver refused a child (quota, admission webhook): nothing
        recorded as started, `Ready=False` says why, and the next pass tries again."""
        message = f"the apiserver refused a stage's RayJob: {error}"
        previous = condition_of(recorded, ConditionType.READY)
        status = with_condition(
            recorded.model_copy(update={"observed_generation": generation}),
            Condition(
                type=ConditionType.READY,
                status=ConditionStatus.FALSE,
                reason=ConditionReason.RAY_JOB_REJECTED,
                message=message,
                last_transition_time=self.clock(),
                observed_generation=generation,
            ),
        )
        events = []
        if previous is None or previous.reason != ConditionReason.RAY_JOB_REJECTED:
            events.append(planner.Event(planner.WARNING, ConditionReason.RAY_JOB_REJECTED, message))
        return planner.Plan(status=status, events=events)

    def _write_status(
        self, body: dict[str, Any], status: DistillRunStatus
    ) -> dict[str, Any] | None:
        """Writes `status` if the run is still at the resourceVersion read: the run as written,
        or None on conflict."""
        meta = body["metadata"]
        patch = {
            "metadata": {"resourceVersion": meta["resourceVersion"]},
            "status": status.model_dump(mode="json", by_alias=True),
        }
        try:
            written: dict[str, Any] = self.kube.merge_patch(
                run_path(meta["namespace"], meta["name"]) + "/status", patch
            )
        except ApiError as exc:
            if exc.status == CONFLICT:
                return None
            raise
        return written

    def _write_spec_invalid(self, body: dict[str, Any], error: ManifestError) -> bool:
        """Records `SpecInvalid=True` (and `Ready=False`) with the field problems."""
        try:
            recorded = DistillRunStatus.model_validate(body.get("status") or {})
        except ValueError:
            recorded = DistillRunStatus()
        generation = body["metadata"].get("generation")
        message = "; ".join(str(p) for p in error.problems)
        now = self.clock()
        status = recorded.model_copy(update={"observed_generation": generation})
        for type_, value in (
            (ConditionType.SPEC_INVALID, ConditionStatus.TRUE),
            (ConditionType.READY, ConditionStatus.FALSE),
        ):
            status = with_condition(
                status,
                Condition(
                    type=type_,
                    status=value,
                    reason=ConditionReason.SPEC_INVALID,
                    message=message,
                    last_transition_time=now,
                    observed_generation=generation,
                ),
            )
        if status == recorded:
            return True
        if self._write_status(body, status) is None:
            return False
        self._post_event(
            body, planner.Event(planner.WARNING, ConditionReason.SPEC_INVALID, message)
        )
        return True

    def _post_event(self, body: dict[str, Any], event: planner.Event) -> None:
        meta = body["metadata"]
        now = self.clock()
        manifest = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{secrets.token_hex(8)}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": COMPONENT},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.kube.create(core_path(meta["namespace"], "events"), manifest)

    # -- deletion ----------------------------------------------------------------------------

    def _delete_sandbox(self, run: DistillRun) -> None:
        """A finished run needs its sandbox server no more."""
        name = sandbox_name(run)
        for api_version, kind in SANDBOX_KINDS:
            path = namespaced_path(api_version, run.metadata.namespace, PLURALS[kind], name)
            try:
                self.kube.delete(path)
            except ApiError as exc:
                if exc.status != 404:
                    raise

    def stop_children(self, namespace: str, name: str, uid: str) -> int:
        """Deletes the run's RayJobs (KubeRay stops their jobs and clusters), their ConfigMaps
        and the sandbox server; artifacts in the store are kept. Returns how many RayJobs were
        stopped."""
        with self._serialized(namespace, name):
            stopped = self._stop_children(namespace, uid)
            with self._locks_guard:
                self._stopped.add(uid)
                self._generations.pop(uid, None)
        self.unwatch(namespace, name, uid)
        with self._locks_guard:
            self._locks.pop((namespace, name), None)
        self.metrics.set_phase(uid, None)
        return stopped

    def _stop_children(self, namespace: str, uid: str) -> int:
        selector = run_selector(uid)
        collections = [rayjob_path(namespace)] + [
            namespaced_path(api_version, namespace, PLURALS[kind])
            for api_version, kind in SANDBOX_KINDS
        ]
        with mapped(f"stopping the children of {namespace}/{uid}"):
            stopped = 0
            for path in collections:
                for child in self.kube.list(path, selector):
                    try:
                        self.kube.delete(f"{path}/{child['metadata']['name']}")
                    except ApiError as exc:
                        if exc.status != 404:
                            raise
                    stopped += path == rayjob_path(namespace)
        return stopped
