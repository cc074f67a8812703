"""What admission cannot know becomes `Ready=False` with a reason before any RayJob exists, and
the run proceeds on its own once the problem is fixed (level-based, no re-apply needed)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from distillrun.operator.kube import Kube, core_path
from tests.integration.conftest import OperatorFactory, fast_settings
from tests.integration.helpers import (
    condition,
    create_run,
    events,
    get_run,
    phase,
    rayjobs,
    run_manifest,
    wait_rayjob,
    wait_run,
)

pytestmark = pytest.mark.integration


def _anthropic(data: dict[str, Any]) -> None:
    data["spec"]["teacher"] = {
        "provider": "anthropic",
        "apiKeySecretRef": {"name": "anthropic", "key": "api-key"},
        "targetExamples": 40,
    }


def _bad_ddl(data: dict[str, Any]) -> None:
    data["spec"]["database"]["schema"] = {"ddl": "CREATE TABLE (oops"}


def _blank_ddl(data: dict[str, Any]) -> None:
    data["spec"]["database"]["schema"] = {"ddl": "   "}


def _gpu(data: dict[str, Any]) -> None:
    data["spec"]["student"].update(hardwareProfile="a100-80gb", gpusPerWorker=1)


def _missing_config_map(data: dict[str, Any]) -> None:
    data["spec"]["database"]["schema"] = {"configMapRef": {"name": "absent", "key": "s.sql"}}


@pytest.mark.parametrize(
    ("mutate", "reason", "field"),
    [
        pytest.param(_anthropic, "SecretNotFound", "spec.teacher.apiKeySecretRef", id="secret"),
        pytest.param(_bad_ddl, "SchemaInvalid", "spec.database.schema", id="ddl"),
        pytest.param(
            _gpu, "HardwareProfileUnavailable", "spec.student.hardwareProfile", id="profile"
        ),
        pytest.param(
            _missing_config_map,
            "ConfigMapNotFound",
            "spec.database.schema.configMapRef",
            id="configmap",
        ),
        pytest.param(_blank_ddl, "SpecInvalid", "spec.database.schema", id="spec"),
    ],
)
def test_a_problem_holds_the_run_before_any_rayjob(
    kube: Kube,
    namespace: str,
    start_operator: OperatorFactory,
    tmp_path: Path,
    mutate: Any,
    reason: str,
    field: str,
) -> None:
    start_operator(fast_settings(tmp_path, hardware_profiles=frozenset({"cpu"})))
    data = run_manifest("held")
    mutate(data)
    create_run(kube, namespace, data)
    run = wait_run(
        kube,
        namespace,
        "held",
        lambda r: (condition(r, "Ready") or {}).get("reason") == reason,
        reason,
    )
    ready = condition(run, "Ready")
    assert ready is not None and ready["status"] == "False"
    assert ready["message"].startswith(field) or field in ready["message"]
    assert ready["observedGeneration"] == 1
    if reason == "SpecInvalid":
        assert (condition(run, "SpecInvalid") or {}).get("status") == "True"
    else:
        assert phase(run) == "Pending"
    time.sleep(2.5)  # two more resync periods: still held, no RayJob, one Event
    assert rayjobs(kube, namespace) == {}
    warnings = [e for e in events(kube, namespace, "held") if e["reason"] == reason]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"


def test_creating_the_missing_secret_lets_the_run_start(
    kube: Kube, namespace: str, start_operator: OperatorFactory
) -> None:
    start_operator()
    data = run_manifest("waiting")
    _anthropic(data)
    create_run(kube, namespace, data)
    wait_run(
        kube,
        namespace,
        "waiting",
        lambda r: (condition(r, "Ready") or {}).get("reason") == "SecretNotFound",
        "held",
    )
    kube.create(
        core_path(namespace, "secrets"),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "anthropic"},
            "stringData": {"api-key": "sk-test"},
        },
    )
    wait_rayjob(kube, namespace, "waiting-generate-1")
    run = wait_run(
        kube,
        namespace,
        "waiting",
        lambda r: (condition(r, "Ready") or {}).get("status") == "True",
        "ready",
    )
    assert phase(run) == "Generating"


def test_a_schema_from_a_config_map_reaches_the_stage_inline(
    kube: Kube, namespace: str, start_operator: OperatorFactory
) -> None:
    start_operator()
    ddl = "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL);"
    kube.create(
        core_path(namespace, "configmaps"),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "schema"},
            "data": {"schema.sql": ddl},
        },
    )
    data = run_manifest("from-map")
    data["spec"]["database"]["schema"] = {"configMapRef": {"name": "schema", "key": "schema.sql"}}
    create_run(kube, namespace, data)
    wait_rayjob(kube, namespace, "from-map-generate-1")
    config = kube.get(core_path(namespace, "configmaps", "from-map-generate-1"))
    document = json.loads(config["data"]["run.json"])
    assert document["run"]["spec"]["database"]["schema"] == {"ddl": ddl}
    assert get_run(kube, namespace, "from-map")["spec"]["database"]["schema"] == {
        "configMapRef": {"name": "schema", "key": "schema.sql"}
    }
