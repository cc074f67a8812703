"""Everything a local run would fail on after paying the teacher is refused first: by
`distillrun validate`, and by `distillrun run` before the generate stage (no teacher request,
nothing in the store), naming the field and what to do."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from distillrun.api.crd import build_crd
from distillrun.cli import main
from distillrun.jobs.student import TinyQwen3Shape, train_bpe_tokenizer
from distillrun.local import preflight
from tests.fakes.anthropic_server import FakeAnthropic
from tests.manifest_edits import Manifest, removing, setting

EXAMPLES = Path(__file__).parents[3] / "examples"


def shop_tiny(**teacher: Any) -> Manifest:
    data: Manifest = yaml.safe_load((EXAMPLES / "shop-tiny.yaml").read_text())
    data["spec"]["database"]["schema"] = {"uri": str(EXAMPLES / "shop" / "schema.sql")}
    data["spec"]["database"]["seedData"] = {"uri": str(EXAMPLES / "shop" / "seed.sql")}
    data["spec"]["evaluation"]["goldSet"] = {"uri": str(EXAMPLES / "shop" / "gold.jsonl")}
    data["spec"]["teacher"].update({"targetExamples": 20, "examplesPerShard": 20, **teacher})
    return data


def write(tmp_path: Path, data: Manifest, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache with nothing in it (and the real one out of reach)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _big_schema(tmp_path: Path) -> str:
    """About 60 kB of DDL: 300 tables of 12 columns."""
    columns = ", ".join(f"attribute_number_{c} TEXT" for c in range(12))
    ddl = "\n".join(
        f"CREATE TABLE table_{t} (id INTEGER PRIMARY KEY, {columns});" for t in range(300)
    )
    path = tmp_path / "big.sql"
    path.write_text(ddl)
    return str(path)


Refusal = tuple[Callable[[Manifest, Path], None], str, str]

REFUSALS: dict[str, Refusal] = {
    "hub student neither cached nor reachable": (
        lambda d, _: setting("spec.student.model", "Qwen/Qwen3-0.6B")(d),
        "spec.student.model",
        "hf download Qwen/Qwen3-0.6B",
    ),
    "unknown builtin student": (
        lambda d, _: setting("spec.student.model", "builtin:tiny-llama")(d),
        "spec.student.model",
        "builtin students: builtin:sql-qwen3, builtin:tiny-qwen3",
    ),
    "student directory missing": (
        lambda d, t: setting("spec.student.model", str(t / "no-model"))(d),
        "spec.student.model",
        "no model directory with a config.json",
    ),
    "unknown custom hardware profile": (
        lambda d, _: setting("spec.student.hardwareProfile", "custom-tpu")(d),
        "spec.student.hardwareProfile",
        "unknown hardware profile 'custom-tpu'",
    ),
    "GPU profile on a machine without GPUs": (
        lambda d, _: (
            setting("spec.student.hardwareProfile", "a100-80gb")(d),
            setting("spec.student.gpusPerWorker", 1)(d),
        ),
        "spec.student.hardwareProfile",
        "this machine has 0: for a local run use hardwareProfile: cpu",
    ),
    "teacher model without a price": (
        lambda d, _: setting("spec.teacher", {"provider": "anthropic", "model": "claude-x-9"})(d),
        "spec.teacher.model",
        "no price for teacher model 'claude-x-9'",
    ),
    "LoRA targets the architecture lacks": (
        lambda d, _: setting("spec.student.lora.targetModules", ["query_key_value"])(d),
        "spec.student.lora.targetModules",
        "no module named query_key_value; its linear layers are down_proj, gate_proj, k_proj",
    ),
    "gold set file missing": (
        lambda d, _: setting("spec.evaluation.goldSet", {"uri": "gold/missing.jsonl"})(d),
        "spec.evaluation.goldSet.uri",
        "cannot read the gold set",
    ),
    "schema too big for the sequence limit": (
        lambda d, t: (
            setting("spec.database.schema", {"uri": _big_schema(t)})(d),
            setting("spec.student.schemaInPrompt", True)(d),
            removing("spec.database.seedData")(d),
        ),
        "spec.database.schema",
        "and the sequence limit is 256",
    ),
}


@pytest.fixture(params=sorted(REFUSALS))
def refused(
    request: pytest.FixtureRequest, tmp_path: Path, empty_hub_cache: Path
) -> tuple[Path, str, str]:
    edit, field, message = REFUSALS[request.param]
    data = shop_tiny()
    edit(data, tmp_path)
    return write(tmp_path, data), field, message


def test_validate_refuses_what_run_would_fail_on_later(
    refused: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, field, message = refused
    assert main(["validate", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert f"{field}: " in err and message in err, err
    assert "Traceback" not in err


def test_run_refuses_it_before_the_teacher_is_paid(
    refused: tuple[Path, str, str],
    tmp_path: Path,
    anthropic_env: FakeAnthropic,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest, field, message = refused
    data = yaml.safe_load(manifest.read_text())
    if data["spec"]["teacher"].get("provider") == "synthetic":  # a paid teacher, when priced
        data["spec"]["teacher"] = {**data["spec"]["teacher"], "provider": "anthropic"}
        data["spec"]["teacher"].pop("seed", None)
        manifest.write_text(yaml.safe_dump(data))
    store = tmp_path / "store"
    assert main(["run", str(manifest), "--store", str(store), "--no-ray"]) == 1
    err = capsys.readouterr().err
    assert f"{field}: " in err and message in err, err
    assert anthropic_env.message_requests() == []
    assert not store.exists()


def test_all_problems_are_reported_together(
    tmp_path: Path, empty_hub_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = shop_tiny()
    setting("spec.student.model", "Qwen/Qwen3-0.6B")(data)
    setting("spec.teacher", {"provider": "anthropic", "model": "claude-x-9"})(data)
    assert main(["validate", str(write(tmp_path, data))]) == 1
    err = capsys.readouterr().err
    assert "spec.student.model: " in err and "spec.teacher.model: " in err


def test_a_cached_hub_student_with_its_modules_passes(
    tmp_path: Path, empty_hub_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A student in the local cache is found without the network; its config gives the module
    names and its tokenizer the prompt's length."""
    from transformers import Qwen3Config

    snapshot = empty_hub_cache / "models--acme--tiny" / "snapshots" / "0123abcd"
    Qwen3Config(num_hidden_layers=1).save_pretrained(snapshot)
    train_bpe_tokenizer(["CREATE TABLE customers"], TinyQwen3Shape()).save_pretrained(snapshot)
    (snapshot / "model.safetensors").write_bytes(b"")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    data = shop_tiny()
    setting("spec.student.model", "acme/tiny")(data)
    setting("spec.student.maxSeqLength", 4096)(data)
    assert main(["validate", str(write(tmp_path, data))]) == 0, capsys.readouterr().err

    setting("spec.student.lora.targetModules", ["c_attn"])(data)
    assert main(["validate", str(write(tmp_path, data))]) == 1
    assert "spec.student.lora.targetModules: " in capsys.readouterr().err


def test_a_gpu_profile_passes_where_the_gpus_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(preflight, "local_gpu_count", lambda: 2)
    data = shop_tiny()
    setting("spec.student.hardwareProfile", "a100-80gb")(data)
    setting("spec.student.gpusPerWorker", 2)(data)
    assert main(["validate", str(write(tmp_path, data))]) == 0, capsys.readouterr().err


def test_cpu_profile_without_gpus_per_worker_means_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = shop_tiny()
    removing("spec.student.gpusPerWorker")(data)
    assert main(["validate", str(write(tmp_path, data))]) == 0, capsys.readouterr().err
    # the apiserver must not default it to 1 (its CEL rule would then refuse the run)
    student = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["student"]
    assert "default" not in student["properties"]["gpusPerWorker"]
    assert not any(
        "has(self.gpusPerWorker) &&" in r["rule"] for r in student["x-kubernetes-validations"]
    )


def test_validate_warns_of_empty_seed_data_but_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without seed rows every gold result is empty and proves nothing: said, not refused."""
    assert main(["validate", str(write(tmp_path, shop_tiny()))]) == 0
    assert "warning" not in capsys.readouterr().err
    data = shop_tiny()
    removing("spec.database.seedData")(data)
    assert main(["validate", str(write(tmp_path, data))]) == 0
    out, err = capsys.readouterr()
    assert "valid DistillRun" in out
    assert "run.yaml: warning: the seed data is empty" in err and "seedData" in err


def test_snake_case_is_refused_as_admission_refuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = shop_tiny()
    data["spec"]["teacher"]["target_examples"] = data["spec"]["teacher"].pop("targetExamples")
    assert main(["validate", str(write(tmp_path, data))]) == 1
    err = capsys.readouterr().err
    assert "spec.teacher.target_examples: unknown field" in err and "camelCase" in err
    teacher = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["teacher"]
    assert "target_examples" not in teacher["properties"]


@pytest.mark.parametrize(
    ("encoding", "named"),
    [("utf-16", "UTF-16"), ("latin-1", "Latin-1")],
)
def test_a_manifest_in_another_encoding_is_named_with_it(
    encoding: str, named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = shop_tiny()
    data["spec"]["seedQuestions"].append("Quels clients ont payé en espèces ?")
    manifest = tmp_path / "run.yaml"
    manifest.write_bytes(yaml.safe_dump(data, allow_unicode=True).encode(encoding))
    assert main(["validate", str(manifest)]) == 1
    assert main(["run", str(manifest), "--store", str(tmp_path / "store"), "--no-ray"]) == 1
    err = capsys.readouterr().err
    assert f"{manifest} is not UTF-8 text: it looks like {named}" in err
    assert "Traceback" not in err


def test_a_schema_file_in_latin_1_is_named_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_bytes("-- clients (données)\nCREATE TABLE t (a INT);\n".encode("latin-1"))
    data = copy.deepcopy(shop_tiny())
    data["spec"]["database"] = {"dialect": "sqlite", "schema": {"uri": str(schema)}}
    assert main(["validate", str(write(tmp_path, data))]) == 1
    err = capsys.readouterr().err
    assert f"spec.database.schema.uri: {schema} is not UTF-8 text" in err
    assert "Latin-1" in err and "line 1" in err


def test_a_profile_file_in_latin_1_is_named_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "custom-box.yaml").write_bytes(
        "name: custom-box\ndescription: la machine du café\nextends: cpu\n".encode("latin-1")
    )
    monkeypatch.setenv("DISTILLRUN_PROFILES_DIR", str(profiles))
    data = shop_tiny()
    setting("spec.student.hardwareProfile", "custom-box")(data)
    assert main(["validate", str(write(tmp_path, data))]) == 1
    err = capsys.readouterr().err
    assert "spec.student.hardwareProfile: " in err
    assert f"{profiles / 'custom-box.yaml'} is not UTF-8 text: it looks like Latin-1" in err


def test_validate_cluster_checks_the_manifest_not_this_machine(
    tmp_path: Path, empty_hub_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest meant for the operator (a GPU profile, a hub student the cluster's image or
    cache has) is valid for `--cluster` on a laptop without either; a malformed one is not."""
    data = shop_tiny()
    setting("spec.student.model", "Qwen/Qwen3-0.6B")(data)
    setting("spec.student.hardwareProfile", "a100-80gb")(data)
    setting("spec.student.gpusPerWorker", 2)(data)
    manifest = write(tmp_path, data)
    assert main(["validate", str(manifest)]) == 1
    capsys.readouterr()
    assert main(["validate", "--cluster", str(manifest)]) == 0, capsys.readouterr().err

    setting("spec.student.epochs", 0)(data)
    assert main(["validate", "--cluster", str(write(tmp_path, data))]) == 1
    assert "spec.student.epochs" in capsys.readouterr().err
