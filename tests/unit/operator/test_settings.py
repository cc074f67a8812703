"""Operator settings from the environment, and refusals that name the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from distillrun.api.spec import SecretKeyRef
from distillrun.operator.settings import OperatorSettings, SettingsError


def test_defaults_without_environment() -> None:
    settings = OperatorSettings.from_env({})
    assert settings == OperatorSettings()
    assert settings.hardware_profiles is None  # every profile the operator knows


def test_every_variable_is_read() -> None:
    settings = OperatorSettings.from_env(
        {
            "DISTILLRUN_JOBS_IMAGE": "img:1",
            "DISTILLRUN_RAY_VERSION": "2.61.0",
            "DISTILLRUN_ARTIFACTS_URI": "s3://b/p",
            "DISTILLRUN_QUEUE_NAME": "team-a.gpus",
            "DISTILLRUN_TEACHER_SECRET_NAME": "team-a-teacher",
            "DISTILLRUN_TEACHER_SECRET_KEY": "ANTHROPIC_API_KEY",
            "DISTILLRUN_RESYNC_SECONDS": "5",
            "DISTILLRUN_MAX_ATTEMPTS": "4",
            "DISTILLRUN_HARDWARE_PROFILES": "cpu, custom-l4",
            "DISTILLRUN_CPU_WORKERS": "3",
            "DISTILLRUN_CPU_WORKER_CPU": "1500m",
            "DISTILLRUN_CPU_WORKER_MEMORY": "3Gi",
            "DISTILLRUN_HEAD_CPU": "0.5",
            "DISTILLRUN_HEAD_MEMORY": "1536Mi",
            "DISTILLRUN_RAY_TTL_SECONDS": "60",
            "DISTILLRUN_RAY_START_DEADLINE_SECONDS": "300",
            "DISTILLRUN_RAY_JOB_DEADLINE_SECONDS": "86400",
            "DISTILLRUN_RAY_TOKEN_AUTH": "false",
            "DISTILLRUN_ALLOW_FILE_STORE": "true",
            "DISTILLRUN_WORKERS": "4",
            "DISTILLRUN_METRICS_PORT": "0",
        }
    )
    assert settings == OperatorSettings(
        jobs_image="img:1",
        ray_version="2.61.0",
        default_artifacts_uri="s3://b/p",
        default_queue_name="team-a.gpus",
        default_teacher_secret=SecretKeyRef(name="team-a-teacher", key="ANTHROPIC_API_KEY"),
        resync_interval_s=5.0,
        max_attempts=4,
        hardware_profiles=frozenset({"cpu", "custom-l4"}),
        cpu_workers=3,
        cpu_worker_cpu="1500m",
        cpu_worker_memory="3Gi",
        head_cpu="0.5",
        head_memory="1536Mi",
        ray_ttl_seconds=60,
        ray_start_deadline_seconds=300,
        ray_job_deadline_seconds=86400,
        ray_token_auth=False,
        allow_file_store=True,
        workers=4,
        metrics_port=0,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DISTILLRUN_HARDWARE_PROFILES": "tpu-v5"}, "DISTILLRUN_HARDWARE_PROFILES: tpu-v5 cannot"),
        ({"DISTILLRUN_MAX_ATTEMPTS": "many"}, "DISTILLRUN_MAX_ATTEMPTS: 'many' is not a whole"),
        ({"DISTILLRUN_MAX_ATTEMPTS": "2.5"}, "DISTILLRUN_MAX_ATTEMPTS: '2.5' is not a whole"),
        ({"DISTILLRUN_MAX_ATTEMPTS": "0"}, "DISTILLRUN_MAX_ATTEMPTS: must be at least 1"),
        ({"DISTILLRUN_CPU_WORKERS": "0"}, "DISTILLRUN_CPU_WORKERS: must be at least 1"),
        ({"DISTILLRUN_WORKERS": "0"}, "DISTILLRUN_WORKERS: must be at least 1"),
        ({"DISTILLRUN_RAY_TTL_SECONDS": "-1"}, "DISTILLRUN_RAY_TTL_SECONDS: must be at least 0"),
        (
            {"DISTILLRUN_RAY_START_DEADLINE_SECONDS": "-5"},
            "DISTILLRUN_RAY_START_DEADLINE_SECONDS: must be at least 0",
        ),
        ({"DISTILLRUN_HEAD_CPU": "2Gi"}, "DISTILLRUN_HEAD_CPU: '2Gi' is not a CPU amount"),
        ({"DISTILLRUN_CPU_WORKER_CPU": "0"}, "DISTILLRUN_CPU_WORKER_CPU: must be greater than 0"),
        (
            {"DISTILLRUN_HEAD_MEMORY": "2 GB"},
            "DISTILLRUN_HEAD_MEMORY: '2 GB' is not a memory amount",
        ),
        (
            {"DISTILLRUN_CPU_WORKER_MEMORY": "0Gi"},
            "DISTILLRUN_CPU_WORKER_MEMORY: must be greater than 0",
        ),
        ({"DISTILLRUN_RAY_TOKEN_AUTH": "yes"}, "DISTILLRUN_RAY_TOKEN_AUTH: 'yes' is not true or"),
        (
            {"DISTILLRUN_RAY_VERSION": "2.51.1"},
            "DISTILLRUN_RAY_TOKEN_AUTH: Ray token authentication needs Ray 2.52.0 or later, "
            "but DISTILLRUN_RAY_VERSION is '2.51.1'",
        ),
        (
            {"DISTILLRUN_ARTIFACTS_URI": "file:///srv/distill"},
            "DISTILLRUN_ARTIFACTS_URI: file:///srv/distill is a file:// store",
        ),
        ({"DISTILLRUN_METRICS_PORT": "70000"}, "DISTILLRUN_METRICS_PORT: must be 0 to 65535"),
        ({"DISTILLRUN_RESYNC_SECONDS": "-1"}, "DISTILLRUN_RESYNC_SECONDS: must not be negative"),
        ({"DISTILLRUN_RESYNC_SECONDS": "0"}, "DISTILLRUN_RESYNC_SECONDS: must be greater than 0"),
        ({"DISTILLRUN_RESYNC_SECONDS": "nan"}, "DISTILLRUN_RESYNC_SECONDS: 'nan' is not a number"),
        ({"DISTILLRUN_QUEUE_NAME": "Team_A"}, "DISTILLRUN_QUEUE_NAME: 'Team_A' cannot"),
        ({"DISTILLRUN_QUEUE_NAME": "a" * 64}, "DISTILLRUN_QUEUE_NAME: 'a{64}' cannot"),
        ({"DISTILLRUN_QUEUE_NAME": "gpus\n"}, r"DISTILLRUN_QUEUE_NAME: 'gpus\\n' cannot"),
        (
            {"DISTILLRUN_TEACHER_SECRET_NAME": "team-a..key"},
            "DISTILLRUN_TEACHER_SECRET_NAME: 'team-a..key' cannot be a Secret name",
        ),
        (
            {"DISTILLRUN_TEACHER_SECRET_NAME": "s", "DISTILLRUN_TEACHER_SECRET_KEY": "api key"},
            "DISTILLRUN_TEACHER_SECRET_KEY: 'api key' cannot be a Secret key",
        ),
        (
            {"DISTILLRUN_TEACHER_SECRET_KEY": "api-key"},
            "DISTILLRUN_TEACHER_SECRET_KEY: set without DISTILLRUN_TEACHER_SECRET_NAME",
        ),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        OperatorSettings.from_env(env)


def test_an_older_ray_runs_without_token_auth_and_a_file_store_when_allowed() -> None:
    older_ray = {"DISTILLRUN_RAY_VERSION": "2.40.0", "DISTILLRUN_RAY_TOKEN_AUTH": "False"}
    file_store = {"DISTILLRUN_ARTIFACTS_URI": "file:///srv/distill"}
    settings = OperatorSettings.from_env(
        older_ray | file_store | {"DISTILLRUN_ALLOW_FILE_STORE": "TRUE"}
    )
    assert not settings.ray_token_auth
    assert settings.default_artifacts_uri == "file:///srv/distill"


def test_the_teacher_secret_key_defaults_to_api_key() -> None:
    settings = OperatorSettings.from_env({"DISTILLRUN_TEACHER_SECRET_NAME": "anthropic"})
    assert settings.default_teacher_secret == SecretKeyRef(name="anthropic", key="api-key")


def test_a_253_character_secret_name_and_a_63_character_queue_are_accepted() -> None:
    secret = ".".join(["a" * 63] * 4)[:253]
    settings = OperatorSettings.from_env(
        {"DISTILLRUN_TEACHER_SECRET_NAME": secret, "DISTILLRUN_QUEUE_NAME": "q" * 63}
    )
    assert settings.default_teacher_secret is not None
    assert settings.default_teacher_secret.name == secret
    assert settings.default_queue_name == "q" * 63


def test_whole_numbers_as_helm_may_render_them() -> None:
    settings = OperatorSettings.from_env(
        {"DISTILLRUN_RAY_TTL_SECONDS": "1e+06", "DISTILLRUN_MAX_ATTEMPTS": "3.0"}
    )
    assert settings.ray_ttl_seconds == 1_000_000
    assert settings.max_attempts == 3


def test_the_kopf_entry_module_names_a_bad_variable_without_a_traceback() -> None:
    env = {**os.environ, "DISTILLRUN_MAX_ATTEMPTS": "0"}
    result = subprocess.run(
        [sys.executable, "-c", "import distillrun.operator.main"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 1
    assert "DISTILLRUN_MAX_ATTEMPTS: must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr
