"""S3-only behaviour against a real S3 API server on loopback (moto): multipart uploads, uploads
cut off part-way (by an error or by killing the process), and the failures a user can cause --
a missing bucket, no credentials, an unreachable, throttling or refusing endpoint."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from mypy_boto3_s3 import S3Client

from distillrun.store import StoreError, open_store
from distillrun.store.s3 import PART_SIZE, S3Store

MiB = 1024 * 1024
BIG = 2 * PART_SIZE + 3 * MiB


class Interrupted(Exception):
    """Raised by a source part-way through an upload."""


class FailingSource(io.BytesIO):
    """Yields its bytes until `fail_after` have been read, then raises."""

    def __init__(self, data: bytes, fail_after: int) -> None:
        super().__init__(data)
        self.fail_after = fail_after

    def read(self, size: int | None = -1, /) -> bytes:
        if self.tell() >= self.fail_after:
            raise Interrupted("connection to the data source lost")
        return super().read(size)


def uploads_in_flight(client: S3Client, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def test_large_objects_go_up_in_parts_with_their_checksum(raw_s3: S3Client, bucket: str) -> None:
    store = open_store(f"s3://{bucket}/runs")
    data = os.urandom(BIG)
    assert store.put_bytes("adapter/model.safetensors", data, if_absent=True) is True
    assert store.get_bytes("adapter/model.safetensors") == data

    head = raw_s3.head_object(Bucket=bucket, Key="runs/adapter/model.safetensors")
    assert head["Metadata"] == {"sha256": hashlib.sha256(data).hexdigest()}
    assert head["ContentLength"] == BIG

    assert store.put_bytes("adapter/model.safetensors", os.urandom(BIG), if_absent=True) is False
    assert store.get_bytes("adapter/model.safetensors") == data
    assert uploads_in_flight(raw_s3, bucket) == []


def test_small_objects_carry_an_s3_sha256_checksum(raw_s3: S3Client, bucket: str) -> None:
    open_store(f"s3://{bucket}").put_bytes("spec.json", b"{}")
    head = raw_s3.head_object(Bucket=bucket, Key="spec.json", ChecksumMode="ENABLED")
    assert head["Metadata"] == {"sha256": hashlib.sha256(b"{}").hexdigest()}
    assert "ChecksumSHA256" in head


def test_an_upload_interrupted_part_way_leaves_nothing(raw_s3: S3Client, bucket: str) -> None:
    store = open_store(f"s3://{bucket}/runs")
    data = os.urandom(BIG)
    sha256 = hashlib.sha256(data).hexdigest()
    source = FailingSource(data, fail_after=PART_SIZE + MiB)
    with pytest.raises(Interrupted):
        store._write("adapter/model.safetensors", source, BIG, sha256, if_absent=True)

    assert not store.exists("adapter/model.safetensors")
    assert store.list_keys() == []
    assert uploads_in_flight(raw_s3, bucket) == []
    assert store.put_bytes("adapter/model.safetensors", data, if_absent=True) is True
    assert store.get_bytes("adapter/model.safetensors") == data


def test_a_large_source_that_changes_mid_upload_is_aborted(raw_s3: S3Client, bucket: str) -> None:
    store = open_store(f"s3://{bucket}")
    data = bytearray(os.urandom(BIG))
    sha256 = hashlib.sha256(data).hexdigest()
    data[-1] ^= 0xFF
    with pytest.raises(StoreError, match="changed while it was being stored"):
        store._write("big.bin", io.BytesIO(bytes(data)), BIG, sha256, if_absent=False)
    assert store.list_keys() == []
    assert uploads_in_flight(raw_s3, bucket) == []


_STALLING_UPLOADER = textwrap.dedent(
    f"""
    import sys, time
    from distillrun.store import open_store

    class Stalling:
        sent = 0
        def read(self, size=-1):
            if self.sent > {PART_SIZE}:
                print("stalled", flush=True)
                time.sleep(600)
            self.sent += size
            return b"x" * size

    store = open_store(sys.argv[1])
    store._write("adapter/model.safetensors", Stalling(), {BIG}, "0" * 64, if_absent=True)
    """
)


def test_a_process_killed_mid_upload_leaves_nothing_under_the_key(
    raw_s3: S3Client, bucket: str
) -> None:
    uri = f"s3://{bucket}/runs"
    with subprocess.Popen(
        [sys.executable, "-c", _STALLING_UPLOADER, uri], stdout=subprocess.PIPE, text=True
    ) as uploader:
        try:
            assert uploader.stdout is not None
            assert uploader.stdout.readline() == "stalled\n"
            assert uploads_in_flight(raw_s3, bucket) == ["runs/adapter/model.safetensors"]
        finally:
            uploader.kill()
    assert uploader.returncode != 0
    # A killed process cannot abort: its parts stay, invisible, for a lifecycle rule to reap.
    assert uploads_in_flight(raw_s3, bucket) == ["runs/adapter/model.safetensors"]

    store = open_store(uri)
    assert not store.exists("adapter/model.safetensors")
    assert store.list_keys() == []
    assert store.put_bytes("adapter/model.safetensors", b"complete", if_absent=True) is True
    assert store.get_bytes("adapter/model.safetensors") == b"complete"


def test_list_keys_skips_names_no_key_can_have(raw_s3: S3Client, bucket: str) -> None:
    for name in ["runs/", "runs/folder/", "runs/a//b", "runs/ok", "runs-other/x", "top"]:
        raw_s3.put_object(Bucket=bucket, Key=name, Body=b"")
    assert open_store(f"s3://{bucket}/runs").list_keys() == ["ok"]
    assert open_store(f"s3://{bucket}").list_keys() == ["runs-other/x", "runs/ok", "top"]


def test_a_missing_bucket_is_named(s3_env: str) -> None:
    store = open_store("s3://no-such-bucket-here/runs")
    with pytest.raises(
        StoreError, match=r"s3://no-such-bucket-here/runs/x: bucket .* does not exist"
    ):
        store.put_bytes("x", b"x")
    with pytest.raises(StoreError, match="does not exist"):
        store.get_bytes("x")
    with pytest.raises(StoreError, match="does not exist"):
        store.list_keys()


def test_missing_credentials_are_explained(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    for name in ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    with pytest.raises(StoreError, match="s3://some-bucket/x: no usable AWS credentials"):
        open_store("s3://some-bucket").put_bytes("x", b"x")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_unreachable_endpoint_is_a_clear_store_error(aws_env: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    aws_env.setenv("AWS_ENDPOINT_URL", endpoint)
    aws_env.setenv("AWS_MAX_ATTEMPTS", "1")
    store = open_store("s3://bucket/runs")
    with pytest.raises(
        StoreError, match=f"s3://bucket/runs/x: cannot reach S3 endpoint {endpoint}"
    ):
        store.get_bytes("x")
    with pytest.raises(StoreError, match="cannot reach S3 endpoint"):
        store.exists("x")


class _FakeS3(HTTPServer):
    """An S3 endpoint that answers requests with `answers` in turn (the last one repeats), each
    a status and an S3 error code; it counts the requests it gets."""

    def __init__(self, answers: list[tuple[int, str]]) -> None:
        super().__init__(("127.0.0.1", 0), _FakeS3Handler)
        self.answers = answers
        self.requests = 0


class _FakeS3Handler(BaseHTTPRequestHandler):
    server: _FakeS3

    def _answer(self, body: bool) -> None:
        answers = self.server.answers
        status, code = answers[min(self.server.requests, len(answers) - 1)]
        self.server.requests += 1
        payload = f"<Error><Code>{code}</Code><Message>{{odd}} text</Message></Error>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def fake_s3(aws_env: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[_FakeS3]:
    server = _FakeS3(answers=request.param)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    aws_env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    aws_env.setenv("AWS_MAX_ATTEMPTS", "3")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


SLOWDOWN = (503, "SlowDown")


@pytest.mark.parametrize("fake_s3", [[SLOWDOWN, SLOWDOWN, (404, "NoSuchKey")]], indirect=True)
def test_slowdown_is_retried(fake_s3: _FakeS3) -> None:
    assert open_store("s3://bucket").exists("x") is False
    assert fake_s3.requests == 3


@pytest.mark.parametrize("fake_s3", [[SLOWDOWN]], indirect=True)
def test_endless_slowdown_ends_in_a_clear_error(fake_s3: _FakeS3) -> None:
    with pytest.raises(StoreError, match=r"s3://bucket/x: S3 is throttling requests \(SlowDown\)"):
        open_store("s3://bucket").get_bytes("x")
    assert fake_s3.requests == 3


@pytest.mark.parametrize("fake_s3", [[(403, "AccessDenied")], [(400, "Odd")]], indirect=True)
def test_other_s3_errors_are_store_errors(fake_s3: _FakeS3) -> None:
    with pytest.raises(
        StoreError, match=r"s3://bucket/x: (access denied|S3 error Odd: {odd} text)"
    ):
        open_store("s3://bucket").get_bytes("x")
    assert fake_s3.requests == 1


def test_sub_views_share_the_client(s3_env: str) -> None:
    store = open_store("s3://bucket/a")
    assert isinstance(store, S3Store)
    run = store.sub("b/c")
    assert isinstance(run, S3Store)
    assert (run.bucket, run.prefix, run.uri) == ("bucket", "a/b/c", "s3://bucket/a/b/c")
    assert run._client is store._client


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("AWS_PROFILE", "no-such-profile", "could not be found"),
        ("AWS_ENDPOINT_URL", "minio:9000", "Invalid endpoint"),
    ],
)
def test_a_broken_client_configuration_is_a_store_error(
    aws_env: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    aws_env.setenv(variable, value)
    with pytest.raises(StoreError, match=f"s3://bucket/x: cannot set up an S3 client: .*{problem}"):
        open_store("s3://bucket/x")
