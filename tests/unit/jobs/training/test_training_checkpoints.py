"""Checkpoints in the store count only when complete: marked done, of this training, with every
file they list; everything else is ignored and pruned."""

from __future__ import annotations

from pathlib import Path

from distillrun.jobs.training import checkpoints
from distillrun.store import Store, open_store

FP = "a" * 64


def _write(store: Store, tmp_path: Path, step: int, files: dict[str, bytes]) -> None:
    local = tmp_path / f"local-{step}"
    local.mkdir()
    for name, data in files.items():
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(data)
    checkpoints.upload(store, step, local)


def test_only_complete_checkpoints_of_this_training_count(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    _write(store, tmp_path, 10, {"adapter_model.safetensors": b"w10", "rng_state_0.pth": b"r"})
    checkpoints.commit(store, 10, FP, {"world_size": 2})
    _write(store, tmp_path, 20, {"adapter_model.safetensors": b"w20", "global_step20/x.pt": b"o"})
    checkpoints.commit(store, 20, FP, {"world_size": 2})
    # A newer one cut short before its marker, and one of another training.
    _write(store, tmp_path, 30, {"adapter_model.safetensors": b"w30"})
    _write(store, tmp_path, 40, {"adapter_model.safetensors": b"w40"})
    checkpoints.commit(store, 40, "b" * 64, {})

    latest = checkpoints.latest(store, FP)
    assert latest is not None and latest.step == 20
    assert sorted(latest.marker["files"]) == ["adapter_model.safetensors", "global_step20/x.pt"]
    assert [c.step for c in checkpoints.complete_checkpoints(store, FP)] == [10, 20]

    # A listed file gone missing makes it incomplete too.
    store.delete("train/checkpoints/step-00000020/global_step20/x.pt")
    latest = checkpoints.latest(store, FP)
    assert latest is not None and latest.step == 10

    local = checkpoints.download(store, latest, tmp_path / "resume")
    assert (local / "adapter_model.safetensors").read_bytes() == b"w10"
    assert not (local / checkpoints.DONE).exists()


def test_prune_keeps_the_newest_complete_ones_and_drops_the_rest(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    for step in (5, 10, 15):
        _write(store, tmp_path, step, {"state.pt": str(step).encode()})
        checkpoints.commit(store, step, FP, {})
    _write(store, tmp_path, 20, {"state.pt": b"partial"})

    checkpoints.prune(store, FP, keep=2)
    assert [c.step for c in checkpoints.complete_checkpoints(store, FP)] == [10, 15]
    assert not store.list_keys("train/checkpoints/step-00000005/")
    assert not store.list_keys("train/checkpoints/step-00000020/")

    checkpoints.prune(store, FP, keep=0)
    assert store.list_keys("train/checkpoints/") == []
    assert checkpoints.latest(store, FP) is None


def test_an_unreadable_marker_is_not_resumed_from(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    for step in (10, 20):
        _write(store, tmp_path, step, {"state.pt": str(step).encode()})
        checkpoints.commit(store, step, FP, {})
    marker = tmp_path / "store" / "train/checkpoints/step-00000020" / checkpoints.DONE
    marker.write_bytes(b'{"step": 20, "finger')  # cut short on disk

    latest = checkpoints.latest(store, FP)
    assert latest is not None and latest.step == 10
    checkpoints.prune(store, FP)
    assert not store.list_keys("train/checkpoints/step-00000020/")
