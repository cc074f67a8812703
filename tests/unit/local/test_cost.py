"""What a local run records and prints of the teacher's cost: every field the server reported,
cache writes included, exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distillrun.api.status import Cost, DistillRunStatus
from distillrun.jobs import generate, train, validate
from distillrun.jobs.context import SilentProgress, StageContext, StageResult
from distillrun.local.runner import run_manifest
from distillrun.local.summary import render_summary
from distillrun.teacher.accounting import usage_sum
from distillrun.teacher.base import ShardOutput, Usage
from distillrun.teacher.pricing import from_usd
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.fixtures import list_usd, manifest_data


def test_the_status_and_summary_carry_the_cost_the_server_reported(
    tmp_path: Path, anthropic_env: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_training(ctx: StageContext) -> StageResult:
        raise RuntimeError("generate and validate are enough here")

    monkeypatch.setattr(train, "run", no_training)
    manifest = tmp_path / "run.yaml"
    manifest.write_text(yaml.safe_dump(manifest_data(baseUrl=anthropic_env.url)))
    outcome = run_manifest(manifest, str(tmp_path / "store"), SilentProgress(), use_ray=False)

    billed = anthropic_env.billed
    assert billed.cache_creation_input_tokens > 0 and billed.cache_read_input_tokens > 0
    usd = list_usd(billed)
    cost = DistillRunStatus.model_validate(outcome.store.get_json("status.json")).cost
    assert cost == outcome.status.cost
    assert cost.model_dump(exclude={"usd"}) == Cost(
        input_tokens=billed.input_tokens,
        output_tokens=billed.output_tokens,
        cache_read_tokens=billed.cache_read_input_tokens,
        cache_write_tokens=billed.cache_creation_input_tokens,
    ).model_dump(exclude={"usd"})
    assert from_usd(cost.usd) == usd
    assert (
        f"({billed.input_tokens} in / {billed.output_tokens} out / "
        f"{billed.cache_read_input_tokens} cache read / "
        f"{billed.cache_creation_input_tokens} cache write tokens)"
    ) in render_summary(outcome)

    # Every record carries its share: the records of the dataset and the rejects, plus what no
    # record could take (unparseable reply items), add up to the bill exactly.
    store = outcome.store
    records = [
        Usage.model_validate(r["usage"])
        for key in (validate.ACCEPTED_KEY, validate.REJECTED_KEY)
        for r in store.read_jsonl(key)
    ]
    shards = [
        ShardOutput.model_validate_json(store.get_bytes(key))
        for key in store.list_keys(generate.SHARDS_PREFIX)
    ]
    total = usage_sum([*records, *(s.unattributed for s in shards)])
    assert total == usage_sum(s.usage for s in shards)
    assert (total.input_tokens, total.output_tokens) == (billed.input_tokens, billed.output_tokens)
    assert from_usd(total.usd) == usd
    train_records = store.read_jsonl(validate.TRAIN_KEY)
    assert train_records and all(r["usage"]["output_tokens"] > 0 for r in train_records)
