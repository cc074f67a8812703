"""`ModelApiTeacher`: what every teacher that calls a model's API shares, whatever the provider.

A provider's teacher (`teacher.anthropic`, `teacher.openai_compatible`) adds how one shard is
asked for and how its failures map; the rest is here once: the fields a spec sets (model, price,
reasoning, retries, the environment variable holding the key), the shard-key parameters, the
label examples record, the governor every call is paced and paid through, and the cost estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Self

from distillrun.api.spec import RateLimits
from distillrun.teacher.base import ShardRequest
from distillrun.teacher.calls import RetryPolicy
from distillrun.teacher.estimate import CostEstimate, estimate
from distillrun.teacher.governor import GovernorClient
from distillrun.teacher.pricing import ModelPrice
from distillrun.teacher.prompt import TEMPLATE_VERSION, build_prompt


@dataclass(frozen=True, kw_only=True)
class ModelApiTeacher:
    """The common part of a model-API teacher; see the module docstring."""

    provider: ClassVar[str]
    """The teacher's name (`Teacher.name`), also the first part of its label."""
    batch_api: ClassVar[bool] = False
    """Whether the provider has a discounted batch API the estimate may count on."""

    model: str
    price: ModelPrice
    reasoning: bool = True
    api_key_variable: str
    """The environment variable the key is read from, in the process making the call: a key
    is never stored on the teacher, which is pickled into Ray tasks."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    governor: GovernorClient | None = None

    @property
    def name(self) -> str:
        return self.provider

    @property
    def parameters(self) -> dict[str, Any]:
        """What decides a shard's content besides the schema and seed (not the endpoint,
        limits or budget): part of the shard key."""
        return {"model": self.model, "reasoning": self.reasoning, "prompt": TEMPLATE_VERSION}

    @property
    def label(self) -> str:
        """What each example records as its teacher."""
        return f"{self.provider}:{self.model}"

    @property
    def billed_caching(self) -> bool:
        """Whether cached prompt prefixes are billed at the cache prices (the estimate counts
        them then)."""
        return False

    def with_governor(self, governor: GovernorClient) -> Self:
        return replace(self, governor=governor)

    def paced_by(self) -> GovernorClient:
        """The governor every call goes through; set by the stage with `with_governor`."""
        if self.governor is None:
            raise RuntimeError(f"{type(self).__name__} needs a governor: use with_governor()")
        return self.governor

    def estimate(
        self, requests: Sequence[ShardRequest], limits: RateLimits, *, batch: bool
    ) -> CostEstimate:
        """The expected cost of `requests` (`batch` counts only where there is a batch API)."""
        prompts = [build_prompt(r) for r in requests]
        return estimate(
            prompts,
            self.price,
            limits,
            batch=batch and self.batch_api,
            caching=self.billed_caching,
        )
