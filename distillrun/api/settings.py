"""Every `DISTILLRUN_*` environment variable, each defined once as a field of a settings model.

A field's variable is `DISTILLRUN_` and the field's name in capitals (`cache_dir` is
`DISTILLRUN_CACHE_DIR`); pydantic-settings reads them. The operator's own settings
(`distillrun.operator.settings`) build on the same base; the models here are those the CLI and
the stages read, one per concern, so a bad value in one variable never stops an unrelated read.

`Settings(...)` takes values only from its arguments (defaults for the rest), so code and tests
can build settings without the environment leaking in; `Settings.from_env()` reads the
variables, and refuses a bad value with a `SettingsError` naming its variable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Self

from pydantic import BeforeValidator, SecretStr, ValidationError
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as DecodeError
from pydantic_settings.sources.utils import parse_env_vars

ENV_PREFIX = "DISTILLRUN_"


class SettingsError(ValueError):
    """An environment variable that cannot be used; the message names it."""


def refuse(message: str) -> PydanticCustomError:
    """The error a settings validator raises; `from_env` puts the variable's name before it."""
    return PydanticCustomError("distillrun_setting", "{message}", {"message": message})


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[object], int]:
    """A validator of whole numbers within bounds, refused at start rather than later (0 CPU
    workers would make RayJobs without workers; a port above 65535 would only fail when the
    server binds it). Helm may render a large whole number as `1e+06`, so that is read too."""

    def validate(raw: object) -> int:
        if isinstance(raw, bool):
            raise refuse(f"{raw!r} is not a whole number")
        try:
            number = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = math.nan
        if not number.is_integer():
            raise refuse(f"{raw!r} is not a whole number")
        value = int(number)
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"{minimum} to {maximum}"
            raise refuse(f"must be {bounds} (got {raw})")
        return value

    return validate


def _port(raw: object) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw < 65536:
        return raw
    text = str(raw).strip()
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    raise refuse(f"{raw!r} is not a port number (1 to 65535)")


Port = Annotated[int, BeforeValidator(_port)]


class Settings(BaseSettings):
    """Base of every settings model: the `DISTILLRUN_` prefix, empty variables as unset, frozen
    values, and `from_env` as the one way the environment comes in."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="forbid"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments only: the environment is read by `from_env`, never implicitly."""
        return (init_settings,)

    @classmethod
    def env_name(cls, field: str) -> str:
        """The variable of a field: the prefix and the field's name in capitals."""
        if field not in cls.model_fields:
            raise KeyError(f"{cls.__name__} has no field {field!r}")
        return f"{ENV_PREFIX}{field.upper()}"

    @classmethod
    def describe(cls, field: str) -> str:
        """How an error names a field to the user (the operator's adds its Helm value)."""
        return cls.env_name(field)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Settings from the `DISTILLRUN_*` variables of `env` (default: the process's
        environment); unset or empty ones keep their defaults."""
        source = EnvSettingsSource(cls)
        if env is not None:
            source.env_vars = parse_env_vars(
                env, source.case_sensitive, source.env_ignore_empty, source.env_parse_none_str
            )
        try:
            return cls.model_validate(source())
        except DecodeError as exc:  # a field that takes JSON got something else
            raise SettingsError(str(exc)) from None
        except ValidationError as exc:
            raise SettingsError(cls._message(exc)) from None

    @classmethod
    def _message(cls, exc: ValidationError) -> str:
        """One line per refused value, each starting with what names it; a check across
        several values (no field in its location) names them in its own words."""
        lines = []
        for error in exc.errors(include_url=False):
            location = error["loc"]
            field = location[0] if location else None
            if isinstance(field, str) and field in cls.model_fields:
                lines.append(f"{cls.describe(field)}: {error['msg']}")
            else:
                lines.append(error["msg"])
        return "\n".join(lines)


class ProfileSettings(Settings):
    """Where the user's hardware profiles are (`distillrun.api.profiles`)."""

    profiles_dir: Path | None = None
    """A directory of profile files laid over the builtin ones; None: the builtin ones only."""


class CacheSettings(Settings):
    """Where the stages keep what they fetched, between runs."""

    cache_dir: Path | None = None
    """Students copied from a URI are kept under it; None: `~/.cache/distillrun`."""


class PriceSettings(Settings):
    """Teacher prices (`distillrun.teacher.pricing`)."""

    prices: Path | None = None
    """A prices file laid over the built-in table, model by model; None: the built-in one."""


class SandboxSettings(Settings):
    """The sandbox server of a run (`distillrun.sql.target`). On Kubernetes the operator sets
    them on the stage's pods (the password from a Secret); on one machine the user exports
    them."""

    sandbox_host: str | None = None
    """Host of the server; None: no server sandbox is configured."""

    sandbox_port: Port | None = None
    """Its port; None: the dialect's usual one."""

    sandbox_user: str | None = None
    """An administrator allowed to create databases and logins; None: the dialect's usual
    superuser (`postgres`, `root`)."""

    sandbox_password: SecretStr | None = None
    """That administrator's password."""


RUNTIME_SETTINGS: tuple[type[Settings], ...] = (
    ProfileSettings,
    CacheSettings,
    PriceSettings,
    SandboxSettings,
)
"""The models of the variables the CLI and the stages read (the operator reads some too)."""
