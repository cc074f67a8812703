"""The DistillRun resource as a whole (apiVersion, kind, metadata, spec, status) and its loading
from YAML, with every problem reported against the field that caused it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from distillrun.api.constants import API_VERSION, KIND, NAME_MAX_LENGTH, NAME_PATTERN
from distillrun.api.errors import FieldProblem, ManifestError, problems_from
from distillrun.api.spec import DistillRunSpec, WireModel
from distillrun.api.status import DistillRunStatus
from distillrun.api.text import NotUtf8, read_text


class ObjectMeta(WireModel):
    """The part of Kubernetes metadata a run uses; everything else is kept but ignored."""

    name: Annotated[str, Field(description="Run name (DNS-1123 label).")]
    namespace: Annotated[str, Field(default="default", description="Namespace.")] = "default"
    uid: Annotated[str | None, Field(default=None, description="Set by the apiserver.")] = None
    generation: Annotated[int | None, Field(default=None, description="Spec generation.")] = None
    labels: Annotated[dict[str, str], Field(default_factory=dict, description="Labels.")]
    annotations: Annotated[dict[str, str], Field(default_factory=dict, description="Annotations.")]

    model_config = WireModel.model_config | {"extra": "ignore"}

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if len(value) > NAME_MAX_LENGTH:
            raise ValueError(f"must be at most {NAME_MAX_LENGTH} characters (got {len(value)})")
        if not re.fullmatch(NAME_PATTERN, value):
            raise ValueError(
                "must be a DNS-1123 label: lower-case letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return value


class DistillRun(WireModel):
    """A whole DistillRun object as it is written in a manifest or stored in the apiserver."""

    api_version: Annotated[str, Field(description=f"Always {API_VERSION}.")]
    kind: Annotated[str, Field(description=f"Always {KIND}.")]
    metadata: Annotated[ObjectMeta, Field(description="Object metadata.")]
    spec: Annotated[DistillRunSpec, Field(description="What the run asks for.")]
    status: Annotated[
        DistillRunStatus | None, Field(default=None, description="What the run has done.")
    ] = None

    @field_validator("api_version", "kind")
    @classmethod
    def _fixed(cls, value: str, info: ValidationInfo) -> str:
        """apiVersion and kind each have one allowed value."""
        allowed = {"api_version": API_VERSION, "kind": KIND}[info.field_name or ""]
        if value != allowed:
            raise ValueError(f"must be {allowed} (got {value!r})")
        return value

    def to_wire(self) -> dict[str, Any]:
        """The object as camelCase JSON-compatible data, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def parse_run(data: object, source: str = "<manifest>") -> DistillRun:
    """Validates already-loaded manifest data; raises ManifestError naming each bad field."""
    if not isinstance(data, dict):
        raise ManifestError(source, [FieldProblem("", "a DistillRun manifest must be a mapping")])
    try:
        # Wire names only, as the CRD admits them: `target_examples` is an unknown field here
        # just as it is for the apiserver (the models also take Python names, for code).
        return DistillRun.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise ManifestError(source, problems_from(exc)) from None


def load_run(path: Path) -> DistillRun:
    """Reads and validates one DistillRun manifest file."""
    source = str(path)
    try:
        text = read_text(path)
    except OSError as exc:
        raise ManifestError(
            source, [FieldProblem("", f"cannot read file: {exc.strerror}")]
        ) from None
    except NotUtf8 as exc:
        raise ManifestError(source, [FieldProblem("", str(exc))]) from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(source, [FieldProblem("", f"not valid YAML: {exc}")]) from None
    if len(documents) != 1:
        raise ManifestError(
            source, [FieldProblem("", f"expected one YAML document, found {len(documents)}")]
        )
    return parse_run(documents[0], source)
