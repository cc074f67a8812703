"""Run-time checks before any RayJob: each problem has its reason and names the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from distillrun.api.profiles import load_profiles
from distillrun.api.resource import parse_run
from distillrun.operator.preflight import Inputs, Problem, SandboxSql, check, schema_problem
from distillrun.operator.settings import OperatorSettings
from tests.unit.operator.conftest import UID, cpu_manifest, gpu_manifest

SCHEMA = "CREATE TABLE orders (id INT PRIMARY KEY, total NUMERIC);"
PROFILES = load_profiles()


class FakeLookup:
    def __init__(
        self,
        secrets: dict[str, frozenset[str]] | None = None,
        config_maps: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.secrets = secrets or {}
        self.config_maps = config_maps or {}

    def secret_keys(self, name: str) -> frozenset[str] | None:
        return self.secrets.get(name)

    def config_map_data(self, name: str) -> dict[str, str] | None:
        return self.config_maps.get(name)


GOOD = FakeLookup(
    {"anthropic": frozenset({"api-key"}), "team-a-s3": frozenset({"credentials"})},
    {"sales-schema": {"schema.sql": SCHEMA}},
)


def test_a_complete_run_resolves_its_inputs() -> None:
    result = check(parse_run(gpu_manifest()), OperatorSettings(), PROFILES, GOOD)
    assert result == Inputs(
        store_uri=f"s3://team-a-ml/distill/team-a/sales-analytics/{UID}",
        resolved_sql={"schema": SCHEMA},
        sandbox=SandboxSql(SCHEMA, None),
    )


def test_an_embedded_dialect_needs_no_sandbox_server() -> None:
    result = check(parse_run(cpu_manifest()), OperatorSettings(), PROFILES, FakeLookup())
    assert isinstance(result, Inputs) and result.sandbox is None


def test_a_sandbox_server_loads_seed_rows_read_by_uri(tmp_path: Path) -> None:
    seed = tmp_path / "seed.sql"
    seed.write_text("INSERT INTO orders VALUES (1, 2.5);")
    data = gpu_manifest()
    data["spec"]["database"]["seedData"] = {"uri": f"file://{seed}"}
    result = check(parse_run(data), OperatorSettings(), PROFILES, GOOD)
    assert isinstance(result, Inputs)
    assert result.sandbox == SandboxSql(SCHEMA, "INSERT INTO orders VALUES (1, 2.5);")


def _mutated(path: str, value: Any) -> dict[str, Any]:
    data = gpu_manifest()
    *parents, last = path.split(".")
    node = data
    for name in parents:
        node = node[name]
    node[last] = value
    return data


@pytest.mark.parametrize(
    ("data", "lookup", "settings", "reason", "field"),
    [
        pytest.param(
            gpu_manifest(),
            FakeLookup(GOOD.secrets),
            OperatorSettings(),
            "ConfigMapNotFound",
            "spec.database.schema.configMapRef",
            id="no configmap",
        ),
        pytest.param(
            gpu_manifest(),
            FakeLookup(GOOD.secrets, {"sales-schema": {}}),
            OperatorSettings(),
            "ConfigMapKeyNotFound",
            "spec.database.schema.configMapRef",
            id="no configmap key",
        ),
        pytest.param(
            gpu_manifest(),
            FakeLookup({"team-a-s3": frozenset({"credentials"})}, GOOD.config_maps),
            OperatorSettings(),
            "SecretNotFound",
            "spec.teacher.apiKeySecretRef",
            id="no api key secret",
        ),
        pytest.param(
            gpu_manifest(),
            FakeLookup(
                {"anthropic": frozenset({"other"}), "team-a-s3": frozenset({"credentials"})},
                GOOD.config_maps,
            ),
            OperatorSettings(),
            "SecretKeyNotFound",
            "spec.teacher.apiKeySecretRef",
            id="no api key in secret",
        ),
        pytest.param(
            gpu_manifest(),
            FakeLookup({"anthropic": frozenset({"api-key"})}, GOOD.config_maps),
            OperatorSettings(),
            "SecretNotFound",
            "spec.artifacts.credentialsSecretRef",
            id="no s3 secret",
        ),
        pytest.param(
            _mutated("spec.teacher.apiKeySecretRef", None),
            GOOD,
            OperatorSettings(),
            "SecretRefMissing",
            "spec.teacher.apiKeySecretRef",
            id="no api key ref",
        ),
        pytest.param(
            gpu_manifest(),
            GOOD,
            OperatorSettings(hardware_profiles=frozenset({"cpu", "rtx4090"})),
            "HardwareProfileUnavailable",
            "spec.student.hardwareProfile",
            id="profile not offered",
        ),
        pytest.param(
            _mutated("spec.student.gpusPerWorker", 16),
            GOOD,
            OperatorSettings(),
            "GpusExceedNode",
            "spec.student.gpusPerWorker",
            id="more gpus than a node has",
        ),
        pytest.param(
            _mutated("spec.artifacts", {}),
            GOOD,
            OperatorSettings(),
            "ArtifactsUnset",
            "spec.artifacts.uri",
            id="no store",
        ),
        pytest.param(
            _mutated("spec.artifacts", {"uri": "file:///data/distill"}),
            GOOD,
            OperatorSettings(),
            "ArtifactsNotShared",
            "spec.artifacts.uri",
            id="file store on a cluster",
        ),
        pytest.param(
            _mutated(
                "spec.database", {"dialect": "postgres", "schema": {"ddl": "CREATE TABLE (oops"}}
            ),
            GOOD,
            OperatorSettings(),
            "SchemaInvalid",
            "spec.database.schema",
            id="ddl does not parse",
        ),
        pytest.param(
            gpu_manifest(),
            FakeLookup(GOOD.secrets, {"sales-schema": {"schema.sql": "SELECT 1;"}}),
            OperatorSettings(),
            "SchemaInvalid",
            "spec.database.schema",
            id="configmap ddl defines no table",
        ),
    ],
)
def test_problems_name_the_field(
    data: dict[str, Any],
    lookup: FakeLookup,
    settings: OperatorSettings,
    reason: str,
    field: str,
) -> None:
    result = check(parse_run(data), settings, PROFILES, lookup)
    assert isinstance(result, Problem)
    assert result.reason == reason
    assert result.message.startswith(f"{field}: ")


def test_the_schema_is_parsed_once_per_content() -> None:
    schema_problem.cache_clear()
    run = parse_run(gpu_manifest())
    assert isinstance(check(run, OperatorSettings(), PROFILES, GOOD), Inputs)
    assert isinstance(check(run, OperatorSettings(), PROFILES, GOOD), Inputs)
    assert (schema_problem.cache_info().hits, schema_problem.cache_info().misses) == (1, 1)

    # The ConfigMap is edited: its new content is parsed, not the old verdict reused.
    edited = FakeLookup(GOOD.secrets, {"sales-schema": {"schema.sql": "CREATE TABLE (oops"}})
    result = check(run, OperatorSettings(), PROFILES, edited)
    assert isinstance(result, Problem) and result.reason == "SchemaInvalid"
    assert schema_problem.cache_info().misses == 2


def test_the_operator_default_store_is_used_when_the_spec_has_none() -> None:
    data = cpu_manifest()
    del data["spec"]["artifacts"]
    settings = OperatorSettings(artifacts_uri="s3://shared/x/")
    result = check(parse_run(data), settings, PROFILES, FakeLookup())
    assert isinstance(result, Inputs)
    assert result.store_uri == f"s3://shared/x/team-a/shop/{UID}"


def test_a_file_store_is_accepted_where_the_operator_allows_it() -> None:
    data = cpu_manifest()
    data["spec"]["artifacts"] = {"uri": "file:///data/distill"}
    refused = check(parse_run(data), OperatorSettings(), PROFILES, FakeLookup())
    assert isinstance(refused, Problem)
    assert "s3://" in refused.message and "file:///data/distill" in refused.message
    allowed = OperatorSettings(artifacts_allow_file_store=True)
    result = check(parse_run(data), allowed, PROFILES, FakeLookup())
    assert isinstance(result, Inputs)
    assert result.store_uri == f"file:///data/distill/team-a/shop/{UID}"


def test_the_operator_default_teacher_secret_stands_in_for_a_missing_ref() -> None:
    data = _mutated("spec.teacher.apiKeySecretRef", None)
    settings = OperatorSettings(teacher_secret_name="anthropic")
    assert isinstance(check(parse_run(data), settings, PROFILES, GOOD), Inputs)
    absent = FakeLookup({"team-a-s3": frozenset({"credentials"})}, GOOD.config_maps)
    problem = check(parse_run(data), settings, PROFILES, absent)
    assert isinstance(problem, Problem)
    assert problem.reason == "SecretNotFound"
    assert "teacher.secretName, DISTILLRUN_TEACHER_SECRET_NAME" in problem.message
    assert "Secret anthropic does not exist" in problem.message
