"""The `s3://` backend (AWS S3 or any S3 API: MinIO, Ceph, ...), through boto3.

- Endpoint, region and credentials come from the standard boto3 sources (`AWS_ENDPOINT_URL`,
  `AWS_ACCESS_KEY_ID`, profiles, IRSA, ...); retries use botocore's "standard" mode, which
  retries throttling (503 SlowDown), 5xx and connection errors with backoff
  (`AWS_MAX_ATTEMPTS` sets the number of attempts).
- Objects up to `PART_SIZE` go up in one PutObject, which S3 applies atomically. Larger ones go
  up as a multipart upload, invisible under the key until CompleteMultipartUpload; any failure
  or interruption aborts the upload. A process killed outright cannot abort: its parts stay
  invisible and billed until a bucket lifecycle rule (`AbortIncompleteMultipartUpload`) removes
  them, so set one.
- The sha256 of every object is stored as user metadata (`x-amz-meta-sha256`) and verified on
  every read, end to end. Uploads also send `ChecksumAlgorithm="SHA256"` with the digest, so S3
  itself rejects bytes damaged in transit.
- Put-if-absent is a conditional write (`If-None-Match: *`) on PutObject and on
  CompleteMultipartUpload, so it is race-free on the server.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from distillrun.store.base import (
    CHUNK_SIZE,
    Readable,
    Store,
    Writable,
    checked_chunks,
    key_problem,
)
from distillrun.store.errors import ObjectNotFound, StoreError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        CompleteMultipartUploadRequestTypeDef,
        PutObjectRequestTypeDef,
    )

PART_SIZE = 8 * 1024 * 1024
"""Objects larger than this are uploaded in parts of this size (more for huge objects)."""

MAX_PARTS = 10_000
"""S3's limit on the number of parts of one multipart upload."""

SHA256_METADATA = "sha256"
"""User-metadata name of the recorded checksum (`x-amz-meta-sha256` on the wire)."""

_ERROR_MESSAGES = {
    "NoSuchBucket": "bucket {bucket!r} does not exist",
    "AccessDenied": "access denied (S3 also answers this for a missing key when the "
    "credentials may not list the bucket)",
    "AllAccessDisabled": "access to the bucket is disabled",
    "InvalidAccessKeyId": "the access key id is not known to S3; check AWS_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "S3 rejected the request signature; check AWS_SECRET_ACCESS_KEY",
    "ExpiredToken": "the session token has expired; refresh the credentials",
    "InvalidToken": "the session token is not valid; check AWS_SESSION_TOKEN",
    "SlowDown": "S3 is throttling requests (SlowDown) and the retries are exhausted; "
    "try again later or raise AWS_MAX_ATTEMPTS",
    "ServiceUnavailable": "S3 is unavailable (503) and the retries are exhausted",
    "ConditionalRequestConflict": "another conditional write to this key was in flight; retry",
    "InvalidBucketName": "{bucket!r} is not a valid bucket name",
}


class S3Store(Store):
    """Objects under `s3://bucket/prefix/`, each with its sha256 in user metadata."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        require_checksums: bool = True,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.require_checksums = require_checksums
        self._client = client if client is not None else self._new_client()

    def _write(
        self, key: str, source: Readable, size: int, sha256: str, *, if_absent: bool
    ) -> bool:
        where = self.url(key)
        try:
            with self._errors(where):
                if size <= PART_SIZE:
                    self._put_object(key, source, size, sha256, if_absent=if_absent)
                else:
                    self._put_multipart(key, source, size, sha256, if_absent=if_absent)
        except _PreconditionFailed:
            return False
        return True

    def _put_object(
        self, key: str, source: Readable, size: int, sha256: str, *, if_absent: bool
    ) -> None:
        body = b"".join(checked_chunks(source, size, sha256, self.url(key)))
        request: PutObjectRequestTypeDef = {
            "Bucket": self.bucket,
            "Key": self._name(key),
            "Body": body,
            "Metadata": {SHA256_METADATA: sha256},
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": _base64(bytes.fromhex(sha256)),
        }
        if if_absent:
            request["IfNoneMatch"] = "*"
        self._client.put_object(**request)

    def _put_multipart(
        self, key: str, source: Readable, size: int, sha256: str, *, if_absent: bool
    ) -> None:
        name = self._name(key)
        part_size = max(PART_SIZE, -(-size // MAX_PARTS))
        upload = self._client.create_multipart_upload(
            Bucket=self.bucket,
            Key=name,
            Metadata={SHA256_METADATA: sha256},
            ChecksumAlgorithm="SHA256",
        )
        upload_id = upload["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            chunks = checked_chunks(source, size, sha256, self.url(key), part_size)
            for number, chunk in enumerate(chunks, start=1):
                checksum = _base64(hashlib.sha256(chunk).digest())
                response = self._client.upload_part(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=checksum,
                )
                parts.append(
                    {"ETag": response["ETag"], "PartNumber": number, "ChecksumSHA256": checksum}
                )
            request: CompleteMultipartUploadRequestTypeDef = {
                "Bucket": self.bucket,
                "Key": name,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": parts},
            }
            if if_absent:
                request["IfNoneMatch"] = "*"
            self._client.complete_multipart_upload(**request)
        except BaseException:
            # Nothing is visible under the key yet; drop the parts. If even the abort fails the
            # upload stays invisible, and the original error is the one worth reporting.
            with suppress(BotoCoreError, ClientError):
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload_id
                )
            raise

    def _read(self, key: str, sink: Writable) -> None:
        where = self.url(key)
        with self._errors(where):
            response = self._client.get_object(Bucket=self.bucket, Key=self._name(key))
            with closing(response["Body"]) as body:
                recorded = response["Metadata"].get(SHA256_METADATA)
                self._copy_verified(where, body.iter_chunks(CHUNK_SIZE), recorded, sink)

    def _exists(self, key: str) -> bool:
        try:
            with self._errors(self.url(key)):
                self._client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ObjectNotFound:
            return False
        return True

    def _list(self, prefix: str) -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        with self._errors(self.url(prefix)):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=root + prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(root) :]
                    # Skip what no key could name: "folder/" markers made by consoles, "a//b".
                    if key_problem(key) is None:
                        keys.append(key)
        return keys

    def _delete(self, key: str) -> None:
        with self._errors(self.url(key)):
            self._client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def _sub(self, prefix: str) -> Store:
        return S3Store(
            self.bucket,
            self._name(prefix),
            client=self._client,
            require_checksums=self.require_checksums,
        )

    def _new_client(self) -> S3Client:
        """A client configured from the environment, with standard-mode retries."""
        config = Config(retries={"mode": "standard"}, connect_timeout=10, read_timeout=60)
        try:
            return boto3.session.Session().client("s3", config=config)
        except (BotoCoreError, ValueError) as e:  # ValueError: a malformed AWS_ENDPOINT_URL
            raise StoreError(f"{self.uri}: cannot set up an S3 client: {e}") from e

    def _name(self, key: str) -> str:
        """The S3 object name of `key`."""
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def _errors(self, where: str) -> Iterator[None]:
        """The one place where botocore errors become store errors a user can act on."""
        endpoint = self._client.meta.endpoint_url
        try:
            yield
        except ClientError as e:
            error = e.response.get("Error", {})
            code = error.get("Code", "")
            if code in ("NoSuchKey", "NotFound", "404"):
                raise ObjectNotFound(f"{where}: no such object") from e
            if code == "PreconditionFailed":
                raise _PreconditionFailed(f"{where}: already exists") from e
            if code in ("403", "Forbidden"):
                code = "AccessDenied"
            if code == "503":
                code = "ServiceUnavailable"
            template = _ERROR_MESSAGES.get(code)
            if template is None:
                detail = f"S3 error {code or 'unknown'}: {error.get('Message', e)}"
            else:
                detail = template.format(bucket=self.bucket)
            raise StoreError(f"{where}: {detail}") from e
        except (NoCredentialsError, PartialCredentialsError) as e:
            raise StoreError(
                f"{where}: no usable AWS credentials ({e}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a profile, or a workload identity"
            ) from e
        except (EndpointConnectionError, ConnectTimeoutError) as e:
            raise StoreError(f"{where}: cannot reach S3 endpoint {endpoint} ({e})") from e
        except ReadTimeoutError as e:
            raise StoreError(f"{where}: S3 endpoint {endpoint} stopped answering ({e})") from e
        except BotoCoreError as e:
            raise StoreError(f"{where}: S3 request to {endpoint} failed: {e}") from e


class _PreconditionFailed(StoreError):
    """A conditional write found the key taken; put-if-absent turns it into False."""


def _base64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()
