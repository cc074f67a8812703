"""Operator settings from the environment, and refusals that name the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from distillrun.api.spec import SecretKeyRef
from distillrun.operator.settings import OperatorSettings, SettingsError


def test_settings_built_in_code_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILLRUN_JOBS_MAX_ATTEMPTS", "7")
    assert OperatorSettings().jobs_max_attempts == 3
    assert OperatorSettings.from_env().jobs_max_attempts == 7


def test_defaults_without_environment() -> None:
    settings = OperatorSettings.from_env({})
    assert settings == OperatorSettings()
    assert settings.hardware_profiles is None  # every profile the operator knows


def test_every_variable_is_read() -> None:
    settings = OperatorSettings.from_env(
        {
            "DISTILLRUN_JOBS_IMAGE": "img:1",
            "DISTILLRUN_JOBS_RAY_VERSION": "2.61.0",
            "DISTILLRUN_ARTIFACTS_URI": "s3://b/p",
            "DISTILLRUN_SCHEDULING_QUEUE_NAME": "team-a.gpus",
            "DISTILLRUN_TEACHER_SECRET_NAME": "team-a-teacher",
            "DISTILLRUN_TEACHER_SECRET_KEY": "ANTHROPIC_API_KEY",
            "DISTILLRUN_OPERATOR_RESYNC_SECONDS": "5",
            "DISTILLRUN_JOBS_MAX_ATTEMPTS": "4",
            "DISTILLRUN_HARDWARE_PROFILES": "cpu, custom-l4",
            "DISTILLRUN_JOBS_CPU_WORKERS": "3",
            "DISTILLRUN_JOBS_CPU_WORKER_CPU": "1500m",
            "DISTILLRUN_JOBS_CPU_WORKER_MEMORY": "3Gi",
            "DISTILLRUN_JOBS_HEAD_CPU": "0.5",
            "DISTILLRUN_JOBS_HEAD_MEMORY": "1536Mi",
            "DISTILLRUN_JOBS_RAY_TTL_SECONDS": "60",
            "DISTILLRUN_JOBS_RAY_START_DEADLINE_SECONDS": "300",
            "DISTILLRUN_JOBS_RAY_JOB_DEADLINE_SECONDS": "86400",
            "DISTILLRUN_JOBS_RAY_TOKEN_AUTH": "false",
            "DISTILLRUN_ARTIFACTS_ALLOW_FILE_STORE": "true",
            "DISTILLRUN_OPERATOR_WORKERS": "4",
            "DISTILLRUN_METRICS_PORT": "0",
            "DISTILLRUN_EXTRA_LABELS": '{"team": "a", "example.com/cost-center": "ml-1"}',
        }
    )
    assert settings == OperatorSettings(
        jobs_image="img:1",
        jobs_ray_version="2.61.0",
        artifacts_uri="s3://b/p",
        scheduling_queue_name="team-a.gpus",
        teacher_secret_name="team-a-teacher",
        teacher_secret_key="ANTHROPIC_API_KEY",
        operator_resync_seconds=5.0,
        jobs_max_attempts=4,
        hardware_profiles=frozenset({"cpu", "custom-l4"}),
        jobs_cpu_workers=3,
        jobs_cpu_worker_cpu="1500m",
        jobs_cpu_worker_memory="3Gi",
        jobs_head_cpu="0.5",
        jobs_head_memory="1536Mi",
        jobs_ray_ttl_seconds=60,
        jobs_ray_start_deadline_seconds=300,
        jobs_ray_job_deadline_seconds=86400,
        jobs_ray_token_auth=False,
        artifacts_allow_file_store=True,
        operator_workers=4,
        metrics_port=0,
        extra_labels={"team": "a", "example.com/cost-center": "ml-1"},
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"DISTILLRUN_HARDWARE_PROFILES": "tpu-v5"},
            "DISTILLRUN_HARDWARE_PROFILES: tpu-v5 cannot",
        ),
        (
            {"DISTILLRUN_EXTRA_LABELS": '{"team": "a b"}'},
            "DISTILLRUN_EXTRA_LABELS: team='a b' is not a Kubernetes label",
        ),
        (
            {"DISTILLRUN_EXTRA_LABELS": '{"Team A/x": "a"}'},
            "DISTILLRUN_EXTRA_LABELS: Team A/x='a' is not a Kubernetes label",
        ),
        (
            {"DISTILLRUN_EXTRA_LABELS": "team=a"},
            "DISTILLRUN_EXTRA_LABELS: 'team=a' is not a JSON object of labels",
        ),
        (
            {"DISTILLRUN_EXTRA_LABELS": '{"team": 7}'},
            "DISTILLRUN_EXTRA_LABELS: {'team': 7} is not an object of label names",
        ),
        (
            {"DISTILLRUN_JOBS_MAX_ATTEMPTS": "many"},
            "DISTILLRUN_JOBS_MAX_ATTEMPTS: 'many' is not a whole",
        ),
        (
            {"DISTILLRUN_JOBS_MAX_ATTEMPTS": "2.5"},
            "DISTILLRUN_JOBS_MAX_ATTEMPTS: '2.5' is not a whole",
        ),
        (
            {"DISTILLRUN_JOBS_MAX_ATTEMPTS": "0"},
            "DISTILLRUN_JOBS_MAX_ATTEMPTS: must be at least 1",
        ),
        (
            {"DISTILLRUN_JOBS_CPU_WORKERS": "0"},
            "DISTILLRUN_JOBS_CPU_WORKERS: must be at least 1",
        ),
        (
            {"DISTILLRUN_OPERATOR_WORKERS": "0"},
            "DISTILLRUN_OPERATOR_WORKERS: must be at least 1",
        ),
        (
            {"DISTILLRUN_JOBS_RAY_TTL_SECONDS": "-1"},
            "DISTILLRUN_JOBS_RAY_TTL_SECONDS: must be at least 0",
        ),
        (
            {"DISTILLRUN_JOBS_RAY_START_DEADLINE_SECONDS": "-5"},
            "DISTILLRUN_JOBS_RAY_START_DEADLINE_SECONDS: must be at least 0",
        ),
        (
            {"DISTILLRUN_JOBS_HEAD_CPU": "2Gi"},
            "DISTILLRUN_JOBS_HEAD_CPU: '2Gi' is not a CPU amount",
        ),
        (
            {"DISTILLRUN_JOBS_CPU_WORKER_CPU": "0"},
            "DISTILLRUN_JOBS_CPU_WORKER_CPU: must be greater than 0",
        ),
        (
            {"DISTILLRUN_JOBS_HEAD_MEMORY": "2 GB"},
            "DISTILLRUN_JOBS_HEAD_MEMORY: '2 GB' is not a memory amount",
        ),
        (
            {"DISTILLRUN_JOBS_CPU_WORKER_MEMORY": "0Gi"},
            "DISTILLRUN_JOBS_CPU_WORKER_MEMORY: must be greater than 0",
        ),
        (
            {"DISTILLRUN_JOBS_RAY_TOKEN_AUTH": "yes"},
            "DISTILLRUN_JOBS_RAY_TOKEN_AUTH: 'yes' is not true or",
        ),
        (
            {"DISTILLRUN_JOBS_RAY_VERSION": "2.51.1"},
            "DISTILLRUN_JOBS_RAY_TOKEN_AUTH: Ray token authentication needs Ray 2.52.0 or later, "
            "but DISTILLRUN_JOBS_RAY_VERSION \\(Helm value jobs.rayVersion\\) is '2.51.1'",
        ),
        (
            {"DISTILLRUN_ARTIFACTS_URI": "file:///srv/distill"},
            "DISTILLRUN_ARTIFACTS_URI: file:///srv/distill is a file:// store",
        ),
        (
            {"DISTILLRUN_METRICS_PORT": "70000"},
            "DISTILLRUN_METRICS_PORT: must be 0 to 65535",
        ),
        (
            {"DISTILLRUN_OPERATOR_RESYNC_SECONDS": "-1"},
            "DISTILLRUN_OPERATOR_RESYNC_SECONDS: must not be negative",
        ),
        (
            {"DISTILLRUN_OPERATOR_RESYNC_SECONDS": "0"},
            "DISTILLRUN_OPERATOR_RESYNC_SECONDS: must be greater than 0",
        ),
        (
            {"DISTILLRUN_OPERATOR_RESYNC_SECONDS": "nan"},
            "DISTILLRUN_OPERATOR_RESYNC_SECONDS: 'nan' is not a number",
        ),
        (
            {"DISTILLRUN_SCHEDULING_QUEUE_NAME": "Team_A"},
            "DISTILLRUN_SCHEDULING_QUEUE_NAME: 'Team_A' cannot",
        ),
        (
            {"DISTILLRUN_SCHEDULING_QUEUE_NAME": "a" * 64},
            "DISTILLRUN_SCHEDULING_QUEUE_NAME: 'a{64}' cannot",
        ),
        (
            {"DISTILLRUN_SCHEDULING_QUEUE_NAME": "gpus\n"},
            r"DISTILLRUN_SCHEDULING_QUEUE_NAME: 'gpus\\n' cannot",
        ),
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
    """`message` is `VARIABLE: what is wrong`; the error puts the Helm value between them."""
    variable, problem = message.split(": ", 1)
    with pytest.raises(SettingsError, match=rf"^{variable} \(Helm value [\w.]+\): {problem}"):
        OperatorSettings.from_env(env)


def test_an_error_names_the_variable_and_the_helm_value() -> None:
    with pytest.raises(SettingsError) as caught:
        OperatorSettings.from_env({"DISTILLRUN_JOBS_RAY_TTL_SECONDS": "soon"})
    assert str(caught.value) == (
        "DISTILLRUN_JOBS_RAY_TTL_SECONDS (Helm value jobs.rayTtlSeconds): "
        "'soon' is not a whole number"
    )


def test_an_older_ray_runs_without_token_auth_and_a_file_store_when_allowed() -> None:
    older_ray = {"DISTILLRUN_JOBS_RAY_VERSION": "2.40.0", "DISTILLRUN_JOBS_RAY_TOKEN_AUTH": "False"}
    file_store = {"DISTILLRUN_ARTIFACTS_URI": "file:///srv/distill"}
    settings = OperatorSettings.from_env(
        older_ray | file_store | {"DISTILLRUN_ARTIFACTS_ALLOW_FILE_STORE": "TRUE"}
    )
    assert not settings.jobs_ray_token_auth
    assert settings.artifacts_uri == "file:///srv/distill"


def test_the_teacher_secret_key_defaults_to_api_key() -> None:
    settings = OperatorSettings.from_env({"DISTILLRUN_TEACHER_SECRET_NAME": "anthropic"})
    assert settings.teacher_secret == SecretKeyRef(name="anthropic", key="api-key")


def test_a_253_character_secret_name_and_a_63_character_queue_are_accepted() -> None:
    secret = ".".join(["a" * 63] * 4)[:253]
    settings = OperatorSettings.from_env(
        {"DISTILLRUN_TEACHER_SECRET_NAME": secret, "DISTILLRUN_SCHEDULING_QUEUE_NAME": "q" * 63}
    )
    assert settings.teacher_secret is not None
    assert settings.teacher_secret.name == secret
    assert settings.scheduling_queue_name == "q" * 63


def test_whole_numbers_as_helm_may_render_them() -> None:
    settings = OperatorSettings.from_env(
        {"DISTILLRUN_JOBS_RAY_TTL_SECONDS": "1e+06", "DISTILLRUN_JOBS_MAX_ATTEMPTS": "3.0"}
    )
    assert settings.jobs_ray_ttl_seconds == 1_000_000
    assert settings.jobs_max_attempts == 3


def _import_the_kopf_entry_module(variable: str, value: str) -> subprocess.CompletedProcess[str]:
    """`import distillrun.operator.main` as `kopf run -m` does, with one variable added."""
    return subprocess.run(
        [sys.executable, "-c", "import distillrun.operator.main"],
        capture_output=True,
        text=True,
        env={**os.environ, variable: value},
    )


def test_the_kopf_entry_module_names_a_bad_variable_without_a_traceback() -> None:
    result = _import_the_kopf_entry_module("DISTILLRUN_JOBS_MAX_ATTEMPTS", "0")
    assert result.returncode == 1
    assert "DISTILLRUN_JOBS_MAX_ATTEMPTS (Helm value jobs.maxAttempts): must be at least 1" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_unknown_and_renamed_variables_are_named_with_their_new_names() -> None:
    env = {
        "DISTILLRUN_WORKERS": "8",
        "DISTILLRUN_HEAD_CPU": "2",
        "DISTILLRUN_TYPO": "x",
        "DISTILLRUN_JOBS_HEAD_CPU": "2",
        "DISTILLRUN_PROFILES_DIR": "/etc/distillrun/profiles",  # read by the profiles, not here
        "HOME": "/root",
    }
    assert OperatorSettings.unknown_variables(env) == [
        "DISTILLRUN_HEAD_CPU: not a distillrun setting, ignored; "
        "did you mean DISTILLRUN_JOBS_HEAD_CPU?",
        "DISTILLRUN_TYPO: not a distillrun setting, ignored",
        "DISTILLRUN_WORKERS: not a distillrun setting, ignored; "
        "did you mean DISTILLRUN_JOBS_CPU_WORKERS or DISTILLRUN_OPERATOR_WORKERS?",
    ]
    assert OperatorSettings.from_env(env).jobs_head_cpu == "2"


def test_the_kopf_entry_module_warns_about_a_variable_it_ignores() -> None:
    result = _import_the_kopf_entry_module("DISTILLRUN_RAY_TTL_SECONDS", "60")
    assert result.returncode == 0, result.stderr
    assert (
        "DISTILLRUN_RAY_TTL_SECONDS: not a distillrun setting, ignored; "
        "did you mean DISTILLRUN_JOBS_RAY_TTL_SECONDS?"
    ) in result.stderr
