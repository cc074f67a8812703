"""The operator's jobs-pod extras (DISTILLRUN_JOBS_EXTRA_ENV / _VOLUMES / _VOLUME_MOUNTS, the
chart's jobs.extraEnv / extraVolumes / extraVolumeMounts): every pod of a stage's RayJob gets
them, the submitter included, and a value that would make every RayJob invalid stops the
operator with the variable named."""

from __future__ import annotations

import json
from typing import Any

import pytest

from distillrun.api.profiles import load_profiles
from distillrun.api.resource import DistillRun
from distillrun.api.status import StageName
from distillrun.operator.builders.rayjob import stage_rayjob
from distillrun.operator.settings import OperatorSettings, SettingsError

ENV = [{"name": "AWS_ENDPOINT_URL", "value": "http://minio.storage:9000"}]
VOLUMES = [{"name": "ca", "configMap": {"name": "corporate-ca"}}]
MOUNTS = [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}]


def _settings(**variables: Any) -> OperatorSettings:
    return OperatorSettings.from_env({k: json.dumps(v) for k, v in variables.items()})


def _pods(rayjob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = rayjob["spec"]
    cluster = spec["rayClusterSpec"]
    return {
        "head": cluster["headGroupSpec"]["template"]["spec"],
        "worker": cluster["workerGroupSpecs"][0]["template"]["spec"],
        "submitter": spec["submitterPodTemplate"]["spec"],
    }


@pytest.mark.parametrize("stage", [StageName.GENERATE, StageName.TRAIN])
def test_every_pod_of_a_stage_gets_the_extras(cpu_run: DistillRun, stage: StageName) -> None:
    settings = _settings(
        DISTILLRUN_JOBS_EXTRA_ENV=ENV,
        DISTILLRUN_JOBS_EXTRA_VOLUMES=VOLUMES,
        DISTILLRUN_JOBS_EXTRA_VOLUME_MOUNTS=MOUNTS,
    )
    rayjob = stage_rayjob(cpu_run, stage, 1, settings, load_profiles())
    for role, pod in _pods(rayjob).items():
        container = pod["containers"][0]
        assert ENV[0] in container["env"], role
        assert container["volumeMounts"][-1] == MOUNTS[0], role
        assert pod["volumes"][-1] == VOLUMES[0], role
    head = _pods(rayjob)["head"]
    assert {v["name"] for v in head["volumes"]} >= {"distillrun-config", "dshm", "ca"}


def test_without_extras_the_submitter_has_no_env_or_volumes(cpu_run: DistillRun) -> None:
    rayjob = stage_rayjob(cpu_run, StageName.GENERATE, 1, OperatorSettings(), load_profiles())
    submitter = _pods(rayjob)["submitter"]
    assert "volumes" not in submitter
    assert "env" not in submitter["containers"][0]


def test_manifests_share_no_extra_objects(cpu_run: DistillRun) -> None:
    settings = _settings(DISTILLRUN_JOBS_EXTRA_ENV=ENV)
    rayjob = stage_rayjob(cpu_run, StageName.GENERATE, 1, settings, load_profiles())
    _pods(rayjob)["head"]["containers"][0]["env"][-1]["value"] = "changed"
    assert settings.jobs_pod_extras.env_list() == ENV


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"DISTILLRUN_JOBS_EXTRA_ENV": "{oops"},
            "DISTILLRUN_JOBS_EXTRA_ENV (Helm value jobs.extraEnv): not JSON",
        ),
        ({"DISTILLRUN_JOBS_EXTRA_ENV": '{"name": "A"}'}, "must be a JSON list of objects"),
        (
            {"DISTILLRUN_JOBS_EXTRA_VOLUMES": '["ca"]'},
            "DISTILLRUN_JOBS_EXTRA_VOLUMES (Helm value jobs.extraVolumes): item 0 must be",
        ),
        (
            {"DISTILLRUN_JOBS_EXTRA_ENV": '[{"value": "x"}]'},
            "DISTILLRUN_JOBS_EXTRA_ENV (Helm value jobs.extraEnv): item 0 needs a 'name' string",
        ),
        (
            {"DISTILLRUN_JOBS_EXTRA_VOLUME_MOUNTS": '[{"name": "ca"}]'},
            "(Helm value jobs.extraVolumeMounts): item 0 needs a 'mountPath' string",
        ),
        (
            {"DISTILLRUN_JOBS_EXTRA_VOLUME_MOUNTS": json.dumps(MOUNTS)},
            "jobs.extraVolumeMounts): ca names no volume of DISTILLRUN_JOBS_EXTRA_VOLUMES",
        ),
        (
            {"DISTILLRUN_JOBS_EXTRA_VOLUMES": json.dumps([{"name": "dshm", "emptyDir": {}}])},
            "jobs.extraVolumes): dshm is set by the operator itself",
        ),
        (
            {"DISTILLRUN_JOBS_EXTRA_ENV": json.dumps(ENV + ENV)},
            "AWS_ENDPOINT_URL given more than once",
        ),
    ],
)
def test_bad_extras_name_the_variable(raw: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        OperatorSettings.from_env(raw)
    assert message in str(caught.value)
