"""The stage config: what the operator writes is what the entrypoint reads, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from distillrun.api.resource import parse_run
from distillrun.api.stage_config import StageConfig
from distillrun.api.status import StageName
from distillrun.operator.builders.config import stage_config
from tests.unit.operator.conftest import cpu_manifest


def test_the_document_the_operator_writes_reads_back_as_the_same_run(tmp_path: Path) -> None:
    run = parse_run(cpu_manifest())
    written = stage_config(run, StageName.TRAIN, 2, "s3://b/team-a/shop/uid", {})
    path = tmp_path / "run.json"
    path.write_text(written.to_json())
    read = StageConfig.read(path)
    assert read == written
    assert (read.stage, read.attempt) == (StageName.TRAIN, 2)
    assert read.parsed_run(str(path)).spec == run.spec


@pytest.mark.parametrize(
    ("change", "field"),
    [({"attempt": 0}, "attempt"), ({"stage": "deploy"}, "stage"), ({"extra": 1}, "extra")],
)
def test_a_document_out_of_contract_is_refused_naming_the_field(
    change: dict[str, object], field: str
) -> None:
    document = {"run": {}, "stage": "generate", "attempt": 1, "store": "s3://b/p", **change}
    with pytest.raises(ValidationError, match=field):
        StageConfig.model_validate(document)
