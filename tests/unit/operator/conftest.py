"""Runs the operator's unit tests build from: a small CPU run and a GPU run with every option."""

from __future__ import annotations

from typing import Any

import pytest

from distillrun.api.resource import DistillRun, parse_run

UID = "0b7e1a52-7c1f-4c3e-9a51-2f9d7d3f0a11"


def cpu_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "distillrun.dev/v1alpha1",
        "kind": "DistillRun",
        "metadata": {"name": "shop", "namespace": "team-a", "uid": UID, "generation": 1},
        "spec": {
            "database": {
                "dialect": "sqlite",
                "schema": {"ddl": "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"},
            },
            "seedQuestions": ["How many users are there?"],
            "teacher": {"provider": "synthetic", "targetExamples": 40},
            "student": {
                "model": "builtin:tiny-qwen3",
                "hardwareProfile": "cpu",
                "gpusPerWorker": 0,
            },
            "artifacts": {"uri": "s3://team-a-ml/distill"},
        },
    }


def gpu_manifest() -> dict[str, Any]:
    data = cpu_manifest()
    data["metadata"]["name"] = "sales-analytics"
    data["spec"]["database"] = {
        "dialect": "postgres",
        "schema": {"configMapRef": {"name": "sales-schema", "key": "schema.sql"}},
    }
    data["spec"]["teacher"] = {
        "provider": "anthropic",
        "model": "claude-sonnet-5-5",
        "apiKeySecretRef": {"name": "anthropic", "key": "api-key"},
        "targetExamples": 2000,
    }
    data["spec"]["student"] = {
        "model": "Qwen/Qwen3-4B",
        "method": "lora",
        "hardwareProfile": "a100-80gb",
        "gpusPerWorker": 4,
        "workers": 2,
    }
    data["spec"]["artifacts"] = {
        "uri": "s3://team-a-ml/distill",
        "credentialsSecretRef": {"name": "team-a-s3", "key": "credentials"},
    }
    data["spec"]["scheduling"] = {
        "queueName": "team-a-gpus",
        "priorityClassName": "batch-low",
        "nodeSelector": {"pool": "training"},
        "tolerations": [{"key": "team-a", "operator": "Exists", "effect": "NoSchedule"}],
    }
    return data


@pytest.fixture
def cpu_run() -> DistillRun:
    return parse_run(cpu_manifest())


@pytest.fixture
def gpu_run() -> DistillRun:
    return parse_run(gpu_manifest())
