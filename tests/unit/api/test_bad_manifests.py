"""A table of malformed manifests: each is refused with a message naming the field at fault,
through the model and through `distillrun validate` (exit 1)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from distillrun.api import ManifestError, parse_run
from distillrun.cli import main
from tests.manifest_edits import Manifest, removing, setting

EXAMPLES = Path(__file__).parents[3] / "examples"


def quickstart() -> Manifest:
    data: Manifest = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    data["spec"]["database"]["schema"] = {"uri": str(EXAMPLES / "shop" / "schema.sql")}
    data["spec"]["database"]["seedData"] = {"uri": str(EXAMPLES / "shop" / "seed.sql")}
    data["spec"]["evaluation"]["goldSet"] = {"uri": str(EXAMPLES / "shop" / "gold.jsonl")}
    return data


BAD_MANIFESTS: list[tuple[str, Callable[[Manifest], None], str, str]] = [
    (
        "unknown dialect",
        setting("spec.database.dialect", "oracle"),
        "spec.database.dialect",
        "postgres",
    ),
    (
        "negative target",
        setting("spec.teacher.targetExamples", -5),
        "spec.teacher.targetExamples",
        "greater than or equal to 1",
    ),
    (
        "holdout above 1",
        setting("spec.validation.holdoutFraction", 1.5),
        "spec.validation.holdoutFraction",
        "less than 1",
    ),
    (
        "holdout of 0",
        setting("spec.validation.holdoutFraction", 0),
        "spec.validation.holdoutFraction",
        "greater than 0",
    ),
    ("qlora on cpu", setting("spec.student.method", "qlora"), "spec.student", "qlora needs a GPU"),
    (
        "keepDistinct in strict mode",
        setting("spec.evaluation.comparison", {"keepDistinct": True}),
        "spec.evaluation.comparison",
        "keepDistinct applies to mode spider only",
    ),
    (
        "unknown comparison mode",
        setting("spec.evaluation.comparison", {"mode": "bird"}),
        "spec.evaluation.comparison.mode",
        "spider",
    ),
    (
        "inline api key",
        setting("spec.teacher.apiKey", "sk-ant-123"),
        "spec.teacher",
        "apiKeySecretRef",
    ),
    ("name too long", setting("metadata.name", "a" * 64), "metadata.name", "at most 63 characters"),
    ("name not a DNS label", setting("metadata.name", "Shop_Run"), "metadata.name", "DNS-1123"),
    (
        "name with a trailing newline",
        setting("metadata.name", "shop\n"),
        "metadata.name",
        "DNS-1123",
    ),
    (
        "misspelled field",
        setting("spec.teacher.modle", "claude"),
        "spec.teacher.modle",
        "unknown field",
    ),
    ("no database", removing("spec.database"), "spec.database", "required field is missing"),
    ("no seed questions", setting("spec.seedQuestions", []), "spec.seedQuestions", "at least 1"),
    (
        "blank seed question",
        setting("spec.seedQuestions", [""]),
        "spec.seedQuestions[0]",
        "at least 1 character",
    ),
    (
        "schema given twice",
        setting("spec.database.schema.ddl", "CREATE TABLE t (a INT);"),
        "spec.database.schema",
        "exactly one of ddl, uri or configMapRef",
    ),
    (
        "wrong apiVersion",
        setting("apiVersion", "distillrun.dev/v1"),
        "apiVersion",
        "distillrun.dev/v1alpha1",
    ),
    ("wrong kind", setting("kind", "RayJob"), "kind", "must be DistillRun"),
    (
        "lora rank 0",
        setting("spec.student.lora.r", 0),
        "spec.student.lora.r",
        "greater than or equal to 1",
    ),
    (
        "accuracy above 1",
        setting("spec.evaluation.minExecutionAccuracy", 1.2),
        "spec.evaluation.minExecutionAccuracy",
        "less than or equal to 1",
    ),
    (
        "artifacts over http",
        setting("spec.artifacts.uri", "http://bucket/x"),
        "spec.artifacts",
        "file:// or s3://",
    ),
    (
        "openai without baseUrl",
        setting("spec.teacher.provider", "openai-compatible"),
        "spec.teacher",
        "baseUrl is required",
    ),
    (
        "gpus on cpu profile",
        setting("spec.student.gpusPerWorker", 2),
        "spec.student",
        "gpusPerWorker must be 0",
    ),
    (
        "zero timeout",
        setting("spec.database.sandbox.statementTimeoutMs", 0),
        "spec.database.sandbox.statementTimeoutMs",
        "greater than or equal to 10",
    ),
    (
        "unknown hardware profile",
        setting("spec.student.hardwareProfile", "tpu-v5"),
        "spec.student.hardwareProfile",
        "a100-80gb",
    ),
    (
        "epochs as text",
        setting("spec.student.epochs", "many"),
        "spec.student.epochs",
        "valid integer",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [pytest.param(m, f, msg, id=name) for name, m, f, msg in BAD_MANIFESTS],
)
def test_model_names_the_field(
    mutate: Callable[[Manifest], None], field: str, message: str
) -> None:
    data = quickstart()
    mutate(data)
    with pytest.raises(ManifestError) as caught:
        parse_run(data)
    problems = {p.path: p.message for p in caught.value.problems}
    assert field in problems, problems
    assert message in problems[field]


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [pytest.param(m, f, msg, id=name) for name, m, f, msg in BAD_MANIFESTS],
)
def test_validate_command_refuses(
    mutate: Callable[[Manifest], None],
    field: str,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = quickstart()
    mutate(data)
    manifest = tmp_path / "run.yaml"
    manifest.write_text(yaml.safe_dump(data))
    assert main(["validate", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert f"{field}: " in err and message in err
    assert "Traceback" not in err


def test_the_table_is_big_enough() -> None:
    assert len(BAD_MANIFESTS) >= 15


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        pytest.param(
            {"schema": {"uri": "missing/schema.sql"}},
            "spec.database.schema.uri",
            "cannot read",
            id="schema file missing",
        ),
        pytest.param(
            {"schema": {"ddl": "CREATE TABLE (oops"}},
            "spec.database.schema",
            "does not parse",
            id="schema does not parse",
        ),
        pytest.param(
            {"schema": {"ddl": "SELECT 1;"}},
            "spec.database.schema",
            "defines no table",
            id="schema without tables",
        ),
        pytest.param(
            {"seedData": {"ddl": "INSERT INTO nowhere VALUES (1);"}},
            "spec.database.seedData",
            "nowhere",
            id="seed rows for an unknown table",
        ),
    ],
)
def test_validate_checks_the_inputs_too(
    change: dict[str, Any],
    field: str,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = quickstart()
    data["spec"]["database"].update(copy.deepcopy(change))
    manifest = tmp_path / "run.yaml"
    manifest.write_text(yaml.safe_dump(data))
    assert main(["validate", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert f"{field}: " in err and message in err


def test_not_yaml_and_not_a_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    assert main(["validate", str(broken), str(listed), str(tmp_path / "absent.yaml")]) == 1
    err = capsys.readouterr().err
    assert "not valid YAML" in err
    assert "must be a mapping" in err
    assert "cannot read file" in err
