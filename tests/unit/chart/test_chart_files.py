"""The chart's copies of facts that live in the code stay equal to them: the CRD it installs
(Helm reads files inside the chart only, so `crds/` is copied in), the patterns its values
schema checks (hardware profiles, the Kueue queue and teacher Secret names), and the operator
settings its Deployment sets (every `DISTILLRUN_*` variable the operator reads, and no other)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from distillrun.api.spec import HARDWARE_PROFILE_PATTERN
from distillrun.operator.settings import (
    CPU_QUANTITY_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    MEMORY_QUANTITY_PATTERN,
    QUEUE_NAME_MAX,
    SECRET_KEY_PATTERN,
    SECRET_NAME_MAX,
    OperatorSettings,
)

ROOT = Path(__file__).parents[3]
CHART = ROOT / "helm" / "distillrun"


def test_the_chart_installs_the_committed_crd() -> None:
    committed = (ROOT / "crds" / "distillrun.dev_distillruns.yaml").read_bytes()
    copy = (CHART / "files" / "distillrun.dev_distillruns.yaml").read_bytes()
    assert copy == committed, (
        "helm/distillrun/files/distillrun.dev_distillruns.yaml differs from crds/: "
        "cp crds/distillrun.dev_distillruns.yaml helm/distillrun/files/"
    )


def test_the_values_schema_checks_profiles_with_the_api_pattern() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["hardwareProfiles"]["items"]["pattern"] == HARDWARE_PROFILE_PATTERN


def test_the_values_schema_checks_queue_and_secret_names_as_the_operator_does() -> None:
    """Empty (no default) or what `OperatorSettings.from_env` accepts: a value the schema lets
    through never stops the operator at start."""
    properties = json.loads((CHART / "values.schema.json").read_text())["properties"]
    queue = properties["scheduling"]["properties"]["queueName"]
    assert (queue["pattern"], queue["maxLength"]) == (f"^$|{DNS_SUBDOMAIN_PATTERN}", QUEUE_NAME_MAX)
    teacher = properties["teacher"]["properties"]
    name = teacher["secretName"]
    assert (name["pattern"], name["maxLength"]) == (f"^$|{DNS_SUBDOMAIN_PATTERN}", SECRET_NAME_MAX)
    assert teacher["secretKey"]["pattern"] == SECRET_KEY_PATTERN


def test_the_values_schema_checks_ray_pod_sizes_as_the_operator_does() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    definitions, jobs = schema["definitions"], schema["properties"]["jobs"]["properties"]
    assert definitions["cpuAmount"]["pattern"] == CPU_QUANTITY_PATTERN
    assert definitions["memoryAmount"]["pattern"] == MEMORY_QUANTITY_PATTERN
    for name in ("headCpu", "cpuWorkerCpu"):
        assert jobs[name] == {"$ref": "#/definitions/cpuAmount"}
    for name in ("headMemory", "cpuWorkerMemory"):
        assert jobs[name] == {"$ref": "#/definitions/memoryAmount"}


def test_the_chart_defaults_are_the_operator_defaults() -> None:
    """`helm install` with no values gives the operator what it would choose itself; each
    `DISTILLRUN_*` value the Deployment sets from `.Values.<group>.<key>` is read back as the
    operator reads it."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    template = (CHART / "templates" / "deployment.yaml").read_text()
    env: dict[str, str] = {}
    for name, group, key in re.findall(
        r"name: (DISTILLRUN_[A-Z_]+)\n\s+value: \{\{ \.Values\.(\w+)\.(\w+) \| quote \}\}",
        template,
    ):
        value = values[group][key]
        env[name] = str(value).lower() if isinstance(value, bool) else str(value)
    assert {"DISTILLRUN_HEAD_CPU", "DISTILLRUN_RAY_TOKEN_AUTH"} <= set(env)
    assert OperatorSettings.from_env(env) == OperatorSettings()


class _Recording(dict[str, str]):
    """An empty environment that remembers every variable looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


def test_the_deployment_sets_every_variable_the_operator_reads() -> None:
    env = _Recording()
    OperatorSettings.from_env(env)
    template = (CHART / "templates" / "deployment.yaml").read_text()
    assert set(re.findall(r"name: (DISTILLRUN_[A-Z_]+)", template)) == env.read
