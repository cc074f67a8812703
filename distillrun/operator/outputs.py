"""The stages' results as the operator reads them from the artifact store.

A stage writes its outputs under deterministic keys (`distillrun.api.layout`) and a completion
marker last; the operator reads the marker (never the data) when a stage ends, for the counts,
cost and accuracy in the status. A stage that fails with a reason of its own also writes
`errors/<stage>-attempt-<n>.json` (`distillrun.api.failures.Failure`); the operator reads it to
tell a budget spent from a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distillrun.api.failures import Failure
from distillrun.api.layout import (
    PUBLISHED_DONE_KEY,
    PUBLISHED_PREFIX,
    REPORT_KEY,
    SUMMARY_KEYS,
    compared_accuracies,
    failure_key,
)
from distillrun.api.status import StageName
from distillrun.store import ObjectNotFound, Store, open_store


class StoreOutputs:
    """`planner.Outputs` over one run's prefix in the artifact store (opened on first use);
    with no store (`store_uri` None: the run cannot have started) there are no outputs."""

    def __init__(self, store_uri: str | None) -> None:
        self.store_uri = store_uri
        self._store: Store | None = None

    def _json(self, key: str) -> Any:
        if self.store_uri is None:
            return None
        if self._store is None:
            self._store = open_store(self.store_uri)
        try:
            return self._store.get_json(key)
        except ObjectNotFound:
            return None

    def summary(self, stage: StageName) -> Mapping[str, Any] | None:
        data = self._json(SUMMARY_KEYS[stage])
        if not isinstance(data, dict):
            return None
        nested = data.get("summary")
        summary = dict(nested if isinstance(nested, dict) else data)
        if stage == StageName.EVALUATE:  # the scores, flat as the stage's summary has them
            summary.update(compared_accuracies(data))
        if stage == StageName.EVALUATE and self._json(PUBLISHED_DONE_KEY) is not None:
            assert self._store is not None  # opened by the reads above
            summary["adapter"] = self._store.url(PUBLISHED_PREFIX)
        if stage == StageName.EVALUATE:
            assert self._store is not None
            if self._store.exists(REPORT_KEY):  # drawn by the evaluate job (jobs.entrypoint)
                summary["report"] = self._store.url(REPORT_KEY)
        return summary

    def failure(self, stage: StageName, attempt: int) -> Failure | None:
        data = self._json(failure_key(stage, attempt))
        if not isinstance(data, dict):
            return None
        return Failure.of_json(data)
