"""Shards through the Message Batches API: half the price, results within 24 hours.

A batch holds one request per shard, `custom_id` = the shard key, with exactly the parameters a
realtime call would send, so a shard's content does not depend on the mode. Results come back
in any order and are matched on `custom_id`. The generate stage stores the batch id before it
waits (so a restarted stage polls the same batch instead of paying for a new one); this module
only talks to the API.

Submission is retried only when the API answered with an error (then no batch was created),
never after a dropped connection: the SDK sends no idempotency key, so a retried POST could
create (and bill) a second batch. Such a failure stops the stage instead, saying so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

import anthropic

from distillrun.teacher.anthropic.errors import classify
from distillrun.teacher.anthropic.replies import message_params, message_usage, shard_output
from distillrun.teacher.base import ShardOutput, ShardRequest
from distillrun.teacher.errors import TeacherFailed, TeacherStop, Transient
from distillrun.teacher.estimate import worst_case_usd
from distillrun.teacher.prompt import build_prompt

if TYPE_CHECKING:  # the teacher imports this module to delegate to it
    from distillrun.teacher.anthropic.teacher import AnthropicTeacher


@dataclass
class BatchResults:
    """What an ended batch produced: a shard per succeeded request, and why the others did not."""

    outputs: dict[str, ShardOutput] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    cost: Decimal = Decimal(0)


MAX_TRANSIENT_POLLS = 20
"""Failed polls in a row after which waiting on a batch stops the stage."""


def _raise_stop(exc: Exception, teacher: AnthropicTeacher, what: str) -> Transient:
    """Raises if `exc` is a stop; returns the transient failure otherwise."""
    failure = classify(exc, teacher.api_key_variable)
    if isinstance(failure, TeacherStop):
        raise failure from exc
    return Transient(f"{what}: {failure.message}", failure.retry_after_s)


def worst_case(teacher: AnthropicTeacher, requests: Sequence[ShardRequest]) -> Decimal:
    """What a batch of `requests` can cost at most (batch prices)."""
    return sum(
        (worst_case_usd(build_prompt(r), teacher.price, batch=True) for r in requests),
        Decimal(0),
    )


def submit(teacher: AnthropicTeacher, requests: Sequence[ShardRequest]) -> str:
    """Creates one batch for `requests`; returns its id."""
    entries = [
        {
            "custom_id": r.key,
            "params": message_params(
                build_prompt(r), teacher.model, caching=teacher.prompt_caching
            ),
        }
        for r in requests
    ]
    retry = teacher.retry
    with teacher.client() as client:
        once = client.with_options(max_retries=0)
        attempt = 0
        while True:
            attempt += 1
            try:
                return once.messages.batches.create(requests=entries).id  # type: ignore[arg-type]
            except anthropic.APIConnectionError as exc:
                raise TeacherFailed(
                    "the connection dropped while submitting a batch, so whether it was created "
                    "is unknown; check the Anthropic console for a batch submitted now before "
                    "rerunning"
                ) from exc
            except anthropic.APIStatusError as exc:
                failure = _raise_stop(exc, teacher, "batch submission failed")
                if attempt >= retry.attempts:
                    raise TeacherFailed(failure.message) from exc
                time.sleep(retry.wait_s(attempt, failure.retry_after_s))


def _ended(client: anthropic.Anthropic, batch_id: str) -> bool:
    return client.messages.batches.retrieve(batch_id).processing_status == "ended"


def _results(
    client: anthropic.Anthropic,
    teacher: AnthropicTeacher,
    batch_id: str,
    requests: Mapping[str, ShardRequest],
) -> BatchResults:
    collected = BatchResults()
    for entry in client.messages.batches.results(batch_id):
        request = requests.get(entry.custom_id)
        if request is None:
            continue
        result = entry.result
        if result.type != "succeeded":
            detail = result.error.error.message if result.type == "errored" else ""
            collected.failed[request.key] = f"{result.type} {detail}".strip()
            continue
        cost = teacher.price.cost(message_usage(result.message), batch=True)
        collected.cost += cost
        collected.outputs[request.key] = shard_output(request, result.message, cost, teacher.label)
    for key in requests.keys() - collected.outputs.keys() - collected.failed.keys():
        collected.failed[key] = "missing from the batch results"
    return collected


def wait_and_collect(
    teacher: AnthropicTeacher,
    batch_id: str,
    requests: Mapping[str, ShardRequest],
    *,
    poll_interval_s: float,
) -> BatchResults:
    """Polls batch `batch_id` until it ends, then returns the shards it wrote, matched to
    `requests` by `custom_id`. Transient API failures are waited out (up to
    MAX_TRANSIENT_POLLS in a row); a stop (bad key, spend limit) is raised."""
    transient = 0
    with teacher.client() as client:
        while True:
            try:
                if _ended(client, batch_id):
                    return _results(client, teacher, batch_id, requests)
                transient = 0
            except anthropic.APIError as exc:
                failure = _raise_stop(exc, teacher, f"batch {batch_id}")
                transient += 1
                if transient >= MAX_TRANSIENT_POLLS:
                    raise TeacherFailed(
                        f"{failure.message} ({transient} failures in a row)"
                    ) from exc
            time.sleep(poll_interval_s)
