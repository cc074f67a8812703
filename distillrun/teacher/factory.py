"""Choosing the teacher for a run from its spec."""

from __future__ import annotations

from distillrun.api.spec import TeacherProvider, TeacherSpec
from distillrun.teacher.base import Teacher
from distillrun.teacher.synthetic import SyntheticTeacher


class TeacherUnavailable(Exception):
    """The spec asks for a teacher this build cannot use; the message says what to do."""


def make_teacher(spec: TeacherSpec) -> Teacher:
    """The teacher the spec names. Only `synthetic` is built in this version; the LLM providers
    are part of the contract already so cluster manifests validate, and say so when used."""
    if spec.provider == TeacherProvider.SYNTHETIC:
        return SyntheticTeacher()
    raise TeacherUnavailable(
        f"teacher.provider {spec.provider!s} is not available in this version of distillrun; "
        "use provider: synthetic (offline, no API key)"
    )
