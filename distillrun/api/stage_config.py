"""The document a stage attempt runs from: what the operator writes into the attempt's
ConfigMap (`run.json`) and the stage's entrypoint reads.

A stage reads only this document and the artifact store, never the DistillRun resource. `run`
stays the run's wire form here and is parsed by the entrypoint (`parse_run`), so a run this
version cannot read fails the attempt with a message naming the field, recorded for the
operator like any named failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from distillrun.api.resource import DistillRun, parse_run
from distillrun.api.status import StageName

CONFIG_KEY = "run.json"
"""The document's file name: the ConfigMap's key and the file the entrypoint is given."""


class StageConfig(BaseModel):
    """One stage attempt: the resolved run, which stage, which attempt, the run's store prefix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: Annotated[
        dict[str, Any], Field(description="The run's wire form, every SQL source inlined.")
    ]
    stage: StageName
    attempt: Annotated[int, Field(ge=1)]
    store: Annotated[str, Field(min_length=1, description="The run's own prefix in the store.")]

    def to_json(self) -> str:
        """The document's text (keys sorted: the same run gives the same bytes)."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> StageConfig:
        """The document at `path` (written by the operator: a malformed one is a bug)."""
        return cls.model_validate_json(path.read_bytes())

    def parsed_run(self, source: str) -> DistillRun:
        """The run; ManifestError (naming `source` and the field) if it does not validate."""
        return parse_run(self.run, source)
