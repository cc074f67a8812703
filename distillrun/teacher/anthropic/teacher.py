"""`AnthropicTeacher`: Claude writes a shard per Messages call, through the official SDK.

One call per shard: the cached system prompt, a per-shard user message, one forced tool call
back (`teacher.prompt`, `teacher.parsing`). Around the call (`teacher.calls.paid_call`): the
budget reservation for the call's worst case, the SDK with its own retries, each HTTP attempt
paced by the run's governor (`middleware`), and our retries beyond the SDK's for transient
failures. A failure retrying cannot fix stops the governor, and with it every shard in flight
(`errors.classify`).

The API key is read from the environment variable named by `api_key_variable` in the process
that makes the call, never stored on the object: the teacher is pickled into Ray tasks, and a
key must not travel with it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

import anthropic

from distillrun.api.spec import TeacherMode
from distillrun.teacher.anthropic import batch
from distillrun.teacher.anthropic.batch import BatchResults
from distillrun.teacher.anthropic.errors import classify
from distillrun.teacher.anthropic.middleware import GovernorMiddleware
from distillrun.teacher.anthropic.replies import message_params, message_usage, shard_output
from distillrun.teacher.base import ShardOutput, ShardRequest
from distillrun.teacher.calls import paid_call
from distillrun.teacher.errors import TeacherAuthFailed
from distillrun.teacher.estimate import worst_case_usd
from distillrun.teacher.model_api import ModelApiTeacher
from distillrun.teacher.prompt import build_prompt

TEACHER_NAME = "anthropic"
API_KEY_VARIABLE = "ANTHROPIC_API_KEY"


@dataclass(frozen=True, kw_only=True)
class AnthropicTeacher(ModelApiTeacher):
    """A Claude model as the teacher; see the module docstring. Its shard-key parameters are
    the common ones (`ModelApiTeacher.parameters`): the Messages API of SDK 2.12 takes no
    sampling parameters."""

    provider = TEACHER_NAME
    batch_api = True

    base_url: str | None = None
    mode: TeacherMode = TeacherMode.AUTO
    api_key_variable: str = API_KEY_VARIABLE
    prompt_caching: bool = True
    """Mark the system prompt for caching (turned off only to measure what caching saves)."""

    @property
    def billed_caching(self) -> bool:
        return self.prompt_caching

    # -- Message Batches (see `batch`) ------------------------------------------------------

    def batch_worst_case(self, requests: Sequence[ShardRequest]) -> Decimal:
        return batch.worst_case(self, requests)

    def submit_batch(self, requests: Sequence[ShardRequest]) -> str:
        return batch.submit(self, requests)

    def collect_batch(
        self, batch_id: str, requests: Mapping[str, ShardRequest], poll_interval_s: float
    ) -> BatchResults:
        return batch.wait_and_collect(self, batch_id, requests, poll_interval_s=poll_interval_s)

    @contextmanager
    def client(self) -> Iterator[anthropic.Anthropic]:
        """An SDK client for this process, closed afterwards; paced by the governor."""
        key = os.environ.get(self.api_key_variable)
        if not key:
            raise TeacherAuthFailed(f"{self.api_key_variable} is not set")
        middleware = [GovernorMiddleware(self.governor)] if self.governor else []
        client = anthropic.Anthropic(
            api_key=key,
            base_url=self.base_url,
            max_retries=self.retry.sdk_max_retries,
            timeout=self.retry.timeout_s,
            middleware=middleware,
        )
        with client:
            yield client

    def write_shard(self, request: ShardRequest) -> ShardOutput:
        """One shard through the Messages API (see the module docstring)."""
        governor = self.paced_by()
        prompt = build_prompt(request)
        params = message_params(prompt, self.model, caching=self.prompt_caching)
        worst = worst_case_usd(prompt, self.price, batch=False)
        with self.client() as client:
            message, cost = paid_call(
                lambda: client.messages.create(**params),
                governor=governor,
                worst_usd=worst,
                cost_of=lambda m: self.price.cost(message_usage(m)),
                classify=lambda exc: classify(exc, self.api_key_variable),
                retry=self.retry,
            )
        return shard_output(request, message, cost, self.label)
