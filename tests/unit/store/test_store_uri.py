"""open_store: the URIs it accepts, and a clear error naming the URI for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillrun.store import StoreError, open_store, read_uri
from distillrun.store.file import FileStore
from distillrun.store.s3 import S3Store


def test_file_uris_and_plain_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert open_store(f"file://{tmp_path}/a/").uri == f"file://{tmp_path}/a"
    assert open_store(str(tmp_path / "a")).uri == f"file://{tmp_path}/a"
    monkeypatch.chdir(tmp_path)
    relative = open_store("artifacts/run")
    assert isinstance(relative, FileStore)
    assert relative.root == tmp_path / "artifacts" / "run"
    relative.put_bytes("spec.json", b"{}")
    assert open_store(f"file://{tmp_path}/artifacts").get_bytes("run/spec.json") == b"{}"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert open_store("~/x").uri == f"file://{tmp_path}/x"


def test_a_key_url_opens_as_a_store(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    store.put_bytes("run/generate/_manifest.json", b"{}")
    assert open_store(store.url("run/generate")).list_keys() == ["_manifest.json"]


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("s3://team-a-ml", "team-a-ml", ""),
        ("s3://team-a-ml/", "team-a-ml", ""),
        ("s3://team-a-ml/distill/", "team-a-ml", "distill"),
        ("S3://team-a-ml/distill/ns/run", "team-a-ml", "distill/ns/run"),
    ],
)
def test_s3_uris(aws_env: pytest.MonkeyPatch, uri: str, bucket: str, prefix: str) -> None:
    aws_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never contacted by open_store
    store = open_store(uri)
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == (bucket, prefix)
    assert store.uri == f"s3://{bucket}/{prefix}".rstrip("/")


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("", "empty store URI"),
        ("gs://bucket/x", "unsupported store URI scheme 'gs'"),
        ("https://example.com/x", "unsupported store URI scheme 'https'"),
        ("file://relative/x", "needs an absolute path"),
        ("s3://", "is not a bucket name"),
        ("s3:///prefix", "is not a bucket name"),
        ("s3://bad bucket/x", "is not a bucket name"),
        ("s3://bucket/../x", "invalid prefix"),
        ("s3://bucket/a//b", "invalid prefix"),
    ],
)
def test_bad_uris_are_named_with_what_is_accepted(uri: str, problem: str) -> None:
    with pytest.raises(StoreError, match=problem) as error:
        open_store(uri)
    if uri:
        assert repr(uri) in str(error.value)
    if "scheme" in problem or not uri:
        assert "file:///" in str(error.value)
        assert "s3://bucket" in str(error.value)


@pytest.mark.parametrize("uri", ["s3://bucket", "s3://bucket/", "/", "file:///"])
def test_read_uri_needs_an_object(aws_env: pytest.MonkeyPatch, uri: str) -> None:
    with pytest.raises(StoreError, match="not an object"):
        read_uri(uri)


def test_read_uri_of_a_plain_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "seed.sql").write_bytes(b"SELECT 1;")
    assert read_uri(f"file://{tmp_path}/seed.sql") == b"SELECT 1;"
    monkeypatch.chdir(tmp_path)
    assert read_uri("seed.sql") == b"SELECT 1;"
