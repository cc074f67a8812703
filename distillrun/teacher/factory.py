"""Choosing the teacher for a run from its spec.

The teacher a spec names is the teacher a run uses. The one substitution is asked for in the
spec (`teacher.fallbackToSynthetic`): when the provider needs an API key that is not set, the
offline synthetic teacher writes the examples instead, and the run says so (its stages record
the teacher they used: see `local.summary` and the report). A provider that can work without a
key (an openai-compatible server without auth) is used without one.
"""

from __future__ import annotations

import os

from distillrun.api.spec import TeacherProvider, TeacherSpec
from distillrun.teacher.base import Teacher
from distillrun.teacher.calls import RetryPolicy
from distillrun.teacher.pricing import FREE, PriceError, load_prices
from distillrun.teacher.synthetic import SyntheticTeacher


class TeacherUnavailable(Exception):
    """The spec asks for a teacher this build cannot use; `field` is the spec field at fault and
    the message says what to do."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


REQUIRED_KEY_VARIABLES = {TeacherProvider.ANTHROPIC: "ANTHROPIC_API_KEY"}
"""Providers that cannot make a call without a key, and where the key is read. An
openai-compatible server may need none (vLLM without auth); if it does, its refusal names
`OPENAI_API_KEY` (`openai_compatible.classify`)."""


def missing_key(spec: TeacherSpec) -> str | None:
    """The environment variable the spec's provider needs and this process lacks, if any."""
    variable = REQUIRED_KEY_VARIABLES.get(TeacherProvider(spec.provider))
    return variable if variable is not None and not os.environ.get(variable) else None


def falls_back(spec: TeacherSpec) -> bool:
    """Whether the synthetic teacher stands in for the named one (see the module docstring)."""
    return spec.fallback_to_synthetic and missing_key(spec) is not None


def stand_in(used: str, spec: TeacherSpec) -> str | None:
    """How a summary names the teacher `used` when it stood in for the one the spec names;
    None when the named one was used."""
    if used == spec.provider:
        return None
    return f"{used} in place of {spec.provider} {spec.model} (fallbackToSynthetic: no API key)"


def make_teacher(spec: TeacherSpec) -> Teacher:
    """The teacher the spec names (or the synthetic one where `falls_back`). An anthropic
    teacher needs a price for its model (the budget is enforced in dollars); an
    openai-compatible one costs 0 unless the prices file names its model. API keys are read
    later, from the environment, where the calls are made."""
    if spec.provider == TeacherProvider.SYNTHETIC or falls_back(spec):
        return SyntheticTeacher()
    retry = RetryPolicy(attempts=spec.max_attempts, timeout_s=spec.request_timeout_seconds)
    try:
        prices = load_prices()
        if spec.provider == TeacherProvider.ANTHROPIC:
            from distillrun.teacher.anthropic import AnthropicTeacher

            return AnthropicTeacher(
                model=spec.model,
                price=prices.price(spec.model),
                reasoning=spec.reasoning,
                base_url=spec.base_url,
                mode=spec.mode,
                retry=retry,
            )
        from distillrun.teacher.openai_compatible import OpenAICompatibleTeacher

        assert spec.base_url is not None  # the spec requires it for this provider
        return OpenAICompatibleTeacher(
            model=spec.model,
            base_url=spec.base_url,
            price=prices.lookup(spec.model) or FREE,
            temperature=spec.temperature,
            reasoning=spec.reasoning,
            retry=retry,
        )
    except PriceError as exc:
        raise TeacherUnavailable(str(exc), "spec.teacher.model") from None
