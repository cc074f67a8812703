"""The kopf wiring: every trigger calls the same `Controller.reconcile`; nothing else lives here.

Triggers: a watch event of a DistillRun (including the initial listing, which is how a restarted
operator catches up), a watch event of one of its RayJobs (so the next stage starts as soon as a
stage ends), and a resync timer per run (so a missed event never stalls a run). Deletion runs
behind the `distillrun.dev/finalizer`: the children are stopped, then kopf removes it.

`register` puts the handlers on a registry, so tests run an operator in-process with their own
registry and settings; `distillrun.operator.main` registers them on kopf's default registry for
`kopf run`.
"""

from __future__ import annotations

import logging
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


class _Running:
    """The API client and controller of one operator run, made at start-up (or at login, which
    may come first) and closed at clean-up."""

    def __init__(self, api_factory: Callable[[], client.ApiClient]) -> None:
        self.api_factory = api_factory
        self.api: client.ApiClient | None = None
        self.controller: Controller | None = None

    def client(self) -> client.ApiClient:
        if self.api is None:
            self.api = self.api_factory()
        return self.api

    def get(self) -> Controller:
        if self.controller is None:
            raise kopf.TemporaryError("the operator is still starting", delay=1)
        return self.controller

    def close(self) -> None:
        if self.controller is not None:
            self.controller.metrics.close()
            self.controller = None
        if self.api is not None:
            self.api.close()  # type: ignore[no-untyped-call]
            self.api = None


def register(
    registry: kopf.OperatorRegistry,
    operator_settings: OperatorSettings,
    api_factory: Callable[[], client.ApiClient] = load_api_client,
) -> None:
    """Registers the DistillRun handlers on `registry`."""
    running = _Running(api_factory)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(running.client())

    @kopf.on.startup(registry=registry)
    def start(settings: kopf.OperatorSettings, logger: Logger, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.posting.enabled = False  # the controller posts its own, one per transition
        settings.peering.standalone = True  # one replica (strategy: Recreate)
        # Serve the namespaces and resources known at start-up: kopf's dynamic scanning lists
        # and watches Namespaces and CRDs cluster-wide, which a per-team install's namespaced
        # Role does not grant (kopf then retries for about a minute before serving anything).
        settings.scanning.disabled = True
        settings.execution.max_workers = operator_settings.workers
        metrics = Metrics()
        if operator_settings.metrics_port:
            metrics.serve(operator_settings.metrics_port)
        kube = Kube(running.client(), on_request=metrics.count_request)
        running.controller = Controller(kube, operator_settings, metrics)
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
        if event["type"] == "DELETED" or body.meta.get("deletionTimestamp"):
            return
        controller = running.get()
        if event["type"] == "MODIFIED" and controller.reconciled(
            body.meta.uid or "", body.meta.get("generation")
        ):
            return  # no spec change since our last pass (our own status write, a label)
        controller.reconcile(_namespaced(namespace), name, logger, seen=body)

    @kopf.timer(
        GROUP, VERSION, PLURAL, interval=operator_settings.resync_interval_s, registry=registry
    )
    def resync(body: kopf.Body, namespace: str | None, name: str, logger: Logger, **_: Any) -> None:
        running.get().reconcile(_namespaced(namespace), name, logger, seen=body)

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
            running.get().reconcile(_namespaced(namespace), run, logger)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def run_deleted(namespace: str | None, name: str, uid: str, logger: Logger, **_: Any) -> None:
        stopped = running.get().stop_children(_namespaced(namespace), name, uid)
        logger.info(f"stopped {stopped} RayJob(s); artifacts are kept")


def _namespaced(namespace: str | None) -> str:
    if namespace is None:
        raise kopf.PermanentError("DistillRuns and RayJobs are namespaced")
    return namespace
