"""The per-run SQL sandbox server on Kubernetes, for runs whose dialect needs one (postgres,
mysql): a database Deployment, its Service, a NetworkPolicy, the admin Secret and the ConfigMap
of the schema and seed rows. SQLite and DuckDB runs sandbox in-process and need none of it.

What each piece is for:

- the server starts from the official image (`postgres:15`, `mariadb:10.11`, the versions the
  test set runs against) and loads the schema and the seed rows at start, from the ConfigMap
  mounted as init scripts, into a reference database: a pod is Ready only once they loaded, so
  a schema the real server rejects stops the run before anything expensive starts. The stages
  (`distillrun.sql.sandbox.server`) then make one private database and read-only login per
  sandbox on it, and drop them when done;
- the data lives in an `emptyDir`: a pod that dies or is deleted comes back empty and loads the
  schema and seed rows again, which is how a dead or tampered sandbox server is replaced;
- Pod Security `restricted`: non-root, no privilege escalation, all capabilities dropped,
  seccomp `RuntimeDefault`, read-only root filesystem (every path the server writes is an
  `emptyDir`), no service-account token, no service links; requests equal limits;
- the NetworkPolicy admits only this run's Ray pods, on the database port, and denies all
  egress: the server needs no DNS and no peer, so a query that reaches for the network (a
  foreign-data wrapper, `COPY ... PROGRAM 'curl ...'`) finds nothing to talk to;
- hardening flags: MariaDB runs `--read-only` (only the admin, with READ_ONLY ADMIN, writes),
  `--local-infile=0`, `--secure-file-priv` at an empty read-only mount, no symbolic links, no
  name resolution; PostgreSQL keeps its defaults, which already reserve file and program
  access to superusers, and the stages revoke the rest per database.

Names and secrets: everything is `<run>-sandbox` (cut by hash to stay a valid label), owned by
the run for garbage collection. The admin password lives only in the Secret, which the operator
creates from a random password it draws once; the Ray pods get it through `secretKeyRef`
(`sandbox_env`).

The Ray pods must carry the run-uid label (`distillrun.dev/run-uid`) on their pod templates for
the NetworkPolicy to let them in: KubeRay adds `ray.io/node-type` itself.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from distillrun.api.resource import DistillRun
from distillrun.api.spec import Dialect
from distillrun.operator.builders.common import (
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_RUN,
    LABEL_RUN_UID,
    MANAGED_BY,
    owner_reference,
)
from distillrun.sql.target import (
    DEFAULT_ADMINS,
    DEFAULT_PORTS,
    ENV_HOST,
    ENV_PASSWORD,
    ENV_PORT,
    ENV_USER,
)

COMPONENT = "sql-sandbox"
NAME_SUFFIX = "-sandbox"
NAME_MAX = 63
PASSWORD_KEY = "password"
REFERENCE_DATABASE = "distillrun_reference"
RAY_NODE_LABEL = "ray.io/node-type"
SERVER_UID = 999
"""The `postgres` and `mysql` users of the official images."""

MAX_SCRIPTS_BYTES = 900 * 1024
"""A ConfigMap holds at most 1 MiB; the schema and seed rows must fit with room to spare."""

MARIADB_HARDENING = (
    "--read-only",
    "--local-infile=0",
    "--skip-symbolic-links",
    "--skip-name-resolve",
)
"""MariaDB flags every sandbox server runs with (the test set's server too), besides
`--secure-file-priv` at an empty directory."""

DEFAULT_RESOURCES = {"cpu": "500m", "memory": "512Mi"}
DATA_SIZE_LIMIT = "2Gi"


class SandboxBuildError(ValueError):
    """The run's sandbox cannot be built as asked; the message names the field."""


@dataclass(frozen=True)
class SandboxImages:
    """Server images, one per dialect (the test set runs against these versions)."""

    postgres: str = "docker.io/library/postgres:15"
    mysql: str = "docker.io/library/mariadb:10.11"

    def for_dialect(self, dialect: Dialect) -> str:
        return self.postgres if dialect == Dialect.POSTGRES else self.mysql


def needs_server(run: DistillRun) -> bool:
    """Whether the run's dialect runs its queries on a sandbox server."""
    return run.spec.database.dialect in DEFAULT_PORTS


def sandbox_name(run: DistillRun) -> str:
    """`<run>-sandbox`, cut by hash when longer than a label allows, and prefixed `sql-` when
    the run's name starts with a digit (a Service name must start with a letter)."""
    base = run.metadata.name if run.metadata.name[0].isalpha() else f"sql-{run.metadata.name}"
    name = base + NAME_SUFFIX
    if len(name) <= NAME_MAX:
        return name
    digest = hashlib.sha256(run.metadata.name.encode()).hexdigest()[:8]
    keep = NAME_MAX - len(NAME_SUFFIX) - len(digest) - 1
    return f"{base[:keep].rstrip('-')}-{digest}{NAME_SUFFIX}"


def sandbox_selector(run: DistillRun) -> dict[str, str]:
    """Labels that pick out the sandbox server's pods."""
    return {LABEL_COMPONENT: COMPONENT, LABEL_RUN_UID: run.metadata.uid or ""}


def _metadata(run: DistillRun, extra_labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": sandbox_name(run),
        "namespace": run.metadata.namespace,
        "labels": {
            **extra_labels,
            LABEL_NAME: "distillrun",
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_RUN: run.metadata.name,
            **sandbox_selector(run),
        },
        "ownerReferences": [owner_reference(run)],
    }


def _port(run: DistillRun) -> int:
    return DEFAULT_PORTS[run.spec.database.dialect]


def _require_server(run: DistillRun) -> Dialect:
    dialect = run.spec.database.dialect
    if dialect not in DEFAULT_PORTS:
        raise SandboxBuildError(
            f"spec.database.dialect: {dialect} runs its sandbox in-process; it has no server"
        )
    return dialect


def sandbox_secret(
    run: DistillRun, password: str, extra_labels: Mapping[str, str]
) -> dict[str, Any]:
    """The admin password of the sandbox server, which the operator draws once at random."""
    _require_server(run)
    encoded = base64.b64encode(password.encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(run, extra_labels),
        "type": "Opaque",
        "immutable": True,
        "data": {PASSWORD_KEY: encoded},
    }


def sandbox_config_map(
    run: DistillRun, ddl: str, seed: str | None, extra_labels: Mapping[str, str]
) -> dict[str, Any]:
    """The schema and seed rows as init scripts, run in name order into the reference database.

    Raises SandboxBuildError when they do not fit a ConfigMap.
    """
    dialect = _require_server(run)
    scripts = {"10-schema.sql": ddl.rstrip() + "\n"}
    if seed:
        scripts["20-seed.sql"] = seed.rstrip() + "\n"
    size = sum(len(text.encode()) for text in scripts.values())
    if size > MAX_SCRIPTS_BYTES:
        raise SandboxBuildError(
            f"spec.database.seedData: the schema and seed rows are {size} bytes; a {dialect} "
            f"sandbox loads them from a ConfigMap, which holds at most {MAX_SCRIPTS_BYTES}"
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(run, extra_labels),
        "immutable": True,
        "data": scripts,
    }


def _resources(run: DistillRun) -> dict[str, dict[str, str]]:
    """Requests equal to limits (Guaranteed QoS): the sandbox never borrows a node's slack."""
    wanted = {**DEFAULT_RESOURCES, **run.spec.database.sandbox.resources}
    return {"requests": dict(wanted), "limits": dict(wanted)}


def _security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": SERVER_UID,
        "runAsGroup": SERVER_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


_POSTGRES_SETTINGS = (
    "listen_addresses=*",
    "password_encryption=scram-sha-256",
    "max_connections=100",
    # the data is a throw-away copy, loaded again from the ConfigMap on every start
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
)


def _postgres(run: DistillRun) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    name = sandbox_name(run)
    container = {
        "env": [
            {"name": "POSTGRES_USER", "value": DEFAULT_ADMINS[Dialect.POSTGRES]},
            _secret_env("POSTGRES_PASSWORD", name),
            {"name": "POSTGRES_DB", "value": REFERENCE_DATABASE},
            {"name": "POSTGRES_HOST_AUTH_METHOD", "value": "scram-sha-256"},
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "args": [arg for setting in _POSTGRES_SETTINGS for arg in ("-c", setting)],
        "readinessProbe": _exec_probe(
            [
                "pg_isready",
                "--host=127.0.0.1",
                "--username=postgres",
                f"--dbname={REFERENCE_DATABASE}",
            ]
        ),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True},
        ],
    }
    return container, [_empty_dir("run"), _empty_dir("tmp")]


def _mysql(run: DistillRun) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    name = sandbox_name(run)
    container = {
        "env": [
            _secret_env("MARIADB_ROOT_PASSWORD", name),
            {"name": "MARIADB_ROOT_HOST", "value": "%"},
            {"name": "MARIADB_DATABASE", "value": REFERENCE_DATABASE},
        ],
        "args": [
            *MARIADB_HARDENING,
            "--secure-file-priv=/var/lib/mysql-files",
            "--skip-log-bin",
            "--max-connections=100",
            "--character-set-server=utf8mb4",
            "--innodb-flush-log-at-trx-commit=0",
        ],
        "readinessProbe": _exec_probe(["healthcheck.sh", "--connect", "--innodb_initialized"]),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/mysql"},
            {"name": "run", "mountPath": "/run/mysqld"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "no-files", "mountPath": "/var/lib/mysql-files", "readOnly": True},
            {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True},
        ],
    }
    return container, [_empty_dir("run"), _empty_dir("tmp"), _empty_dir("no-files")]


def _exec_probe(command: list[str]) -> dict[str, Any]:
    return {
        "exec": {"command": command},
        "initialDelaySeconds": 3,
        "periodSeconds": 5,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def _empty_dir(name: str, size: str = "64Mi") -> dict[str, Any]:
    return {"name": name, "emptyDir": {"sizeLimit": size}}


def _secret_env(name: str, secret: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": PASSWORD_KEY}}}


def sandbox_deployment(
    run: DistillRun, images: SandboxImages, extra_labels: Mapping[str, str]
) -> dict[str, Any]:
    """One server replica, recreated (never rolled) so two servers never share a run."""
    dialect = _require_server(run)
    metadata = _metadata(run, extra_labels)
    container, volumes = _postgres(run) if dialect == Dialect.POSTGRES else _mysql(run)
    port = _port(run)
    container = {
        "name": str(dialect),
        "image": images.for_dialect(dialect),
        **container,
        "ports": [{"name": "sql", "containerPort": port, "protocol": "TCP"}],
        "livenessProbe": {
            "tcpSocket": {"port": port},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "resources": _resources(run),
        "securityContext": _security_context(),
    }
    pod_spec = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SERVER_UID,
            "runAsGroup": SERVER_UID,
            "fsGroup": SERVER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            _empty_dir("data", DATA_SIZE_LIMIT),
            *volumes,
            {"name": "init", "configMap": {"name": metadata["name"]}},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": sandbox_selector(run)},
            "template": {"metadata": {"labels": dict(metadata["labels"])}, "spec": pod_spec},
        },
    }


def sandbox_service(run: DistillRun, extra_labels: Mapping[str, str]) -> dict[str, Any]:
    """A ClusterIP Service in front of the server; its name is the host the stages dial."""
    _require_server(run)
    port = _port(run)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(run, extra_labels),
        "spec": {
            "type": "ClusterIP",
            "selector": sandbox_selector(run),
            "ports": [{"name": "sql", "port": port, "targetPort": "sql", "protocol": "TCP"}],
        },
    }


def sandbox_network_policy(run: DistillRun, extra_labels: Mapping[str, str]) -> dict[str, Any]:
    """Ingress from this run's Ray pods on the database port only; no egress at all."""
    _require_server(run)
    ray_pods = {
        "matchLabels": {LABEL_RUN_UID: run.metadata.uid or ""},
        "matchExpressions": [{"key": RAY_NODE_LABEL, "operator": "Exists"}],
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(run, extra_labels),
        "spec": {
            "podSelector": {"matchLabels": sandbox_selector(run)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"podSelector": ray_pods}],
                    "ports": [{"protocol": "TCP", "port": _port(run)}],
                }
            ],
            "egress": [],
        },
    }


def sandbox_env(run: DistillRun) -> list[dict[str, Any]]:
    """Environment of the Ray pods that run queries: the `DISTILLRUN_SANDBOX_*` variables the
    stages' `open_sandbox` reads, the password by reference to the Secret."""
    dialect = _require_server(run)
    name = sandbox_name(run)
    return [
        {"name": ENV_HOST, "value": name},
        {"name": ENV_PORT, "value": str(DEFAULT_PORTS[dialect])},
        {"name": ENV_USER, "value": DEFAULT_ADMINS[dialect]},
        _secret_env(ENV_PASSWORD, name),
    ]


def sandbox_manifests(
    run: DistillRun,
    *,
    ddl: str,
    seed: str | None,
    password: str,
    images: SandboxImages,
    extra_labels: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Every object of the run's sandbox, in the order to create them (the policy first, so the
    server is never reachable unguarded)."""
    return [
        sandbox_network_policy(run, extra_labels),
        sandbox_secret(run, password, extra_labels),
        sandbox_config_map(run, ddl, seed, extra_labels),
        sandbox_deployment(run, images, extra_labels),
        sandbox_service(run, extra_labels),
    ]
