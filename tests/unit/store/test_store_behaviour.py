"""What every store promises, run against both backends (a local directory and a real S3 API)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from distillrun.store import (
    ChecksumMismatch,
    ObjectNotFound,
    Store,
    StoreError,
    open_store,
    read_uri,
)

Tamper = Callable[[Store, str, bytes | None], None]
PutRaw = Callable[[Store, str, bytes], None]


def test_bytes_round_trip_and_overwrite(store: Store) -> None:
    assert store.put_bytes("generate/shards/a.jsonl", b"first\n") is True
    assert store.get_bytes("generate/shards/a.jsonl") == b"first\n"
    assert store.put_bytes("generate/shards/a.jsonl", b"second\n") is True
    assert store.get_bytes("generate/shards/a.jsonl") == b"second\n"
    assert store.put_bytes("empty", b"") is True
    assert store.get_bytes("empty") == b""


def test_json_and_jsonl_round_trip(store: Store) -> None:
    spec = {"teacher": {"model": "claude", "targetExamples": 10}, "note": "naïve ✓"}
    store.put_json("spec.json", spec)
    assert store.get_json("spec.json") == spec
    records = [{"id": i, "sql": f"SELECT {i}"} for i in range(3)]
    store.put_jsonl("validate/accepted.jsonl", iter(records))
    assert store.read_jsonl("validate/accepted.jsonl") == records
    assert store.get_bytes("validate/accepted.jsonl").count(b"\n") == 3
    store.put_jsonl("validate/rejected.jsonl", [])
    assert store.read_jsonl("validate/rejected.jsonl") == []


def test_invalid_json_is_a_store_error(store: Store) -> None:
    store.put_bytes("broken.json", b"{not json")
    with pytest.raises(StoreError, match=r"broken\.json: not valid JSON"):
        store.get_json("broken.json")
    store.put_bytes("broken.jsonl", b'{"a": 1}\n[1, 2]\n')
    with pytest.raises(StoreError, match="line 2 is not a JSON object"):
        store.read_jsonl("broken.jsonl")


def test_put_if_absent_keeps_the_first_object(store: Store) -> None:
    assert store.put_bytes("generate/_manifest.json", b"first", if_absent=True) is True
    assert store.put_bytes("generate/_manifest.json", b"second", if_absent=True) is False
    assert store.get_bytes("generate/_manifest.json") == b"first"
    assert store.put_json("done.json", {"n": 1}, if_absent=True) is True
    assert store.put_json("done.json", {"n": 2}, if_absent=True) is False
    assert store.put_jsonl("x.jsonl", [{"n": 2}], if_absent=True) is True
    assert store.put_jsonl("x.jsonl", [{"n": 3}], if_absent=True) is False
    assert store.get_json("done.json") == {"n": 1}
    assert store.read_jsonl("x.jsonl") == [{"n": 2}]
    assert store.list_keys() == ["done.json", "generate/_manifest.json", "x.jsonl"]


def test_missing_objects(store: Store) -> None:
    assert store.exists("nothing") is False
    assert store.list_keys() == []
    with pytest.raises(ObjectNotFound, match="nothing: no such object"):
        store.get_bytes("nothing")
    with pytest.raises(ObjectNotFound):
        store.get_json("deep/nothing.json")
    store.delete("nothing")
    store.delete("deep/nothing")


def test_exists_and_delete(store: Store) -> None:
    store.put_bytes("a/b/c.txt", b"c")
    assert store.exists("a/b/c.txt")
    assert not store.exists("a/b")
    store.delete("a/b/c.txt")
    store.delete("a/b/c.txt")
    assert not store.exists("a/b/c.txt")
    assert store.list_keys() == []
    with pytest.raises(ObjectNotFound):
        store.get_bytes("a/b/c.txt")
    assert store.put_bytes("a/b/c.txt", b"again", if_absent=True) is True
    assert store.get_bytes("a/b/c.txt") == b"again"


def test_list_keys_is_sorted_filtered_by_prefix_and_hides_internals(store: Store) -> None:
    for key in ["b", "a/z", "a/b/c", "ab", "a/a", ".gitattributes", "a/.hidden"]:
        store.put_bytes(key, key.encode())
    everything = [".gitattributes", "a/.hidden", "a/a", "a/b/c", "a/z", "ab", "b"]
    assert store.list_keys() == everything
    assert store.list_keys("a/") == ["a/.hidden", "a/a", "a/b/c", "a/z"]
    assert store.list_keys("a") == ["a/.hidden", "a/a", "a/b/c", "a/z", "ab"]
    assert store.list_keys("a/b") == ["a/b/c"]
    assert store.list_keys("a/b/") == ["a/b/c"]
    assert store.list_keys("zz/") == []
    assert store.list_keys("b/") == []
    for key in everything:
        assert store.get_bytes(key) == key.encode()


def test_sub_views_share_the_objects(store: Store) -> None:
    run = store.sub("team-a/run-1/uid-1")
    assert run.uri == store.url("team-a/run-1/uid-1")
    assert run.url("spec.json") == f"{store.uri}/team-a/run-1/uid-1/spec.json"
    run.put_bytes("spec.json", b"{}")
    generate = run.sub("generate/")
    generate.put_bytes("shards/0.jsonl", b"0")
    assert store.list_keys() == [
        "team-a/run-1/uid-1/generate/shards/0.jsonl",
        "team-a/run-1/uid-1/spec.json",
    ]
    assert run.list_keys() == ["generate/shards/0.jsonl", "spec.json"]
    assert generate.list_keys() == ["shards/0.jsonl"]
    assert store.get_bytes("team-a/run-1/uid-1/generate/shards/0.jsonl") == b"0"
    assert open_store(generate.uri).get_bytes("shards/0.jsonl") == b"0"
    assert open_store(run.url("generate")).list_keys() == ["shards/0.jsonl"]
    assert generate.put_bytes("shards/0.jsonl", b"other", if_absent=True) is False
    assert store.sub("") is store
    assert store.url() == store.uri


def test_put_tree_and_get_tree(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "adapter"
    (source / "nested" / "deeper").mkdir(parents=True)
    files = {
        "adapter_config.json": b'{"r": 16}',
        "adapter_model.safetensors": os.urandom(3 * 1024 * 1024 + 7),
        "nested/deeper/tokenizer.json": b"{}",
        ".gitattributes": b"*.safetensors filter=lfs",
        "empty.txt": b"",
    }
    for name, data in files.items():
        (source / name).write_bytes(data)
    store.put_bytes("adapter2/unrelated", b"not part of the tree")

    store.put_tree("adapter", source)
    assert store.list_keys("adapter/") == sorted(f"adapter/{name}" for name in files)

    target = tmp_path / "download"
    assert store.get_tree("adapter", target) == target
    downloaded = {
        path.relative_to(target).as_posix(): path.read_bytes()
        for path in target.rglob("*")
        if path.is_file()
    }
    assert downloaded == files

    whole = store.sub("adapter").get_tree("", tmp_path / "whole")
    assert (whole / "nested" / "deeper" / "tokenizer.json").read_bytes() == b"{}"


def test_get_tree_of_nothing_is_not_found(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound, match="no objects under this prefix"):
        store.get_tree("adapter", tmp_path / "out")


def test_put_tree_needs_a_directory(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a directory"):
        store.put_tree("adapter", tmp_path / "missing")


@pytest.mark.parametrize("new_bytes", [b"tampered!", None], ids=["bytes-changed", "no-checksum"])
def test_tampered_object_fails_verification(
    store: Store, tamper: Tamper, tmp_path: Path, new_bytes: bytes | None
) -> None:
    store.put_bytes("validate/accepted.jsonl", b'{"ok": true}\n')
    store.put_bytes("adapter/weights.bin", b"weights")
    tamper(store, "validate/accepted.jsonl", new_bytes)
    tamper(store, "adapter/weights.bin", new_bytes)
    with pytest.raises(ChecksumMismatch, match=r"validate/accepted\.jsonl"):
        store.get_bytes("validate/accepted.jsonl")
    with pytest.raises(ChecksumMismatch):
        store.read_jsonl("validate/accepted.jsonl")
    target = tmp_path / "out"
    with pytest.raises(ChecksumMismatch, match=r"adapter/weights\.bin"):
        store.get_tree("adapter", target)
    assert not (target / "weights.bin").exists()
    assert list(target.iterdir()) == []
    store.put_bytes("validate/accepted.jsonl", b"rewritten")
    assert store.get_bytes("validate/accepted.jsonl") == b"rewritten"


def test_inputs_written_by_other_tools(
    store: Store, put_raw: PutRaw, tamper: Tamper, tmp_path: Path
) -> None:
    put_raw(store, "models/base/config.json", b"{}")
    put_raw(store, "models/base/model.safetensors", b"weights")
    put_raw(store, "seed.sql", b"INSERT INTO t VALUES (1);")
    with pytest.raises(ChecksumMismatch, match="no sha256 was recorded"):
        store.get_bytes("seed.sql")

    inputs = open_store(store.uri, require_checksums=False)
    assert inputs.get_bytes("seed.sql") == b"INSERT INTO t VALUES (1);"
    assert read_uri(store.url("seed.sql")) == b"INSERT INTO t VALUES (1);"
    model = inputs.sub("models").get_tree("base", tmp_path / "base")
    assert (model / "model.safetensors").read_bytes() == b"weights"

    store.put_bytes("written.json", b"{}")
    tamper(store, "written.json", b"[]")
    with pytest.raises(ChecksumMismatch, match="was recorded"):
        inputs.get_bytes("written.json")
    with pytest.raises(ChecksumMismatch):
        read_uri(store.url("written.json"))
    with pytest.raises(ObjectNotFound):
        read_uri(store.url("missing.sql"))


BAD_KEYS = ["", "/etc/passwd", "../x", "a/../../x", "a/..", "./a", "a//b", "a/./b", "a/", "a\x00b"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_cannot_escape_the_root(store: Store, key: str) -> None:
    with pytest.raises(StoreError, match="invalid key"):
        store.put_bytes(key, b"x")
    with pytest.raises(StoreError, match="invalid key"):
        store.get_bytes(key)
    with pytest.raises(StoreError, match="invalid key"):
        store.exists(key)
    with pytest.raises(StoreError, match="invalid key"):
        store.delete(key)
    assert store.list_keys() == []


@pytest.mark.parametrize("prefix", ["../", "/abs", "a/../..", "a//", "..", "a/./"])
def test_prefixes_cannot_escape_the_root(store: Store, prefix: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="invalid prefix"):
        store.sub(prefix)
    with pytest.raises(StoreError, match="invalid prefix"):
        store.list_keys(prefix)
    with pytest.raises(StoreError, match="invalid prefix"):
        store.put_tree(prefix, tmp_path)
    with pytest.raises(StoreError, match="invalid prefix"):
        store.get_tree(prefix, tmp_path)


def test_reserved_names_are_refused(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="reserved"):
        store.put_bytes("a/.distillrun.x.sha256", b"x")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / ".distillrun.tmp.1").write_bytes(b"x")
    with pytest.raises(StoreError, match="reserved"):
        store.put_tree("t", tmp_path / "tree")


HASHED = b"the bytes that were hashed"


@pytest.mark.parametrize(
    "source",
    [b"the bytes that were HASHED", HASHED[:-1], HASHED + b"!"],
    ids=["changed", "shorter", "longer"],
)
def test_a_source_that_changes_while_stored_commits_nothing(store: Store, source: bytes) -> None:
    sha256 = hashlib.sha256(HASHED).hexdigest()
    with pytest.raises(StoreError, match="changed while it was being stored"):
        store._write("shard.jsonl", io.BytesIO(source), len(HASHED), sha256, if_absent=False)
    assert store.list_keys() == []
    assert store.put_bytes("shard.jsonl", HASHED, if_absent=True) is True
