"""The Ray executor: a task whose worker dies ends the stage instead of running again behind
its back (a teacher call in it may be paid for already, and its budget reservation is gone)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from distillrun.local.runner import local_ray


def test_a_task_whose_worker_dies_is_not_run_again(tmp_path: Path) -> None:
    import ray

    def count_then_die(marker: Path) -> None:  # local: pickled by value into the worker
        with marker.open("a") as runs:
            runs.write("ran\n")
        os._exit(1)

    marker = tmp_path / "runs.txt"
    with local_ray(1) as executor, pytest.raises(ray.exceptions.RayError):
        list(executor.map_unordered(count_then_die, [marker]))
    assert marker.read_text().splitlines() == ["ran"]
