"""Choosing the teacher for a run from its spec."""

from __future__ import annotations

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


def make_teacher(spec: TeacherSpec) -> Teacher:
    """The teacher the spec names. An anthropic teacher needs a price for its model (the budget
    is enforced in dollars); an openai-compatible one costs 0 unless the prices file names its
    model. API keys are read later, from the environment, where the calls are made."""
    if spec.provider == TeacherProvider.SYNTHETIC:
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
