"""Running the training loop: in this process, or on Ray Train across workers x GPUs.

One CPU worker without DeepSpeed (the quickstart, tests) trains in-process: starting a Ray
Train worker group would only add seconds. Everything else runs as a Ray Train `TorchTrainer`
with one worker process per GPU (`workers x gpusPerWorker`, packed onto as few nodes as
possible) or one per CPU worker, NCCL between GPUs and gloo between CPU workers, the profile's
NCCL settings in every worker's environment, and `FailureConfig(max_failures=...)`: when a
worker dies Ray replaces the group, and the loop resumes from the latest complete checkpoint
in the store. A driver that dies is replaced by running the stage again, which resumes the
same way.

Rank 0 reports progress through a Ray queue that this process drains into the stage's
ProgressSink. The loop runs on the Ray the caller started (the local runner, a RayJob) or, if
there is none, on a local one started and stopped here.
"""

from __future__ import annotations

import os
import queue as stdlib_queue
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from distillrun.api.failures import FailureReason
from distillrun.api.status import StageName
from distillrun.jobs.context import ProgressSink, StageFailed
from distillrun.jobs.training.plan import TrainingPlan
from distillrun.jobs.training.worker import TrainingRefused, WorkerJob, train_worker

WORKER_RESTARTS = 3
"""Worker-group failures survived before training fails (each resumes from a checkpoint)."""

_DRAIN_INTERVAL_S = 0.5


def runs_in_process(plan: TrainingPlan) -> bool:
    """True when the loop runs right here: one CPU worker, no DeepSpeed."""
    return plan.world_size == 1 and plan.accelerator == "cpu" and plan.deepspeed is None


def run_training(job: WorkerJob, progress: ProgressSink) -> None:
    """Runs the training loop where the plan says; StageFailed for what a user can fix."""
    try:
        if runs_in_process(job.plan):
            train_worker(job, progress)
        else:
            _on_ray(job, progress)
    except TrainingRefused as refused:
        raise StageFailed(StageName.TRAIN, refused.reason, refused.message) from None


class QueueProgress:
    """A ProgressSink inside a Ray worker: forwards to the driver through a Ray queue."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def counts(
        self, stage: StageName, values: dict[str, float | int], total: int | None = None
    ) -> None:
        self._queue.put(("counts", str(stage), dict(values), total))

    def note(self, stage: StageName, message: str) -> None:
        self._queue.put(("note", str(stage), message, None))


def _ray_worker(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs."""
    train_worker(config["job"], QueueProgress(config["progress"]))


def _forward(event: tuple[str, str, Any, Any], progress: ProgressSink) -> None:
    kind, stage, payload, total = event
    if kind == "counts":
        progress.counts(StageName(stage), payload, total=total)
    else:
        progress.note(StageName(stage), payload)


def _cluster_resources() -> dict[str, float]:
    """What the Ray cluster has, or -- before a local one is started -- what this machine has."""
    import ray

    if ray.is_initialized():
        total: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        return total
    import torch

    return {"CPU": float(len(os.sched_getaffinity(0))), "GPU": float(torch.cuda.device_count())}


def _check_cluster(plan: TrainingPlan) -> None:
    """Fails at once when the Ray cluster can never hold the worker group (Ray would wait)."""
    total = _cluster_resources()
    gpus_needed = plan.world_size if plan.accelerator == "cuda" else 0
    cpus_needed = plan.world_size * plan.cpus_per_process
    have_gpus, have_cpus = int(total.get("GPU", 0)), int(total.get("CPU", 0))
    if gpus_needed > have_gpus:
        qlora = plan.method == "qlora"
        raise StageFailed(
            StageName.TRAIN,
            FailureReason.QLORA_UNAVAILABLE if qlora else FailureReason.INSUFFICIENT_RESOURCES,
            f"the plan needs {gpus_needed} GPU(s) ({plan.workers} workers x "
            f"{plan.gpus_per_worker} gpusPerWorker, profile {plan.profile}) and the Ray "
            f"cluster has {have_gpus}"
            + (
                "; method qlora needs CUDA GPUs (4-bit weights through bitsandbytes)"
                if qlora
                else ""
            ),
        )
    if cpus_needed > have_cpus:
        raise StageFailed(
            StageName.TRAIN,
            FailureReason.INSUFFICIENT_RESOURCES,
            f"the plan needs {cpus_needed} CPU(s) ({plan.world_size} workers x "
            f"{plan.cpus_per_process} from profile {plan.profile}) and the Ray cluster has "
            f"{have_cpus}",
        )


def _refusal(error: BaseException) -> TrainingRefused | None:
    """The TrainingRefused a worker raised, if that is why Ray Train gave up."""
    seen: list[BaseException] = [error]
    while seen:
        current = seen.pop()
        if isinstance(current, TrainingRefused):
            return current
        failures = getattr(current, "worker_failures", None)
        if isinstance(failures, dict):
            seen.extend(f for f in failures.values() if isinstance(f, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                seen.append(linked)
    return None


def _on_ray(job: WorkerJob, progress: ProgressSink) -> None:
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Empty, Queue

    plan = job.plan
    _check_cluster(plan)
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=len(os.sched_getaffinity(0)),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        events = Queue(actor_options={"num_cpus": 0})
        gpu = plan.accelerator == "cuda"
        resources: dict[str, float] = {"CPU": float(plan.cpus_per_process)}
        if gpu:
            resources["GPU"] = 1.0
        with tempfile.TemporaryDirectory(prefix="distillrun-ray-train-") as storage:
            trainer = TorchTrainer(
                _ray_worker,
                train_loop_config={"job": job, "progress": events},
                scaling_config=ScalingConfig(
                    num_workers=plan.world_size,
                    use_gpu=gpu,
                    resources_per_worker=resources,
                    placement_strategy="PACK",
                ),
                torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
                # Ray 2.60 runs Train V2, whose RunConfig has worker_runtime_env; its stubs
                # still describe V1's.
                run_config=RunConfig(  # type: ignore[call-arg]
                    name=f"{job.run_name}-{job.launch_token}",
                    storage_path=storage,
                    failure_config=FailureConfig(max_failures=WORKER_RESTARTS),
                    worker_runtime_env={"env_vars": dict(plan.env)} if plan.env else None,
                ),
            )
            with _known_ray_warnings():
                outcome = _in_thread(trainer.fit)
                while not outcome.done.wait(_DRAIN_INTERVAL_S):
                    _drain(events, progress, Empty)
            _drain(events, progress, Empty)
        if outcome.error is not None:
            refused = _refusal(outcome.error)
            if refused is not None:
                raise refused
            raise outcome.error
        result_error = getattr(outcome.value, "error", None)
        if isinstance(result_error, BaseException):
            raise result_error
    finally:
        if started:
            ray.shutdown()


@contextmanager
def _known_ray_warnings() -> Iterator[None]:
    """Silences one known Ray mismatch and nothing else: Ray 2.60's trainer deep-copies Ray
    Data's DataContext, whose `__setattr__` then warns about every deprecated field it copies
    (`use_push_based_shuffle`, `use_polars`, ...). The filters are process-wide, so they also
    cover the thread `fit` runs in. Remove once Ray stops warning about its own defaults."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.data\.context")
        warnings.filterwarnings(
            "ignore", message=r"`target_shuffle_max_block_size` is deprecated", module=r"ray\.data"
        )
        yield


def _drain(events: Any, progress: ProgressSink, empty: type[Exception]) -> None:
    while True:
        try:
            event = events.get_nowait()
        except (empty, stdlib_queue.Empty):
            return
        _forward(event, progress)


class _Outcome:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


def _in_thread(call: Callable[[], Any]) -> _Outcome:
    """Runs `call` in a thread, so this one can relay progress while it runs."""
    outcome = _Outcome()

    def target() -> None:
        try:
            outcome.value = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome.error = exc
        finally:
            outcome.done.set()

    threading.Thread(target=target, name="distillrun-ray-train", daemon=True).start()
    return outcome
