"""Deleting a run soon after it started, over and over: the finalizer must always come off.

With kopf's `@kopf.timer` as the resync, a deletion that met the timer's handler running hung:
kopf logged "Deletion is processed", then waited a minute before it looked at the finalizer again
(nolar/kopf#1305; `distillrun.operator.handlers` says why). It hit 2 of 8 deletions in some runs
of this test and none in others, so one deletion is no test of it; several in a row are."""

from __future__ import annotations

import time

import pytest

from distillrun.operator.controller import run_path
from distillrun.operator.kube import ApiError, Kube
from tests.integration.conftest import OperatorFactory
from tests.integration.controlplane import wait_for
from tests.integration.helpers import children, create_run, phase, run_manifest, wait_run

pytestmark = pytest.mark.integration

ROUNDS = 8
GONE_WITHIN_S = 20.0


def _gone(kube: Kube, namespace: str, name: str) -> bool:
    try:
        kube.get(run_path(namespace, name))
    except ApiError as exc:
        if exc.status == 404:
            return True
        raise
    return False


def test_a_run_deleted_right_after_it_started_always_goes_away(
    kube: Kube, namespace: str, start_operator: OperatorFactory
) -> None:
    start_operator()
    hung: list[str] = []
    for round_ in range(ROUNDS):
        name = f"brief-{round_}"
        created = create_run(kube, namespace, run_manifest(name))
        wait_run(kube, namespace, name, lambda r: phase(r) == "Generating", "Generating")
        time.sleep(1.0)
        kube.delete(run_path(namespace, name))
        try:
            wait_for(lambda n=name: _gone(kube, namespace, n), f"{name} to go", GONE_WITHIN_S)
        except AssertionError:
            hung.append(name)
            continue
        assert children(kube, namespace, created["metadata"]["uid"]) == ([], [])
    assert hung == [], f"{len(hung)} of {ROUNDS} deleted runs kept their finalizer"
