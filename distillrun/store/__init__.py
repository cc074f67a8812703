"""Artifact store: where every stage reads its inputs and writes its outputs, as objects under
deterministic keys, written atomically with a sha256 that every read verifies.

`open_store("file:///abs/path")`, `open_store("s3://bucket/prefix")` or a plain local path;
`read_uri(uri)` for one input file a user put somewhere (a seed SQL file)."""

from __future__ import annotations

import re
from pathlib import Path

from distillrun.store.base import Store, jsonl_values, key_problem, parse_jsonl
from distillrun.store.errors import ChecksumMismatch, ObjectNotFound, StoreError
from distillrun.store.file import FileStore
from distillrun.store.s3 import S3Store

__all__ = [
    "ChecksumMismatch",
    "ObjectNotFound",
    "Store",
    "StoreError",
    "jsonl_values",
    "open_store",
    "parse_jsonl",
    "read_uri",
]

_ACCEPTED = "file:///absolute/path, s3://bucket[/prefix] or a local path"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")


def open_store(uri: str, *, require_checksums: bool = True) -> Store:
    """The store rooted at `uri`. Nothing is contacted yet: a missing bucket or unreachable
    endpoint shows up, as a StoreError naming the URI, on the first operation (a malformed
    URI or S3 client configuration fails here). `file://` paths
    are taken literally (no percent-decoding), so `open_store(store.url(key))` round-trips.

    `require_checksums=False` is for reading inputs written by other tools (a base model
    uploaded with `aws s3 sync`, a local model directory): objects without a recorded sha256
    are accepted as they are, while a recorded one is still verified."""
    location = _parse(uri)
    if isinstance(location, Path):
        return FileStore(location, require_checksums=require_checksums)
    bucket, prefix = location
    return S3Store(bucket, prefix, require_checksums=require_checksums)


def read_uri(uri: str) -> bytes:
    """The bytes of the one object at `uri` (same forms as `open_store`). Such an input was
    usually written by another tool, so it needs no recorded checksum (a recorded one is still
    verified)."""
    location = _parse(uri)
    store: Store
    if isinstance(location, Path):
        name = location.name
        store = FileStore(location.parent, require_checksums=False)
    else:
        bucket, key = location
        folder, _, name = key.rpartition("/")
        store = S3Store(bucket, folder, require_checksums=False)
    if not name:
        raise StoreError(f"{uri!r}: names a bucket or the root directory, not an object")
    return store.get_bytes(name)


def _parse(uri: str) -> Path | tuple[str, str]:
    """A local root directory, or (bucket, prefix) for S3."""
    match = _SCHEME.match(uri)
    if match is None:
        if not uri:
            raise StoreError(f"empty store URI; use {_ACCEPTED}")
        return Path(uri).expanduser().resolve()
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme == "file":
        if not rest.startswith("/"):
            raise StoreError(f"{uri!r}: a file:// URI needs an absolute path, as in file:///data/x")
        return Path(rest)
    if scheme == "s3":
        bucket, _, prefix = rest.partition("/")
        prefix = prefix.rstrip("/")
        if not _BUCKET.match(bucket):
            raise StoreError(f"{uri!r}: {bucket!r} is not a bucket name; use s3://bucket/prefix")
        problem = key_problem(prefix) if prefix else None
        if problem:
            raise StoreError(f"{uri!r}: invalid prefix {prefix!r}: {problem}")
        return bucket, prefix
    raise StoreError(f"{uri!r}: unsupported store URI scheme {scheme!r}; use {_ACCEPTED}")
