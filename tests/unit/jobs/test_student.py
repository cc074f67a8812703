"""The student: the builtin tiny Qwen3 is built from a config with a tokenizer trained on the
spot, saved, reloaded through the same `from_pretrained` path as any model and generates; it is
kept in the store and reused; other kinds of `student.model` resolve without a hub."""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from distillrun.api.spec import StudentSpec
from distillrun.api.status import StageName
from distillrun.jobs import prompting, student
from distillrun.jobs.context import StageFailed
from distillrun.sql.schema import SchemaInfo
from distillrun.store import open_store

pytestmark = pytest.mark.usefixtures("offline_hub")

Record = dict[str, Any]


@pytest.fixture(scope="module")
def corpus(shop_schema: SchemaInfo, shop_records: list[Record]) -> list[str]:
    return prompting.builtin_tokenizer_corpus(shop_records[:40], shop_schema, reasoning=True)


@pytest.fixture(scope="module")
def built(corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return student.build_tiny_qwen3(corpus, tmp_path_factory.mktemp("tiny") / "base", seed=0)


def test_builtin_student_reloads_with_from_pretrained_and_generates(
    built: Path, shop_schema: SchemaInfo
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in built.iterdir()
    }
    tokenizer = AutoTokenizer.from_pretrained(built)
    model: Any = AutoModelForCausalLM.from_pretrained(built, dtype=torch.float32)
    config = model.config
    assert config.model_type == "qwen3"
    assert config.num_hidden_layers == 2 and config.hidden_size == 128
    assert config.vocab_size == len(tokenizer)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert config.eos_token_id == tokenizer.eos_token_id

    # Byte-level: text the tokenizer never saw still round-trips.
    unseen = "Wie viele Bestellungen gab es 2024? Ünïcödé ✓"
    assert tokenizer.decode(tokenizer(unseen)["input_ids"]) == unseen
    # Trained on the run's texts, merges span words: the schema is a handful of tokens.
    system = prompting.system_message(shop_schema, reasoning=True)
    assert len(tokenizer(system)["input_ids"]) < len(system) / 15
    # Digits one by one, quotes and newlines alone: values copy the same way everywhere.
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("LIMIT 10\n'JP'")["input_ids"])
    start = pieces.index("1")
    assert pieces[start : start + 4] == ["1", "0", "Ċ", "'"]
    assert pieces[-1] == "'"

    # The prompt's tokens are a prefix of prompt + answer (completion-only loss relies on it).
    record = {"question": "How many orders?", "sql": "SELECT COUNT(*) FROM orders"}
    prompt = prompting.render_prompt(tokenizer, shop_schema, "How many orders?", reasoning=True)
    full = prompting.render_example(tokenizer, shop_schema, record, reasoning=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert tokenizer(full, add_special_tokens=False)["input_ids"][: len(prompt_ids)] == prompt_ids

    encoded = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    greedy = GenerationConfig(
        max_new_tokens=8,
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.inference_mode():
        first = model.generate(**encoded, generation_config=greedy)
        second = model.generate(**encoded, generation_config=greedy)
    assert first.shape[1] > encoded["input_ids"].shape[1]
    assert torch.equal(first, second)


def test_building_is_deterministic(corpus: list[str], built: Path, tmp_path: Path) -> None:
    again = student.build_tiny_qwen3(corpus, tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (again / name).read_bytes() == (built / name).read_bytes()


def test_builtin_base_is_stored_once_and_reused(corpus: list[str], tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    spec = StudentSpec(model="builtin:tiny-qwen3", hardware_profile="cpu", gpus_per_worker=0)

    first = student.resolve_student(
        spec, store, tmp_path / "w1", stage=StageName.TRAIN, corpus=corpus
    )
    assert first.kind == "builtin" and not first.info["reused"]
    assert first.model_id == student.student_model_id(spec, stage=StageName.TRAIN, corpus=corpus)
    assert first.model_id.startswith("builtin:tiny-qwen3@")
    assert store.exists("student/base/_done.json")
    assert store.exists("student/base/model.safetensors")

    # Same texts (train rerun) and no texts (evaluation): the stored base, byte for byte.
    for texts, workdir in ((corpus, "w2"), (None, "w3")):
        again = student.resolve_student(
            spec, store, tmp_path / workdir, stage=StageName.EVALUATE, corpus=texts
        )
        assert again.info["reused"] and again.model_id == first.model_id
        assert (Path(again.location) / "model.safetensors").read_bytes() == (
            Path(first.location) / "model.safetensors"
        ).read_bytes()

    # Other texts: another tokenizer, so another base.
    other = student.resolve_student(
        spec, store, tmp_path / "w4", stage=StageName.TRAIN, corpus=[*corpus, "new words"]
    )
    assert not other.info["reused"] and other.model_id != first.model_id


def test_evaluation_without_a_stored_builtin_base_fails_by_name(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    spec = StudentSpec(model="builtin:tiny-qwen3", hardware_profile="cpu", gpus_per_worker=0)
    with pytest.raises(StageFailed) as failed:
        student.resolve_student(spec, store, tmp_path, stage=StageName.EVALUATE)
    assert failed.value.reason == "NoStudentBase"


@pytest.mark.parametrize("model", ["builtin:gpt-17", "./no/such/dir", "not a model id"])
def test_unknown_students_fail_by_name(model: str, tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    with pytest.raises(StageFailed) as failed:
        student.resolve_student(
            StudentSpec(model=model), store, tmp_path, stage=StageName.TRAIN, corpus=["x"]
        )
    assert failed.value.reason == "StudentNotFound"


def test_local_dirs_uris_and_hub_ids_resolve_without_a_hub(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(str(tmp_path / "store"))
    resolve: Callable[[str], student.Student] = lambda model: student.resolve_student(  # noqa: E731
        StudentSpec(model=model), store, tmp_path / "work", stage=StageName.TRAIN
    )

    local = resolve(str(built))
    assert (local.kind, local.location) == ("local", str(built.resolve()))

    hub = resolve("Qwen/Qwen3-0.6B")
    assert (hub.kind, hub.location, hub.model_id) == ("hub", "Qwen/Qwen3-0.6B", "Qwen/Qwen3-0.6B")

    # A model kept in an artifact store is copied into the local cache once, then loads.
    models = open_store(str(tmp_path / "models"))
    models.put_tree("tiny/", built)
    uri = models.url("tiny")
    from_uri = resolve(uri)
    assert from_uri.kind == "uri" and from_uri.model_id == uri
    assert Path(from_uri.location).is_relative_to(tmp_path / "cache")
    tokenizer = student.load_tokenizer(from_uri.location)
    assert tokenizer.eos_token == "<|im_end|>"
    models.delete("tiny/config.json")  # the cached copy is used from now on
    assert resolve(uri).location == from_uri.location

    # A model directory put there by another tool (`cp`, `aws s3 sync`) has no recorded checksums.
    copied = tmp_path / "copied-by-hand"
    shutil.copytree(built, copied)
    by_hand = resolve(f"file://{copied}")
    assert by_hand.kind == "uri"
    assert student.load_tokenizer(by_hand.location).eos_token == "<|im_end|>"

    missing = models.url("nothing-here")
    with pytest.raises(StageFailed) as failed:
        resolve(missing)
    assert failed.value.reason == "StudentNotFound"
