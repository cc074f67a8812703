"""Fixtures for the store tests: a real S3 API (moto in server mode) on loopback, a fresh bucket
per test, and a `store` fixture that runs each behaviour test on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from mypy_boto3_s3 import S3Client

from distillrun.store import Store, open_store


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto S3 server for the session, on 127.0.0.1 and a free port."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Fake credentials and no outside configuration: no profile, no instance metadata."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


@pytest.fixture
def s3_env(aws_env: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """The environment pointed at the moto server; returns its endpoint URL."""
    aws_env.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


@pytest.fixture
def raw_s3(s3_env: str) -> Iterator[S3Client]:
    """A plain boto3 client on the moto server, to look behind the store's back."""
    client = boto3.session.Session().client("s3")
    yield client
    client.close()


@pytest.fixture
def bucket(raw_s3: S3Client) -> str:
    name = f"test-{uuid.uuid4().hex[:16]}"
    raw_s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_uri(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The root URI of an empty store of the parametrized backend."""
    if backend == "file":
        return f"file://{tmp_path / 'artifacts'}"
    bucket_name: str = request.getfixturevalue("bucket")
    return f"s3://{bucket_name}/team-a/distill"


@pytest.fixture
def store(store_uri: str) -> Store:
    return open_store(store_uri)


Tamper = Callable[[Store, str, bytes | None], None]


@pytest.fixture
def tamper(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Tamper:
    """Change an object behind the store's back, as a person or another tool would: new bytes
    under the old recorded checksum, or (with None) the same bytes with no checksum recorded."""
    if backend == "file":

        def tamper_file(store: Store, key: str, data: bytes | None) -> None:
            path = Path(store.url(key).removeprefix("file://"))
            if data is None:
                path.with_name(f".distillrun.{path.name}.sha256").unlink()
            else:
                path.write_bytes(data)

        return tamper_file

    client: S3Client = request.getfixturevalue("raw_s3")

    def tamper_s3(store: Store, key: str, data: bytes | None) -> None:
        bucket_name, _, name = store.url(key).removeprefix("s3://").partition("/")
        current = client.get_object(Bucket=bucket_name, Key=name)
        with current["Body"] as body:
            old = body.read()
        if data is None:
            client.put_object(Bucket=bucket_name, Key=name, Body=old)
        else:
            client.put_object(Bucket=bucket_name, Key=name, Body=data, Metadata=current["Metadata"])

    return tamper_s3


PutRaw = Callable[[Store, str, bytes], None]


@pytest.fixture
def put_raw(backend: str, request: pytest.FixtureRequest) -> PutRaw:
    """Write an object as another tool would (`cp`, `aws s3 cp`): no checksum recorded."""
    if backend == "file":

        def put_file(store: Store, key: str, data: bytes) -> None:
            path = Path(store.url(key).removeprefix("file://"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

        return put_file

    client: S3Client = request.getfixturevalue("raw_s3")

    def put_s3(store: Store, key: str, data: bytes) -> None:
        bucket_name, _, name = store.url(key).removeprefix("s3://").partition("/")
        client.put_object(Bucket=bucket_name, Key=name, Body=data)

    return put_s3
