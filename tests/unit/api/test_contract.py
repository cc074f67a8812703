"""The contract: examples are valid, the committed CRD is what the models generate, wire names
are camelCase, and defaults are the documented ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from distillrun.api import DistillRun, load_run
from distillrun.api.crd import build_crd, render_crd
from distillrun.cli import main

ROOT = Path(__file__).parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_committed_crd_matches_the_models() -> None:
    committed = (ROOT / "crds" / "distillrun.dev_distillruns.yaml").read_text()
    assert committed == render_crd(), "regenerate: python -m distillrun.api.crd > crds/..."


def _walk(schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths in the schema that a structural CRD forbids."""
    bad = [
        f"{path}.{k}" for k in ("$ref", "anyOf", "oneOf", "allOf", "const", "title") if k in schema
    ]
    if schema.get("additionalProperties") is False:
        bad.append(f"{path}.additionalProperties")
    if "properties" in schema and "type" not in schema:
        bad.append(f"{path} (object without type)")
    for name, child in schema.get("properties", {}).items():
        bad += _walk(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            bad += _walk(schema[key], f"{path}.{key}")
    return bad


def test_crd_schema_is_structural() -> None:
    version = build_crd()["spec"]["versions"][0]
    assert _walk(version["schema"]["openAPIV3Schema"]) == []
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Accepted": ".status.counts.accepted",
        "Accuracy": ".status.evaluation.executionAccuracy",
        "Base": ".status.evaluation.baseExecutionAccuracy",
        "Age": ".metadata.creationTimestamp",
    }
    wide = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority")]
    assert wide == ["Base"]  # `kubectl get drun` shows the others; `-o wide` adds the base's
    assert build_crd()["spec"]["names"]["shortNames"] == ["drun"]


def test_crd_conditions_are_a_list_map_keyed_by_type() -> None:
    """So a server-side apply or a strategic merge replaces a condition of the same type
    instead of appending a second one."""
    status = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]


def test_crd_spec_uses_wire_names_and_keeps_cross_field_rules() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    teacher = spec["properties"]["teacher"]
    assert "targetExamples" in teacher["properties"]
    assert "maxUSD" in teacher["properties"]["budget"]["properties"]
    assert spec["properties"]["database"]["properties"]["dialect"]["enum"] == [
        "postgres",
        "mysql",
        "sqlite",
        "duckdb",
    ]
    student_rules = spec["properties"]["student"]["x-kubernetes-validations"]
    assert any("qlora" in r["rule"] for r in student_rules)
    holdout = spec["properties"]["validation"]["properties"]["holdoutFraction"]
    assert holdout["minimum"] == 0 and holdout["exclusiveMinimum"] is True


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_every_example_is_a_valid_run(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = load_run(example)
    assert run.metadata.name
    assert main(["validate", str(example)]) == 0
    assert "valid DistillRun" in capsys.readouterr().out


def test_wire_round_trip_is_camel_case() -> None:
    run = load_run(ROOT / "examples" / "quickstart.yaml")
    wire = run.to_wire()
    assert wire["spec"]["teacher"]["targetExamples"] == run.spec.teacher.target_examples
    assert wire["spec"]["database"]["schema"]["uri"] == "shop/schema.sql"
    assert DistillRun.model_validate(wire) == run


def test_defaults_are_the_documented_ones() -> None:
    data = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    data["spec"] = {
        "database": {"dialect": "postgres", "schema": {"ddl": "CREATE TABLE t (a INT);"}},
        "seedQuestions": ["How many rows?"],
    }
    run = DistillRun.model_validate(data)
    assert run.spec.teacher.provider == "anthropic"
    assert run.spec.teacher.mode == "auto"
    assert run.spec.validation.holdout_fraction == 0.1
    assert run.spec.student.hardware_profile == "a100-80gb"
    assert run.spec.evaluation.min_execution_accuracy == 0.7
    assert run.metadata.namespace == "default"


def test_crd_command_prints_the_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert (
        yaml.safe_load(capsys.readouterr().out)["metadata"]["name"] == "distillruns.distillrun.dev"
    )
