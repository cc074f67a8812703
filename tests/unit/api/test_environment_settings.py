"""The `DISTILLRUN_*` variables: each one field of one settings model, read by pydantic-settings,
and a bad value refused with a message that names its variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from distillrun.api.settings import (
    CacheSettings,
    PriceSettings,
    ProfileSettings,
    SandboxSettings,
    Settings,
    SettingsError,
)
from distillrun.operator.settings import OperatorSettings

ROOT = Path(__file__).parents[3]
TEST_BED_PREFIX = "DISTILLRUN_TESTBED_"
"""Variables of the test bed's scripts (scripts/testbed), which no distillrun process reads."""

MODELS: list[type[Settings]] = [
    OperatorSettings,
    ProfileSettings,
    CacheSettings,
    PriceSettings,
    SandboxSettings,
]


def test_each_variable_is_one_field_of_one_model() -> None:
    variables = [m.env_name(f) for m in MODELS for f in m.model_fields]
    assert len(variables) == len(set(variables))
    for model in MODELS:
        for field in model.model_fields:
            assert model.env_name(field) == f"DISTILLRUN_{field.upper()}"
            assert model.from_env({f"DISTILLRUN_{field.upper()}": ""}) == model()


def test_every_variable_the_code_and_docs_name_is_defined() -> None:
    """A `DISTILLRUN_*` name in the package, the benches, the chart or the README that no model
    defines is a variable read ad hoc, or one renamed and left behind."""
    defined = {m.env_name(f) for m in MODELS for f in m.model_fields}
    files = [
        *ROOT.joinpath("distillrun").rglob("*.py"),
        *ROOT.joinpath("bench").rglob("*.py"),
        *ROOT.joinpath("helm").rglob("*.yaml"),
    ]
    unknown: dict[str, str] = {}
    for path in [*files, ROOT / "README.md"]:
        for name in re.findall(r"DISTILLRUN_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()):
            if name not in defined and not name.startswith(TEST_BED_PREFIX):
                unknown[name] = str(path.relative_to(ROOT))
    assert not unknown


def test_the_runtime_variables_are_read() -> None:
    env = {
        "DISTILLRUN_PROFILES_DIR": "/etc/distillrun/profiles",
        "DISTILLRUN_CACHE_DIR": "/var/cache/distillrun",
        "DISTILLRUN_PRICES": "~/prices.json",
        "DISTILLRUN_SANDBOX_HOST": "sandbox.team-a.svc",
        "DISTILLRUN_SANDBOX_PORT": "6432",
    }
    assert ProfileSettings.from_env(env).profiles_dir == Path("/etc/distillrun/profiles")
    assert CacheSettings.from_env(env).cache_dir == Path("/var/cache/distillrun")
    assert PriceSettings.from_env(env).prices == Path("~/prices.json")
    sandbox = SandboxSettings.from_env(env)
    assert (sandbox.sandbox_host, sandbox.sandbox_port) == ("sandbox.team-a.svc", 6432)


def test_an_empty_variable_is_unset_and_code_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert CacheSettings.from_env({"DISTILLRUN_CACHE_DIR": ""}).cache_dir is None
    monkeypatch.setenv("DISTILLRUN_CACHE_DIR", "/x")
    assert CacheSettings().cache_dir is None
    assert CacheSettings.from_env().cache_dir == Path("/x")


@pytest.mark.parametrize("port", ["fifty", "0", "70000", "6432.5"])
def test_a_bad_port_names_the_variable(port: str) -> None:
    with pytest.raises(SettingsError) as caught:
        SandboxSettings.from_env({"DISTILLRUN_SANDBOX_PORT": port})
    assert str(caught.value) == (
        f"DISTILLRUN_SANDBOX_PORT: {port!r} is not a port number (1 to 65535)"
    )


def test_the_sandbox_password_stays_out_of_reprs() -> None:
    settings = SandboxSettings.from_env({"DISTILLRUN_SANDBOX_PASSWORD": "s3cret"})
    assert "s3cret" not in repr(settings)
