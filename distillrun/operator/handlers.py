"""The kopf wiring: every trigger calls the same `Controller.reconcile`; nothing else lives here.

Triggers: a watch event of a DistillRun (including the initial listing, which is how a restarted
operator catches up), a watch event of one of its RayJobs (so the next stage starts as soon as a
stage ends), and a periodic resync of every run the watch has shown (so a missed event never
stalls a run). Deletion runs behind the `distillrun.dev/finalizer`: the children are stopped,
then kopf removes it.

The resync is a thread of our own, not a `kopf.timer`: a timer is a kopf daemon, and a run
deleted while its timer's handler was running kept its finalizer for a minute (about 1 deletion
in 5 made ~1 s after the run started; nolar/kopf#1305). kopf removes the finalizer only in a
processing cycle that finds every daemon of the object stopped
(`kopf._core.reactor.processing.process_resource_causes`); the deletion's cycle signals the
timer before the deletion handler runs, and a sync handler busy in its thread cannot exit within
the few event-loop turns kopf waits, so `kopf._core.engines.daemons.stop_daemons` asks to look
again in `settings.background.cancellation_polling` (60 s): "Deletion is processed", then
nothing until that sleep ends. Without timers or daemons kopf keeps its finalizer only for
`run_deleted` and removes it in the cycle where that handler succeeds.

`register` puts the handlers on a registry, so tests run an operator in-process with their own
registry and settings; `distillrun.operator.main` registers them on kopf's default registry for
`kopf run`.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

import kopf
from kubernetes import client

from distillrun.api.constants import FINALIZER, GROUP, PLURAL, VERSION
from distillrun.operator.builders.common import LABEL_MANAGED_BY, LABEL_RUN, MANAGED_BY
from distillrun.operator.controller import Controller
from distillrun.operator.kube import Kube, connection_info, load_api_client
from distillrun.operator.metrics import Metrics
from distillrun.operator.settings import OperatorSettings

Logger = logging.Logger | logging.LoggerAdapter[Any]


class _Resync:
    """Reconciles every run the controller watches, every `interval` seconds, in a thread: the
    level-based pass that lets a missed watch event or an operator that was down catch up."""

    def __init__(self, controller: Controller, interval: float) -> None:
        self.controller = controller
        self.interval = interval
        self._stop = threading.Event()
        # A daemon thread: an operator that dies without its clean-up must still exit.
        self._thread = threading.Thread(target=self._loop, name="distillrun-resync", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for namespace, name, logger in self.controller.watched():
                if self._stop.is_set():
                    return
                try:
                    self.controller.reconcile(namespace, name, logger)
                except (kopf.TemporaryError, kopf.PermanentError) as exc:
                    logger.warning(f"resync failed (the next one tries again): {exc}")
                except Exception:  # one run's bug must not end every run's resync
                    logger.exception("resync failed (the next one tries again)")

    def stop(self) -> None:
        """Ends the thread (after the reconcile in flight, if any)."""
        self._stop.set()
        self._thread.join()


class _NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff-base (the spec it last handled) is not kept. kopf keeps it to tell a
    creation, an update and a resumption apart for `on.create`/`on.update`/`on.resume`
    handlers; this operator has none (every change goes through `on.event` and the planner),
    yet the annotation kopf wrote cost each new run a patch and one more watch event to handle.
    Without it every cycle of a live run is a "creation" with no handler, which kopf skips;
    deletion is told by `deletionTimestamp`, not by the diff-base."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class _Running:
    """The API client, controller and resync of one operator run, made at start-up (or at
    login, which may come first) and closed at clean-up."""

    def __init__(self, api_factory: Callable[[], client.ApiClient]) -> None:
        self.api_factory = api_factory
        self.api: client.ApiClient | None = None
        self.controller: Controller | None = None
        self.resync: _Resync | None = None

    def client(self) -> client.ApiClient:
        if self.api is None:
            self.api = self.api_factory()
        return self.api

    def get(self) -> Controller:
        if self.controller is None:
            raise kopf.TemporaryError("the operator is still starting", delay=1)
        return self.controller

    def close(self) -> None:
        if self.resync is not None:
            self.resync.stop()
            self.resync = None
        if self.controller is not None:
            self.controller.metrics.close()
            self.controller = None
        if self.api is not None:
            self.api.close()  # type: ignore[no-untyped-call]
            self.api = None


def register(
    registry: kopf.OperatorRegistry,
    operator_settings: OperatorSettings,
    api_factory: Callable[[], client.ApiClient] | None = None,
) -> None:
    """Registers the DistillRun handlers on `registry`; the API client comes from
    `api_factory`, by default the pod's or kubeconfig's credentials with a connection for each
    thread that makes requests (the workers and the resync)."""
    running = _Running(
        api_factory
        or functools.partial(load_api_client, connections=operator_settings.operator_workers + 1)
    )

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(running.client())

    @kopf.on.startup(registry=registry)
    def start(settings: kopf.OperatorSettings, logger: Logger, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = _NoDiffBase()
        settings.posting.enabled = False  # the controller posts its own, one per transition
        settings.peering.standalone = True  # one replica (strategy: Recreate)
        # Serve the namespaces and resources known at start-up: kopf's dynamic scanning lists
        # and watches Namespaces and CRDs cluster-wide, which a per-team install's namespaced
        # Role does not grant (kopf then retries for about a minute before serving anything).
        settings.scanning.disabled = True
        settings.execution.max_workers = operator_settings.operator_workers
        metrics = Metrics()
        if operator_settings.metrics_port:
            metrics.serve(operator_settings.metrics_port)
        kube = Kube(running.client(), on_request=metrics.count_request)
        running.controller = Controller(kube, operator_settings, metrics)
        running.resync = _Resync(running.controller, operator_settings.operator_resync_seconds)
        logger.info(f"distillrun operator started: {operator_settings}")

    @kopf.on.cleanup(registry=registry)
    def stop(**_: Any) -> None:
        running.close()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def run_event(
        event: kopf.RawEvent,
        body: kopf.Body,
        namespace: str | None,
        name: str,
        logger: Logger,
        **_: Any,
    ) -> None:
        controller = running.get()
        namespace = _namespaced(namespace)
        uid = body.meta.uid or ""
        if event["type"] == "DELETED" or body.meta.get("deletionTimestamp"):
            controller.unwatch(namespace, name, uid)
            return
        controller.watch(namespace, name, uid, logger)
        controller.seen_on_watch(namespace, name, body)
        if event["type"] == "MODIFIED" and controller.reconciled(uid, body.meta.get("generation")):
            return  # no spec change since our last pass (our own status write, a label)
        controller.reconcile(namespace, name, logger, seen=body, created=event["type"] == "ADDED")

    @kopf.on.event(
        "ray.io", "v1", "rayjobs", labels={LABEL_MANAGED_BY: MANAGED_BY}, registry=registry
    )
    def rayjob_event(
        event: kopf.RawEvent, body: kopf.Body, namespace: str | None, logger: Logger, **_: Any
    ) -> None:
        run = body.meta.labels.get(LABEL_RUN)
        # A RayJob without status yet is one this operator just created: nothing to learn.
        fresh = event["type"] in ("ADDED", None) and not body.get("status")
        if run and not fresh:
            controller = running.get()
            namespace = _namespaced(namespace)
            controller.reconcile(namespace, run, logger, seen=controller.known(namespace, run))

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def run_deleted(namespace: str | None, name: str, uid: str, logger: Logger, **_: Any) -> None:
        stopped = running.get().stop_children(_namespaced(namespace), name, uid)
        logger.info(f"stopped {stopped} RayJob(s); artifacts are kept")


def _namespaced(namespace: str | None) -> str:
    if namespace is None:
        raise kopf.PermanentError("DistillRuns and RayJobs are namespaced")
    return namespace
