"""The `file://` backend: a local directory (or a shared volume) where each object is a plain
file at its key's path, so datasets and adapters can be opened directly by other tools.

Layout, next to each object `dir/name`:
- `dir/.distillrun.name.sha256` -- the sidecar with the object's sha256 (`sha256sum` format);
- `dir/.distillrun.tmp.<random>` -- temporary files while a write is in flight (a crashed writer
  may leave some behind; they are never listed or read).

Why a directory lock: an object and its sidecar are two files, and no rename replaces two files
at once. Writers stage both as temporary files outside the lock, then take an exclusive
`flock` on the directory only for the two renames; readers take a shared lock just long enough
to open the object and read its sidecar. So a reader never pairs a new object with an old
checksum, and put-if-absent is race-free between threads and processes. The sidecar is renamed
into place first: a writer killed between the two renames leaves either an orphan sidecar (the
key stays absent, a retry writes it) or, when overwriting, the old bytes with the new checksum,
which fails verification loudly until the key is written again -- never silently wrong data.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

from distillrun.store.base import (
    CHUNK_SIZE,
    RESERVED_PREFIX,
    Readable,
    Store,
    Writable,
    checked_chunks,
)
from distillrun.store.errors import ObjectNotFound, StoreError


class FileStore(Store):
    """Objects as plain files under `root`, each with a sha256 sidecar."""

    def __init__(self, root: Path, *, require_checksums: bool = True) -> None:
        if not root.is_absolute():
            raise StoreError(f"{root}: a file store needs an absolute root directory")
        self.root = root
        self.uri = f"file://{root.as_posix()}"
        self.require_checksums = require_checksums

    def _write(
        self, key: str, source: Readable, size: int, sha256: str, *, if_absent: bool
    ) -> bool:
        path = self._path(key)
        where = self.url(key)
        with _os_errors(where), ExitStack() as cleanup:
            path.parent.mkdir(parents=True, exist_ok=True)
            data_tmp = self._temp(path.parent, cleanup)
            with data_tmp.open("xb") as f:
                for chunk in checked_chunks(source, size, sha256, where):
                    f.write(chunk)
                _sync(f)
            sidecar_tmp = self._temp(path.parent, cleanup)
            with sidecar_tmp.open("xb") as f:
                f.write(f"{sha256}  {path.name}\n".encode())
                _sync(f)
            with _locked(path.parent, exclusive=True) as directory:
                if if_absent and os.path.lexists(path):
                    return False
                sidecar_tmp.replace(_sidecar(path))
                data_tmp.replace(path)
                os.fsync(directory)
        return True

    def _read(self, key: str, sink: Writable) -> None:
        path = self._path(key)
        where = self.url(key)
        with _os_errors(where), ExitStack() as stack:
            with _locked(path.parent, exclusive=False):
                data = stack.enter_context(path.open("rb"))
                try:
                    recorded: str | None = _sidecar(path).read_text().split()[0]
                except (FileNotFoundError, IndexError):
                    recorded = None
            self._copy_verified(where, iter(lambda: data.read(CHUNK_SIZE), b""), recorded, sink)

    def _exists(self, key: str) -> bool:
        with _os_errors(self.url(key)):
            return self._path(key).is_file()

    def _list(self, prefix: str) -> list[str]:
        directory, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*directory.split("/")) if directory else self.root
        keys: list[str] = []
        with _os_errors(self.url(prefix)):
            if not start.is_dir():
                return keys
            for current, dirnames, filenames in os.walk(start, onerror=_reraise):
                dirnames[:] = [name for name in dirnames if not name.startswith(RESERVED_PREFIX)]
                relative = Path(current).relative_to(self.root).as_posix()
                for name in filenames:
                    key = name if relative == "." else f"{relative}/{name}"
                    if not name.startswith(RESERVED_PREFIX) and key.startswith(prefix):
                        keys.append(key)
        return keys

    def _delete(self, key: str) -> None:
        path = self._path(key)
        with _os_errors(self.url(key)):
            if not path.parent.is_dir():
                return
            with _locked(path.parent, exclusive=True) as directory:
                path.unlink(missing_ok=True)
                _sidecar(path).unlink(missing_ok=True)
                os.fsync(directory)

    def _sub(self, prefix: str) -> Store:
        return FileStore(self._path(prefix), require_checksums=self.require_checksums)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    @staticmethod
    def _temp(directory: Path, cleanup: ExitStack) -> Path:
        """A fresh temporary name in `directory`, removed on exit unless renamed away first."""
        path = directory / f"{RESERVED_PREFIX}tmp.{secrets.token_hex(8)}"
        cleanup.callback(path.unlink, missing_ok=True)
        return path


def _sidecar(path: Path) -> Path:
    return path.with_name(f"{RESERVED_PREFIX}{path.name}.sha256")


def _sync(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())


def _reraise(error: OSError) -> None:
    raise error


@contextmanager
def _locked(directory: Path, *, exclusive: bool) -> Iterator[int]:
    """Hold a `flock` on `directory` itself (no lock files); yields the directory's descriptor,
    which also serves to fsync the renames done under the lock."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _os_errors(where: str) -> Iterator[None]:
    """The one place where file-system errors become store errors a user can act on."""
    try:
        yield
    except FileNotFoundError as e:
        raise ObjectNotFound(f"{where}: no such object") from e
    except PermissionError as e:
        raise StoreError(f"{where}: permission denied ({e.filename})") from e
    except IsADirectoryError as e:
        raise StoreError(f"{where}: is a directory (a prefix), not an object") from e
    except (NotADirectoryError, FileExistsError) as e:
        # FileExistsError: mkdir(parents=True) met an object where a directory must go.
        raise StoreError(f"{where}: a parent of this key is an object, not a directory") from e
    except OSError as e:
        raise StoreError(f"{where}: {e.strerror or e}") from e
