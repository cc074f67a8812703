"""The DistillRun CustomResourceDefinition, generated from the pydantic models.

`crds/distillrun.dev_distillruns.yaml` is this module's output (`python -m distillrun.api.crd`);
a test regenerates it and compares, so the CRD and the models never drift. Pydantic writes JSON
Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3.0 schema, so this module inlines
`$ref`s, turns `anyOf [X, null]` into `nullable`, drops titles and `additionalProperties: false`
(pruning does that job), converts numeric `exclusiveMinimum` to the v3.0 boolean form, and adds
the cross-field rules as CEL (`x-kubernetes-validations`) that the model validators enforce in
Python, plus the transition rules that make the fields a run has already paid for immutable
(checked by the apiserver on update; the models cannot see the old object).
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from distillrun.api.constants import (
    CRD_NAME,
    GROUP,
    KIND,
    NAME_MAX_LENGTH,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
)
from distillrun.api.spec import DistillRunSpec
from distillrun.api.status import DistillRunStatus

JsonSchema = dict[str, Any]

_SQL_SOURCE_RULE = {
    "rule": "[has(self.ddl), has(self.uri), has(self.configMapRef)].filter(x, x).size() == 1",
    "message": "set exactly one of ddl, uri or configMapRef",
}


def _immutable(field: str, why: str, *, optional: bool) -> dict[str, str]:
    """A transition rule on `spec` refusing any change to `spec.<field>` once the run exists."""
    rule = f"self.{field} == oldSelf.{field}"
    if optional:
        rule = (
            f"has(self.{field}) == has(oldSelf.{field}) && "
            f"(!has(self.{field}) || self.{field} == oldSelf.{field})"
        )
    return {
        "rule": rule,
        "message": f"{field} is immutable once the run exists: {why}; create a new DistillRun",
        "fieldPath": f".{field}",
        "reason": "FieldValueForbidden",
    }


# What a run has already paid for depends on these; student, evaluation and scheduling may change
# and apply to the stages that have not started yet.
_IMMUTABLE_RULES = [
    _immutable("database", "examples are generated and checked against it", optional=False),
    _immutable("seedQuestions", "generated shards are keyed by them", optional=False),
    _immutable("teacher", "generated shards are keyed by its model and parameters", optional=True),
    _immutable("validation", "the accepted dataset depends on it", optional=True),
    _immutable("artifacts", "the run's outputs are stored there", optional=True),
]

# CEL rules per path of object properties below spec (the same checks the validators make).
_CEL_RULES: dict[tuple[str, ...], list[dict[str, str]]] = {
    (): _IMMUTABLE_RULES,
    ("database", "schema"): [_SQL_SOURCE_RULE],
    ("database", "seedData"): [_SQL_SOURCE_RULE],
    ("teacher",): [
        {
            "rule": "!has(self.provider) || self.provider != 'openai-compatible' "
            "|| has(self.baseUrl)",
            "message": "baseUrl is required when provider is openai-compatible",
        }
    ],
    ("student",): [
        {
            "rule": "!has(self.hardwareProfile) || self.hardwareProfile != 'cpu' "
            "|| !has(self.method) || self.method != 'qlora'",
            "message": "method qlora needs a GPU (4-bit bitsandbytes); "
            "hardwareProfile cpu can run lora or full",
        },
        {
            "rule": "!has(self.hardwareProfile) || self.hardwareProfile != 'cpu' "
            "|| !has(self.gpusPerWorker) || self.gpusPerWorker == 0",
            "message": "gpusPerWorker must be 0 when hardwareProfile is cpu",
        },
        {
            # custom-<name> profiles may be CPU or GPU: training's planner checks those
            "rule": "!has(self.hardwareProfile) || self.hardwareProfile == 'cpu' "
            "|| self.hardwareProfile.startsWith('custom-') "
            "|| !has(self.gpusPerWorker) || self.gpusPerWorker >= 1",
            "message": "gpusPerWorker must be at least 1 for a GPU hardwareProfile",
        },
    ],
    ("artifacts",): [
        {
            "rule": "!has(self.uri) || self.uri.startsWith('file://') "
            "|| self.uri.startsWith('s3://')",
            "message": "uri must start with file:// or s3://",
        }
    ],
}

_DROPPED_KEYS = {"title", "$defs"}


def _resolve(node: Any, defs: dict[str, JsonSchema]) -> Any:
    """Inlines refs and rewrites 2020-12 constructs into structural OpenAPI v3.0."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    any_of = node.get("anyOf")
    if isinstance(any_of, list) and {"type": "null"} in any_of:
        rest = [s for s in any_of if s != {"type": "null"}]
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        if len(rest) == 1:
            inner = _resolve(rest[0], defs)
            combined = {**inner, **_resolve(outer, defs), "nullable": True}
            if combined.get("default", ...) is None:
                del combined["default"]
            return combined
    out: JsonSchema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or (key == "additionalProperties" and value is False):
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
            continue
        out[key] = _resolve(value, defs) if key != "default" else value
    return out


def _structural(model: type[DistillRunSpec] | type[DistillRunStatus]) -> JsonSchema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    resolved: JsonSchema = _resolve(raw, raw.get("$defs", {}))
    return resolved


def _add_cel_rules(spec_schema: JsonSchema) -> None:
    for path, rules in _CEL_RULES.items():
        node = spec_schema
        for name in path:
            node = node["properties"][name]
        node["x-kubernetes-validations"] = rules


def spec_schema() -> JsonSchema:
    """The structural schema of `.spec`, with CEL rules."""
    schema = _structural(DistillRunSpec)
    _add_cel_rules(schema)
    return schema


def status_schema() -> JsonSchema:
    """The structural schema of `.status`."""
    return _structural(DistillRunStatus)


def build_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["all", "distillrun"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {
                            "name": "Accepted",
                            "type": "integer",
                            "jsonPath": ".status.counts.accepted",
                        },
                        {
                            "name": "Accuracy",
                            "type": "number",
                            "jsonPath": ".status.evaluation.executionAccuracy",
                        },
                        {  # the base model before training, beside it (`-o wide`)
                            "name": "Base",
                            "type": "number",
                            "jsonPath": ".status.evaluation.baseExecutionAccuracy",
                            "priority": 1,
                        },
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A distillation of a teacher's Text-to-SQL skill "
                            "into a small student model for one schema.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                            "x-kubernetes-validations": [
                                {
                                    "rule": f"self.metadata.name.size() <= {NAME_MAX_LENGTH}",
                                    "message": f"metadata.name must be at most "
                                    f"{NAME_MAX_LENGTH} characters",
                                }
                            ],
                        }
                    },
                }
            ],
        },
    }


def render_crd() -> str:
    """The CRD as the YAML text committed under crds/."""
    header = "# Generated by `python -m distillrun.api.crd` from distillrun/api; do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render_crd())
