"""Operator settings from the environment, and refusals that name the variable."""

from __future__ import annotations

import pytest

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
            "DISTILLRUN_RESYNC_SECONDS": "5",
            "DISTILLRUN_MAX_ATTEMPTS": "4",
            "DISTILLRUN_HARDWARE_PROFILES": "cpu, custom-l4",
            "DISTILLRUN_CPU_WORKERS": "3",
            "DISTILLRUN_RAY_TTL_SECONDS": "60",
            "DISTILLRUN_WORKERS": "4",
            "DISTILLRUN_METRICS_PORT": "0",
        }
    )
    assert settings == OperatorSettings(
        jobs_image="img:1",
        ray_version="2.61.0",
        default_artifacts_uri="s3://b/p",
        resync_interval_s=5.0,
        max_attempts=4,
        hardware_profiles=frozenset({"cpu", "custom-l4"}),
        cpu_workers=3,
        ttl_seconds_after_finished=60,
        workers=4,
        metrics_port=0,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DISTILLRUN_HARDWARE_PROFILES": "tpu-v5"}, "DISTILLRUN_HARDWARE_PROFILES: tpu-v5 cannot"),
        ({"DISTILLRUN_MAX_ATTEMPTS": "many"}, "DISTILLRUN_MAX_ATTEMPTS: 'many' is not a number"),
        ({"DISTILLRUN_RESYNC_SECONDS": "-1"}, "DISTILLRUN_RESYNC_SECONDS: must not be negative"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        OperatorSettings.from_env(env)
