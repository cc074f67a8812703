"""Admission on a real apiserver: the CRD (OpenAPI schema + CEL rules, generated from the models)
refuses bad manifests with a message that names the field, and refuses changes to the fields a
started run depends on. Requests use `fieldValidation=Strict`, as `kubectl apply` does, so an
unknown field (an API key pasted inline) is an error, not silently pruned."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from distillrun.operator.kube import ApiError, Kube
from tests.integration.helpers import run_manifest
from tests.manifest_edits import Manifest, removing, setting

pytestmark = pytest.mark.integration


def both(*mutations: Callable[[Manifest], None]) -> Callable[[Manifest], None]:
    def mutate(data: Manifest) -> None:
        for mutation in mutations:
            mutation(data)

    return mutate


# (id, mutation, field the message must name, words the message must contain)
BAD_MANIFESTS: list[tuple[str, Callable[[Manifest], None], str, str]] = [
    (
        "unknown dialect",
        setting("spec.database.dialect", "oracle"),
        "spec.database.dialect",
        'Unsupported value: "oracle"',
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
        "inline api key",
        setting("spec.teacher.apiKey", "sk-ant-123"),
        "spec.teacher.apiKey",
        "unknown field",
    ),
    (
        "inline s3 keys",
        setting("spec.artifacts.accessKey", "AKIA123"),
        "spec.artifacts.accessKey",
        "unknown field",
    ),
    (
        "name over 63 characters",
        setting("metadata.name", "a" * 64),
        "metadata.name",
        "at most 63 characters",
    ),
    ("name not a DNS label", setting("metadata.name", "Shop_Run"), "metadata.name", "RFC 1123"),
    (
        "misspelled field",
        setting("spec.teacher.modle", "claude"),
        "spec.teacher.modle",
        "unknown field",
    ),
    ("no spec", removing("spec"), "spec", "Required value"),
    ("no database", removing("spec.database"), "spec.database", "Required value"),
    (
        "no seed questions",
        setting("spec.seedQuestions", []),
        "spec.seedQuestions",
        "at least 1 items",
    ),
    (
        "blank seed question",
        setting("spec.seedQuestions", [""]),
        "spec.seedQuestions[0]",
        "at least 1 chars long",
    ),
    (
        "schema given twice",
        setting("spec.database.schema.uri", "s3://b/schema.sql"),
        "spec.database.schema",
        "set exactly one of ddl, uri or configMapRef",
    ),
    (
        "no schema source",
        setting("spec.database.schema", {}),
        "spec.database.schema",
        "set exactly one of ddl, uri or configMapRef",
    ),
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
        "uri must start with file:// or s3://",
    ),
    (
        "openai without baseUrl",
        setting("spec.teacher.provider", "openai-compatible"),
        "spec.teacher",
        "baseUrl is required",
    ),
    (
        "gpus on the cpu profile",
        setting("spec.student.gpusPerWorker", 2),
        "spec.student",
        "gpusPerWorker must be 0 when hardwareProfile is cpu",
    ),
    (
        "no gpus on a gpu profile",
        both(
            setting("spec.student.hardwareProfile", "a100-80gb"),
            setting("spec.student.gpusPerWorker", 0),
        ),
        "spec.student",
        "gpusPerWorker must be at least 1 for a GPU hardwareProfile",
    ),
    (
        "zero statement timeout",
        setting("spec.database.sandbox.statementTimeoutMs", 0),
        "spec.database.sandbox.statementTimeoutMs",
        "greater than or equal to 10",
    ),
    (
        "unknown hardware profile",
        setting("spec.student.hardwareProfile", "tpu-v5"),
        "spec.student.hardwareProfile",
        'Invalid value: "tpu-v5": spec.student.hardwareProfile in body should match',
    ),
    (
        "epochs as text",
        setting("spec.student.epochs", "many"),
        "spec.student.epochs",
        "must be of type integer",
    ),
    (
        "unknown teacher mode",
        setting("spec.teacher.mode", "overnight"),
        "spec.teacher.mode",
        'Unsupported value: "overnight"',
    ),
    (
        "zero budget",
        setting("spec.teacher.budget.maxUSD", 0),
        "spec.teacher.budget.maxUSD",
        "greater than 0",
    ),
    (
        "bad toleration effect",
        setting("spec.scheduling.tolerations", [{"key": "gpu", "effect": "Sometimes"}]),
        "spec.scheduling.tolerations[0].effect",
        'Unsupported value: "Sometimes"',
    ),
    (
        "secret ref without key",
        setting("spec.teacher.apiKeySecretRef", {"name": "anthropic"}),
        "spec.teacher.apiKeySecretRef.key",
        "Required value",
    ),
]


def _refusal(kube: Kube, namespace: str, data: Manifest) -> ApiError:
    with pytest.raises(ApiError) as caught:
        kube.request(
            "POST",
            f"/apis/distillrun.dev/v1alpha1/namespaces/{namespace}/distillruns",
            query={"fieldValidation": "Strict"},
            body=data,
        )
    return caught.value


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [pytest.param(m, f, w, id=name) for name, m, f, w in BAD_MANIFESTS],
)
def test_bad_manifest_is_refused_naming_the_field(
    kube: Kube, namespace: str, mutate: Callable[[Manifest], None], field: str, words: str
) -> None:
    data = run_manifest("bad-run")
    mutate(data)
    error = _refusal(kube, namespace, data)
    assert error.status in (400, 422), error
    assert field in error.message, error.message
    assert words in error.message, error.message


def test_the_table_is_big_enough() -> None:
    assert len(BAD_MANIFESTS) >= 20


def test_a_good_manifest_is_accepted_with_defaults(kube: Kube, namespace: str) -> None:
    created = kube.request(
        "POST",
        f"/apis/distillrun.dev/v1alpha1/namespaces/{namespace}/distillruns",
        query={"fieldValidation": "Strict"},
        body=run_manifest("good-run"),
    )
    assert created["spec"]["teacher"]["mode"] == "auto"  # defaults from the models
    assert created["spec"]["student"]["method"] == "lora"


IMMUTABLE_EDITS: list[tuple[str, Callable[[Manifest], None], str]] = [
    ("dialect", setting("spec.database.dialect", "duckdb"), "spec.database"),
    ("schema", setting("spec.database.schema.ddl", "CREATE TABLE t (a INT);"), "spec.database"),
    ("seed questions", setting("spec.seedQuestions", ["Another question?"]), "spec.seedQuestions"),
    ("teacher model", setting("spec.teacher.seed", 99), "spec.teacher"),
    ("teacher removed", removing("spec.teacher"), "spec.teacher"),
    ("holdout", setting("spec.validation.holdoutFraction", 0.3), "spec.validation"),
    ("artifacts", setting("spec.artifacts.uri", "s3://elsewhere/x"), "spec.artifacts"),
]


@pytest.mark.parametrize(
    ("mutate", "field"), [pytest.param(m, f, id=name) for name, m, f in IMMUTABLE_EDITS]
)
def test_fields_a_run_depends_on_are_immutable(
    kube: Kube, namespace: str, mutate: Callable[[Manifest], None], field: str
) -> None:
    path = f"/apis/distillrun.dev/v1alpha1/namespaces/{namespace}/distillruns"
    data = run_manifest("frozen", artifacts="file:///data/x")
    data["spec"]["validation"] = {"holdoutFraction": 0.1}
    created = kube.create(path, data)
    edited = copy.deepcopy(created)
    mutate(edited)
    with pytest.raises(ApiError) as caught:
        kube.request("PUT", f"{path}/frozen", body=edited)
    assert caught.value.status == 422
    assert f"{field}: Forbidden" in caught.value.message, caught.value.message
    assert "is immutable once the run exists" in caught.value.message


def test_student_evaluation_and_scheduling_stay_editable(kube: Kube, namespace: str) -> None:
    path = f"/apis/distillrun.dev/v1alpha1/namespaces/{namespace}/distillruns"
    created = kube.create(path, run_manifest("editable"))
    edited = copy.deepcopy(created)
    edited["spec"]["student"]["epochs"] = 5
    edited["spec"]["evaluation"] = {"minExecutionAccuracy": 0.5}
    edited["spec"]["scheduling"] = {"queueName": "team-a"}
    updated = kube.request("PUT", f"{path}/editable", body=edited)
    assert updated["metadata"]["generation"] == 2
    assert updated["spec"]["student"]["epochs"] == 5


def test_the_cpu_profile_needs_no_gpus_per_worker(kube: Kube, namespace: str) -> None:
    """Left out, gpusPerWorker is not defaulted to 1 by the apiserver (its rule would then
    refuse the run): the models read it as 0 on cpu, 1 on a GPU profile."""
    data = run_manifest("cpu-run")
    removing("spec.student.gpusPerWorker")(data)
    created = kube.request(
        "POST",
        f"/apis/distillrun.dev/v1alpha1/namespaces/{namespace}/distillruns",
        query={"fieldValidation": "Strict"},
        body=data,
    )
    assert "gpusPerWorker" not in created["spec"]["student"]


def test_snake_case_is_refused_as_the_local_loader_refuses_it(kube: Kube, namespace: str) -> None:
    data = run_manifest("snake-run")
    data["spec"]["teacher"]["target_examples"] = 10
    error = _refusal(kube, namespace, data)
    assert "spec.teacher.target_examples" in error.message, error.message
    assert "unknown field" in error.message, error.message
