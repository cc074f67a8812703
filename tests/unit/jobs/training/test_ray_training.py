"""Ray Train with two CPU workers (gloo) and DeepSpeed ZeRO-2 on the builtin tiny student: one
training run, in which a worker is killed after the first checkpoint reaches the store. The
run must come back by itself, resume from that checkpoint, finish, and leave an adapter that
plain peft loads. Each test below checks one part of what that run left behind."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from distillrun.jobs import train
from distillrun.jobs.context import StageContext, StageResult
from distillrun.jobs.training import checkpoints

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("offline_hub")]

Record = dict[str, Any]

INTERVAL = 10
STEPS = 40
# A team profile (DISTILLRUN_PROFILES_DIR): the cpu profile with DeepSpeed ZeRO-2.
PROFILE = """\
name: custom-cpu-zero2
extends: cpu
description: CPU workers with DeepSpeed ZeRO-2, to run the DeepSpeed path without a GPU
deepspeed: zero2
"""
SPEC = {
    "student": {
        "hardwareProfile": "custom-cpu-zero2",
        "gpusPerWorker": 0,
        "workers": 2,
        "maxSteps": STEPS,
        "microBatchSize": 4,
        "maxSeqLength": 256,
        "learningRate": 0.005,
        "checkpointEverySteps": INTERVAL,
    },
    "evaluation": {"maxNewTokens": 16, "duringTraining": {"everySteps": 20, "examples": 4}},
}


@dataclass
class KilledRun:
    ctx: StageContext
    result: StageResult
    checkpoint_before_kill: int
    killed_pid: int
    tmp: Path


def _descendants(root: int) -> set[int]:
    """Processes under `root` (this test's own Ray cluster, not anyone else's)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _train_workers() -> list[int]:
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"RayTrainWorker" in command:
            pids.append(pid)
    return sorted(pids)


@pytest.fixture(scope="module")
def killed_run(
    tmp_path_factory: pytest.TempPathFactory,
    shop_records: list[Record],
    context_at: Callable[[Path, dict[str, Any]], StageContext],
) -> Iterator[KilledRun]:
    import ray

    tmp = tmp_path_factory.mktemp("ray-training")
    profiles = tmp / "profiles"
    profiles.mkdir()
    (profiles / "custom-cpu-zero2.yaml").write_text(PROFILE)
    patch = pytest.MonkeyPatch()
    patch.setenv("DISTILLRUN_PROFILES_DIR", str(profiles))
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv("TRANSFORMERS_OFFLINE", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ctx = context_at(tmp / "store", SPEC)
        ctx.store.put_jsonl("dataset/train.jsonl", shop_records[:64])
        ctx.store.put_jsonl("dataset/holdout.jsonl", shop_records[64:72])
        outcome: dict[str, Any] = {}

        def training() -> None:
            try:
                outcome["result"] = train.run(ctx)
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=training)
        thread.start()
        seen = killed = 0
        deadline = time.monotonic() + 600
        while thread.is_alive() and not killed and time.monotonic() < deadline:
            done = sorted(
                int(key.split("/")[2].removeprefix("step-"))
                for key in ctx.store.list_keys(checkpoints.PREFIX)
                if key.endswith("/" + checkpoints.DONE)
            )
            workers = _train_workers()
            if done and workers:
                seen = done[-1]
                killed = workers[-1]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.1)
        thread.join(timeout=max(deadline - time.monotonic(), 1))
        if "error" in outcome:
            raise outcome["error"]
        assert killed, "training finished before a worker could be killed"
        yield KilledRun(ctx, outcome["result"], seen, killed, tmp)
    finally:
        ray.shutdown()
        patch.undo()


def test_two_workers_train_with_deepspeed_and_the_loss_goes_down(killed_run: KilledRun) -> None:
    metrics = killed_run.ctx.store.get_json("train/metrics.json")
    assert metrics["plan"]["world_size"] == 2
    assert metrics["plan"]["deepspeed"] == "zero2"
    assert metrics["steps"] == STEPS
    losses = [p["loss"] for p in metrics["loss_history"]]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_a_killed_worker_resumes_from_the_latest_complete_checkpoint(
    killed_run: KilledRun, progress_of: Callable[[StageContext], Any]
) -> None:
    summary = killed_run.result.summary
    resumed = summary["resumed_from_step"]
    assert resumed >= killed_run.checkpoint_before_kill >= INTERVAL
    assert resumed % INTERVAL == 0
    assert summary["steps"] == STEPS
    # The loss history holds every step once: before the checkpoint from the first attempt,
    # after it from the second.
    steps = [p["step"] for p in killed_run.ctx.store.get_json("train/metrics.json")["loss_history"]]
    assert steps == list(range(1, STEPS + 1))
    # Rank 0's notes reach the driver's progress through the Ray queue.
    notes = [message for _, message in progress_of(killed_run.ctx).notes]
    assert f"resuming from the checkpoint at step {resumed}" in notes
    # Checkpoints are scaffolding: gone once the adapter is stored.
    assert killed_run.ctx.store.list_keys("train/checkpoints/") == []


def test_holdout_sample_accuracy_is_recorded_during_training(killed_run: KilledRun) -> None:
    samples = killed_run.ctx.store.get_json("train/metrics.json")["sample_accuracy_history"]
    assert [s["step"] for s in samples] == [20, 40]
    assert all(s["examples"] == 4 and 0.0 <= s["execution_accuracy"] <= 1.0 for s in samples)


def test_the_adapter_reloads_with_peft(killed_run: KilledRun) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from distillrun.jobs.student import known_library_warnings

    store = killed_run.ctx.store
    base_dir = store.get_tree("student/base/", killed_run.tmp / "base")
    adapter_dir = store.get_tree("train/adapter/", killed_run.tmp / "adapter")
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    with known_library_warnings():
        model = PeftModel.from_pretrained(base, adapter_dir)
    trained = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert trained and any(p.abs().sum() > 0 for p in trained)
    card = (adapter_dir / "README.md").read_text()
    assert "custom-cpu-zero2" in card and "zero2" in card
