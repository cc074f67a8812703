"""Where a server sandbox lives: a PostgreSQL or MariaDB/MySQL server this process administers.

Kept outside `distillrun.sql.sandbox` and free of database drivers and of sqlglot, so the
operator (which only needs the names and ports, to point a stage at its sandbox Service) can
import it and stay small.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from distillrun.api.settings import SandboxSettings
from distillrun.api.spec import Dialect

ENV_HOST = SandboxSettings.env_name("sandbox_host")
ENV_PORT = SandboxSettings.env_name("sandbox_port")
ENV_USER = SandboxSettings.env_name("sandbox_user")
ENV_PASSWORD = SandboxSettings.env_name("sandbox_password")
"""The sandbox server of a run (`SandboxSettings`). On Kubernetes the operator sets them on the
stage's pods (the password from a Secret); on one machine the user exports them."""

DEFAULT_PORTS = {Dialect.POSTGRES: 5432, Dialect.MYSQL: 3306}
DEFAULT_ADMINS = {Dialect.POSTGRES: "postgres", Dialect.MYSQL: "root"}
SERVER_NAMES = {Dialect.POSTGRES: "PostgreSQL", Dialect.MYSQL: "MySQL/MariaDB"}


@dataclass(frozen=True)
class ServerTarget:
    """An administrator's way into a sandbox server.

    The administrator creates one private database and one read-only login per sandbox, loads
    the schema and seed rows, checksums them and drops both at the end; the untrusted queries
    themselves only ever run as the read-only login. PostgreSQL needs a superuser (to revoke
    EXECUTE on built-in file, network and session functions in the private database); MySQL an
    account allowed to create databases and users and grant SELECT.
    """

    dialect: Dialect
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    maintenance_database: str = "postgres"
    """PostgreSQL only: the database the administrator connects to for CREATE/DROP DATABASE."""

    @classmethod
    def from_env(
        cls, dialect: Dialect, env: Mapping[str, str] | None = None
    ) -> ServerTarget | None:
        """The target named by the `DISTILLRUN_SANDBOX_*` variables; None when no host is set.

        Raises SettingsError (a ValueError) for a port that is not a port number.
        """
        settings = SandboxSettings.from_env(env)
        host = (settings.sandbox_host or "").strip()
        if not host:
            return None
        password = settings.sandbox_password
        return cls(
            dialect=dialect,
            host=host,
            port=settings.sandbox_port or DEFAULT_PORTS[dialect],
            user=(settings.sandbox_user or "").strip() or DEFAULT_ADMINS[dialect],
            password=password.get_secret_value() if password is not None else "",
        )
