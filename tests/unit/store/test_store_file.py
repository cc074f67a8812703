"""file:// specifics: objects are plain files with a sidecar checksum, writes leave no
temporary files, and concurrent writers and readers in several threads never see a torn
object/checksum pair or lose a put-if-absent race."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import pytest

from distillrun.store import ChecksumMismatch, Store, StoreError, open_store


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def store(root: Path) -> Store:
    return open_store(f"file://{root}")


def on_disk(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_objects_are_plain_files_with_a_sha256sum_sidecar(store: Store, root: Path) -> None:
    store.put_bytes("dataset/train.jsonl", b'{"q": 1}\n')
    assert (root / "dataset" / "train.jsonl").read_bytes() == b'{"q": 1}\n'
    sidecar = root / "dataset" / ".distillrun.train.jsonl.sha256"
    digest = hashlib.sha256(b'{"q": 1}\n').hexdigest()
    assert sidecar.read_text() == f"{digest}  train.jsonl\n"
    assert on_disk(root) == ["dataset/.distillrun.train.jsonl.sha256", "dataset/train.jsonl"]
    assert store.list_keys() == ["dataset/train.jsonl"]
    store.delete("dataset/train.jsonl")
    assert on_disk(root) == []


def test_failed_and_refused_writes_leave_no_temporary_files(store: Store, root: Path) -> None:
    store.put_bytes("a.json", b"1", if_absent=True)
    store.put_bytes("a.json", b"2", if_absent=True)
    with pytest.raises(StoreError):
        store._write("b.json", io.BytesIO(b"12"), 3, "0" * 64, if_absent=False)
    assert on_disk(root) == [".distillrun.a.json.sha256", "a.json"]


def test_leftovers_of_a_killed_writer_are_harmless(store: Store, root: Path) -> None:
    root.mkdir()
    # Killed after staging its files, or between renaming the sidecar and the object.
    (root / ".distillrun.tmp.0123456789abcdef").write_bytes(b"partial")
    (root / ".distillrun.shard.jsonl.sha256").write_text(f"{'0' * 64}  shard.jsonl\n")
    assert store.list_keys() == []
    assert not store.exists("shard.jsonl")
    assert store.put_bytes("shard.jsonl", b"complete", if_absent=True) is True
    assert store.get_bytes("shard.jsonl") == b"complete"


def test_keys_that_collide_with_directories_are_refused(store: Store) -> None:
    store.put_bytes("adapter", b"a file")
    with pytest.raises(StoreError, match="a parent of this key is an object"):
        store.put_bytes("adapter/config.json", b"{}")
    store.put_bytes("train/step-1/weights", b"w")
    with pytest.raises(StoreError, match="is a directory"):
        store.put_bytes("train/step-1", b"x")
    with pytest.raises(StoreError, match="is a directory"):
        store.get_bytes("train")
    assert store.get_bytes("adapter") == b"a file"


def test_put_if_absent_races_have_exactly_one_winner(store: Store) -> None:
    writers = 8
    for round_ in range(20):
        key = f"generate/shards/{round_}.jsonl"
        start = threading.Barrier(writers)
        won: list[int] = []

        def write(
            n: int, key: str = key, start: threading.Barrier = start, won: list[int] = won
        ) -> None:
            start.wait()
            if store.put_bytes(key, f"writer {n}\n".encode() * 1000, if_absent=True):
                won.append(n)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1
        assert store.get_bytes(key) == f"writer {won[0]}\n".encode() * 1000


def test_readers_never_see_an_object_with_another_objects_checksum(store: Store) -> None:
    versions = [bytes([n]) * (64 * 1024 + n) for n in range(5)]
    store.put_bytes("evaluate/metrics.json", versions[0])
    stop = threading.Event()
    failures: list[BaseException] = []

    def overwrite() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            store.put_bytes("evaluate/metrics.json", versions[n % len(versions)])

    def read() -> None:
        for _ in range(200):
            try:
                assert store.get_bytes("evaluate/metrics.json") in versions
            except (ChecksumMismatch, AssertionError) as e:
                failures.append(e)
                return

    writer = threading.Thread(target=overwrite)
    readers = [threading.Thread(target=read) for _ in range(2)]
    writer.start()
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    stop.set()
    writer.join()
    assert failures == []
