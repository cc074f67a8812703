"""The artifact store interface. Stages read and write artifacts through a `Store` and never care
whether it is a local directory or an S3 prefix. A backend implements a few primitives (atomic
write with a recorded sha256, verified read, exists, list, delete, sub-view); everything else --
key checks, JSON helpers, directory trees -- is written once here on top of them, so both
backends behave the same and one test suite covers both."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

from distillrun.store.errors import ChecksumMismatch, ObjectNotFound, StoreError

CHUNK_SIZE = 1024 * 1024
"""Bytes read at a time when streaming an object or a local file."""

RESERVED_PREFIX = ".distillrun."
"""Names that start with this are the store's own (checksum sidecars, temporary files). Keys may
not use them, and `list_keys` never shows them."""


class Readable(Protocol):
    """A binary source: a file opened for reading, `io.BytesIO`, ..."""

    def read(self, size: int = -1, /) -> bytes: ...


class Writable(Protocol):
    """A binary sink: a file opened for writing, `io.BytesIO`, ..."""

    def write(self, data: bytes, /) -> object: ...


def key_problem(key: str) -> str | None:
    """Why `key` is not a valid key, or None if it is. Keys are '/'-separated relative paths that
    stay inside the store root, so a key maps to the same place on every backend."""
    if not key:
        return "keys cannot be empty"
    if key.startswith("/"):
        return "keys are relative to the store root and cannot start with '/'"
    if "\x00" in key:
        return "keys cannot contain NUL characters"
    for part in key.split("/"):
        if part in ("", ".", ".."):
            return "empty, '.' and '..' path segments are not allowed (keys cannot leave the root)"
        if part.startswith(RESERVED_PREFIX):
            return f"names starting with {RESERVED_PREFIX!r} are reserved for the store itself"
    return None


def checked_chunks(
    source: Readable, size: int, sha256: str, where: str, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """Read exactly `size` bytes from `source` as chunks of `chunk_size` (the last may be
    shorter). After the last chunk, raise StoreError if the source was shorter or longer than
    `size` or its bytes do not hash to `sha256`. Backends commit only once this iterator is
    exhausted, so a recorded checksum always describes the committed bytes -- even when a local
    file changes while it is being uploaded."""
    digest = hashlib.sha256()
    remaining = size
    while remaining > 0:
        chunk = _read_up_to(source, min(chunk_size, remaining))
        if not chunk:
            break
        digest.update(chunk)
        remaining -= len(chunk)
        yield chunk
    if remaining or source.read(1) or digest.hexdigest() != sha256:
        raise StoreError(f"{where}: the source changed while it was being stored; nothing written")


def _read_up_to(source: Readable, size: int) -> bytes:
    """`size` bytes from `source`, fewer only at its end (a single `read` may return less)."""
    parts: list[bytes] = []
    missing = size
    while missing > 0:
        part = source.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


@contextmanager
def _local_errors(path: Path) -> Iterator[None]:
    """Report a failure on the local side of put_tree/get_tree with the local path (store-side
    failures are StoreErrors already and pass through)."""
    try:
        yield
    except OSError as e:
        raise StoreError(f"{path}: {e.strerror or e}") from e


def _file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def jsonl_values(data: bytes) -> Iterator[tuple[int, Any]]:
    """Each non-blank line of JSONL `data`: its number (from 1) and its JSON value, or, for a
    line that is not JSON, the ValueError saying why (no JSON value is one, so a caller tells
    them apart with `isinstance` and words the failure its own way)."""
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            yield number, e


def parse_jsonl(data: bytes, where: str) -> list[dict[str, Any]]:
    """The JSON objects of JSONL `data`, blank lines skipped; StoreError naming `where` and the
    line for anything else."""
    records: list[dict[str, Any]] = []
    for number, record in jsonl_values(data):
        if isinstance(record, ValueError):
            raise StoreError(f"{where}: line {number} is not valid JSON: {record}") from record
        if not isinstance(record, dict):
            raise StoreError(f"{where}: line {number} is not a JSON object")
        records.append(record)
    return records


class Store(ABC):
    """A view of an artifact store rooted at `uri`. Keys are '/'-separated paths relative to the
    root. Every write is atomic (a reader sees the old object, the new one, or none -- never a
    partial one) and records the object's sha256, which every read verifies."""

    uri: str
    require_checksums: bool
    """False for stores of inputs written by other tools (a base model, a seed file): objects
    with no recorded sha256 are then read as they are; a recorded one is still verified."""

    # -- backend primitives: keys and prefixes arrive already checked ----------------------

    @abstractmethod
    def _write(
        self, key: str, source: Readable, size: int, sha256: str, *, if_absent: bool
    ) -> bool:
        """Atomically store the `size` bytes of `source` (which hash to `sha256`) under `key`,
        recording the checksum; the bytes must pass through `checked_chunks` before commit.
        With `if_absent`, return False and change nothing if `key` already exists."""

    @abstractmethod
    def _read(self, key: str, sink: Writable) -> None:
        """Copy the object under `key` into `sink` through `_copy_verified`."""

    @abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abstractmethod
    def _list(self, prefix: str) -> list[str]:
        """Every key that starts with the string `prefix` (any order)."""

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def _sub(self, prefix: str) -> Store:
        """A store of the same backend rooted at `prefix` (a checked, non-empty key)."""

    # -- the public interface ---------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Store `data` under `key`. Returns True if written; with `if_absent`, returns False
        and changes nothing when `key` already exists (race-free against other writers)."""
        key = self._key(key)
        sha256 = hashlib.sha256(data).hexdigest()
        return self._write(key, io.BytesIO(data), len(data), sha256, if_absent=if_absent)

    def get_bytes(self, key: str) -> bytes:
        """The object under `key`, after verifying its recorded sha256."""
        sink = io.BytesIO()
        self._read(self._key(key), sink)
        return sink.getvalue()

    def exists(self, key: str) -> bool:
        return self._exists(self._key(key))

    def list_keys(self, prefix: str = "") -> list[str]:
        """Sorted keys that start with the string `prefix` ("a/" for everything under "a")."""
        return sorted(self._list(self._prefix(prefix)))

    def delete(self, key: str) -> None:
        """Delete the object under `key`; deleting a missing key is not an error."""
        self._delete(self._key(key))

    def url(self, key: str = "") -> str:
        """The full URI of `key` (or of a prefix, or of the root when empty)."""
        key = self._prefix(key)
        if not key:
            return self.uri
        return f"{self.uri}{'' if self.uri.endswith('/') else '/'}{key}"

    def sub(self, prefix: str) -> Store:
        """A view rooted at `uri/prefix` on the same backend with the same credentials (an
        empty prefix gives this view itself)."""
        prefix = self._prefix(prefix).rstrip("/")
        return self._sub(prefix) if prefix else self

    def put_json(self, key: str, obj: Any, *, if_absent: bool = False) -> bool:
        data = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
        return self.put_bytes(key, data.encode(), if_absent=if_absent)

    def get_json(self, key: str) -> Any:
        data = self.get_bytes(key)
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise StoreError(f"{self.url(key)}: not valid JSON: {e}") from e

    def put_jsonl(
        self, key: str, records: Iterable[Mapping[str, Any]], *, if_absent: bool = False
    ) -> bool:
        """Store `records` as JSON Lines (one compact object per line), in one atomic write."""
        lines = [json.dumps(dict(record), ensure_ascii=False) + "\n" for record in records]
        return self.put_bytes(key, "".join(lines).encode(), if_absent=if_absent)

    def read_jsonl(self, key: str) -> list[dict[str, Any]]:
        return parse_jsonl(self.get_bytes(key), self.url(key))

    def put_tree(self, prefix: str, local_dir: Path) -> None:
        """Upload every file under `local_dir` to `prefix/<relative path>`. Each file is written
        atomically; the tree as a whole is not, so callers write a done marker after it."""
        base = self._prefix(prefix).rstrip("/")
        root = Path(local_dir)
        if not root.is_dir():
            raise StoreError(f"{root}: not a directory; put_tree uploads a local directory")
        with _local_errors(root):
            files = sorted(path for path in root.rglob("*") if path.is_file())
        for path in files:
            relative = path.relative_to(root).as_posix()
            key = self._key(f"{base}/{relative}" if base else relative)
            with _local_errors(path):
                sha256, size = _file_sha256(path)
                with path.open("rb") as source:
                    self._write(key, source, size, sha256, if_absent=False)

    def get_tree(self, prefix: str, local_dir: Path) -> Path:
        """Download every key under `prefix` into `local_dir` (keys relative to `prefix`),
        verifying each checksum; a file appears under its final name only once verified.
        Raises ObjectNotFound when nothing is stored under `prefix`."""
        base = self._prefix(prefix).rstrip("/")
        keys = self.list_keys(f"{base}/" if base else "")
        if not keys:
            raise ObjectNotFound(f"{self.url(base)}: no objects under this prefix")
        root = Path(local_dir)
        for key in keys:
            target = root.joinpath(*key[len(base) + 1 if base else 0 :].split("/"))
            partial = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
            try:
                with _local_errors(target):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with partial.open("xb") as sink:
                        self._read(key, sink)
                    partial.replace(target)
            finally:
                with suppress(FileNotFoundError):
                    partial.unlink()
        return root

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    # -- for backends ------------------------------------------------------------------------

    def _copy_verified(
        self, where: str, chunks: Iterable[bytes], recorded: str | None, sink: Writable
    ) -> None:
        """Copy `chunks` into `sink` and raise ChecksumMismatch unless they hash to `recorded`
        (or, when checksums are not required, unless none was recorded). The sink holds
        unverified bytes until this returns: callers discard it on error."""
        if recorded is None and self.require_checksums:
            raise ChecksumMismatch(
                f"{where}: no sha256 was recorded for this object (written or changed outside "
                "distillrun?); refusing to use it"
            )
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
            sink.write(chunk)
        if recorded is not None and digest.hexdigest() != recorded:
            raise ChecksumMismatch(
                f"{where}: content has sha256 {digest.hexdigest()} but {recorded} was recorded "
                "when it was written; the object is corrupt or was changed outside distillrun"
            )

    # -- checks ------------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        problem = key_problem(key)
        if problem:
            raise StoreError(f"{self.uri}: invalid key {key!r}: {problem}")
        return key

    def _prefix(self, prefix: str) -> str:
        """Check a prefix: empty, or a key optionally followed by one '/'."""
        body = prefix[:-1] if prefix.endswith("/") else prefix
        problem = key_problem(body) if prefix else None
        if problem:
            raise StoreError(f"{self.uri}: invalid prefix {prefix!r}: {problem}")
        return prefix
