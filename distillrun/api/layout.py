"""Where everything lives in a run's prefix of the artifact store: every key, in one place.

The stages write under these keys, the operator reads the completion markers (never the data)
when a stage ends, and the report reads whatever is there. Each stage writes its completion
marker last, so a marker means the stage's outputs are complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distillrun.api.status import StageName

SPEC_KEY = "spec.json"
"""The resolved run, written before anything else."""
STATUS_KEY = "status.json"
"""A local run's status (a cluster run's is on the resource)."""
REPORT_KEY = "report.html"

# generate
SHARDS_PREFIX = "generate/shards/"
UNUSABLE_PREFIX = "generate/unusable/"
BATCHES_PREFIX = "generate/batches/"
ROUNDS_PREFIX = "generate/rounds/"
MANIFEST_KEY = "generate/_manifest.json"


def shard_object_key(key: str) -> str:
    """Where the teacher's shard `key` is committed."""
    return f"{SHARDS_PREFIX}{key}.json"


# validate
JUDGED_PREFIX = "validate/judged/"
ACCEPTED_KEY = "validate/accepted.jsonl"
REJECTED_KEY = "validate/rejected.jsonl"
VALIDATE_DONE_KEY = "validate/_done.json"
TRAIN_KEY = "dataset/train.jsonl"
HOLDOUT_KEY = "dataset/holdout.jsonl"

# the student's base model, when built or copied into the store
BASE_PREFIX = "student/base/"
BASE_DONE_KEY = "student/base/_done.json"

# train: the candidate adapter, published by evaluate only when it passes the accuracy gate
CANDIDATE_PREFIX = "train/adapter/"
CANDIDATE_DONE_KEY = "train/adapter/_done.json"
TRAIN_METRICS_KEY = "train/metrics.json"

# evaluate
PREDICTIONS_KEY = "evaluate/predictions.jsonl"
GOLD_PREDICTIONS_KEY = "evaluate/gold_predictions.jsonl"
METRICS_KEY = "evaluate/metrics.json"
TEACHER_ANSWERS_KEY = "evaluate/teacher_answers.json"
PUBLISHED_PREFIX = "adapter/"
PUBLISHED_DONE_KEY = "adapter/_done.json"
MERGED_DIR = "merged"
"""Under the published adapter: the base with the adapter merged in, when asked for."""


def compared_accuracies(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What the student's holdout accuracy in `METRICS_KEY` is compared with, under the flat
    names of evaluate's summary and the status: the base model's and the teacher's on the
    holdout, the student's on the gold set (None where not scored)."""

    def holdout(who: str) -> Any:
        return ((metrics.get(who) or {}).get("holdout") or {}).get("execution_accuracy")

    return {
        "base_execution_accuracy": holdout("base"),
        "teacher_execution_accuracy": holdout("teacher"),
        "gold_execution_accuracy": (metrics.get("gold_set") or {}).get("execution_accuracy"),
    }


SUMMARY_KEYS: Mapping[StageName, str] = {
    StageName.GENERATE: MANIFEST_KEY,
    StageName.VALIDATE: VALIDATE_DONE_KEY,
    StageName.TRAIN: CANDIDATE_DONE_KEY,
    StageName.EVALUATE: METRICS_KEY,
}
"""Each stage's completion marker; validate and train nest their numbers under `summary`."""


# failures
def failure_key(stage: StageName, attempt: int) -> str:
    """Where a stage attempt records the failure it could name (`api.failures.Failure`)."""
    return f"errors/{stage}-attempt-{attempt}.json"


def traceback_key(stage: StageName, attempt: int) -> str:
    """Where a crashed stage attempt in a RayJob leaves its traceback."""
    return f"errors/{stage}-attempt-{attempt}.traceback.txt"


def crash_key(name: str) -> str:
    """Where a local run leaves the traceback of `name` (a stage, or the report) crashing."""
    return f"errors/{name}.txt"
