"""The chart's copies of facts that live in the code stay equal to them: the CRD it installs
(Helm reads files inside the chart only, so `crds/` is copied in), the patterns its values
schema checks (hardware profiles, the Kueue queue and teacher Secret names, labels), and the
operator settings its Deployment sets (every setting, each under one name across the Helm
value, the `DISTILLRUN_*` variable and the field; `DISTILLRUN_PROFILES_DIR` aside, which is where
the chart mounts the team's profile files, not a setting)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from distillrun.api.profiles import PROFILES_ENV
from distillrun.api.spec import HARDWARE_PROFILE_PATTERN
from distillrun.operator.settings import (
    CPU_QUANTITY_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    LABEL_NAME_MAX,
    LABEL_NAME_PATTERN,
    MEMORY_QUANTITY_PATTERN,
    QUEUE_NAME_MAX,
    SECRET_KEY_PATTERN,
    SECRET_NAME_MAX,
    OperatorSettings,
    helm_value,
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


ENV_ENTRY = re.compile(
    r"- name: (DISTILLRUN_[A-Z_]+)\n\s+"
    r"value: \{\{ \.Values\.([\w.]+)((?: \| [^|}]+?)*) \| quote \}\}"
)
"""A Deployment variable set from a value: `.Values.<path>`, maybe through `join` or `toJson`."""


def _deployment_settings() -> dict[str, tuple[str, str]]:
    """Each `DISTILLRUN_*` variable of the Deployment: the value path it comes from, and the
    template functions between (` | join ","`, ` | toJson`)."""
    template = (CHART / "templates" / "deployment.yaml").read_text()
    named = [n for n in re.findall(r"name: (DISTILLRUN_[A-Z_]+)", template) if n != PROFILES_ENV]
    entries = {name: (path, pipes) for name, path, pipes in ENV_ENTRY.findall(template)}
    assert sorted(entries) == sorted(named), "every DISTILLRUN_* variable comes from one value"
    return entries


def _value(values: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        values = values[key]
    return values


def _snake(path: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", path.replace(".", "_")).lower()


def test_each_setting_has_one_name_across_helm_variable_and_field() -> None:
    """The rule of `distillrun/operator/settings.py`: the Helm value `jobs.rayTtlSeconds` is the
    variable `DISTILLRUN_JOBS_RAY_TTL_SECONDS` is the field `jobs_ray_ttl_seconds`, for every
    setting, each set by the chart and documented in its values."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    deployment = _deployment_settings()
    fields = list(OperatorSettings.model_fields)
    assert sorted(deployment) == sorted(OperatorSettings.env_name(f) for f in fields)
    for field in fields:
        variable = OperatorSettings.env_name(field)
        path, _ = deployment[variable]
        assert variable == f"DISTILLRUN_{field.upper()}"
        assert _snake(path) == field, f"{variable} is set from .Values.{path}"
        assert helm_value(field) == path
        _value(values, path)  # the value exists in values.yaml
    values_text = (CHART / "values.yaml").read_text()
    undocumented = [v for v in deployment if v not in values_text]
    assert not undocumented, "each value's comment in values.yaml names its variable"


def test_the_chart_defaults_are_the_operator_defaults() -> None:
    """`helm install` with no values gives the operator what it would choose itself: each
    variable the Deployment sets, rendered from values.yaml as Helm would, is read back as the
    operator reads it (the teacher Secret's key is set only with a Secret name, so not here)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    env: dict[str, str] = {}
    for variable, (path, pipes) in _deployment_settings().items():
        value = _value(values, path)
        if "join" in pipes:
            value = ",".join(value)
        elif "toJson" in pipes:
            value = json.dumps(value)
        env[variable] = str(value).lower() if isinstance(value, bool) else str(value)
    env.pop("DISTILLRUN_TEACHER_SECRET_KEY")
    assert OperatorSettings.from_env(env) == OperatorSettings()


def test_the_values_schema_checks_extra_labels_as_the_operator_does() -> None:
    labels = json.loads((CHART / "values.schema.json").read_text())["properties"]["extraLabels"]
    assert labels["additionalProperties"]["pattern"] == LABEL_NAME_PATTERN
    assert labels["additionalProperties"]["maxLength"] == LABEL_NAME_MAX
