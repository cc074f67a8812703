"""A small JSON client for the few Kubernetes calls the operator makes.

The official client's generated methods turn every object into a typed model; the operator
builds and reads plain dicts (the builders' output, RayJobs it has no model for), so this class
uses the client only for what it is good at — kubeconfig / in-cluster credentials, TLS and
connection pooling — and speaks JSON over it. Every call goes through `request`, which counts it
(the benchmark reports requests per reconcile) and raises `ApiError` for non-2xx answers; what
an error *means* to a handler is decided in one place, `distillrun.operator.errors`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import kopf
from kubernetes import client, config

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
DEFAULT_TIMEOUT_S = 30.0


class ApiError(Exception):
    """A non-2xx answer: HTTP `status`, the apiserver's `reason` and `message`, and the
    `Retry-After` seconds when the server sent one (429, some 5xx)."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"{status} {reason}: {message}")


def load_api_client(
    kubeconfig: str | None = None, connections: int | None = None
) -> client.ApiClient:
    """Credentials from the pod's service account when in a cluster, else from a kubeconfig
    (`kubeconfig`, or $KUBECONFIG / ~/.kube/config). `connections`: the connections kept open
    for reuse, at least as many as threads making requests at once; the client's default (5 per
    CPU) is 10 on 2 cores, and every request beyond it opened a TLS connection and discarded it
    ("Connection pool is full")."""
    configuration = client.Configuration()
    if connections is not None:
        configuration.connection_pool_maxsize = connections
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return client.ApiClient(configuration)
        except config.ConfigException:
            pass
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, client_configuration=configuration
    )
    return client.ApiClient(configuration)


def _uncounted(method: str) -> None:
    return None


def connection_info(api: client.ApiClient) -> kopf.ConnectionInfo:
    """The same credentials for kopf's own watches, so the operator has one source of them."""
    configuration = api.configuration
    header = configuration.get_api_key_with_prefix("BearerToken")
    scheme, _, token = (header or "").partition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


class Kube:
    """JSON requests against the apiserver; `on_request(method)` is told of each one (metrics).
    Thread-safe: the client's connection pool is."""

    def __init__(
        self,
        api: client.ApiClient,
        on_request: Callable[[str], None] = _uncounted,
        field_manager: str = "distillrun-operator",
    ) -> None:
        self.api = api
        self.on_request = on_request
        self.field_manager = field_manager

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> Any:
        """The decoded JSON answer of `method path`, or ApiError."""
        self.on_request(method)
        serialized = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params={"Accept": JSON, "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*serialized, _request_timeout=DEFAULT_TIMEOUT_S)
        data = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise _error(response.status, response.reason or "", data, response.headers)
        return json.loads(data) if data else None

    # -- the calls the operator makes ---------------------------------------------------------

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def list(self, path: str, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.request("GET", path, query={"labelSelector": selector})[
            "items"
        ]
        return items

    def create(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, query={"fieldManager": self.field_manager}, body=body)

    def merge_patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.request(
            "PATCH",
            path,
            query={"fieldManager": self.field_manager},
            body=body,
            content_type=MERGE_PATCH,
        )

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path, body={"propagationPolicy": "Background"})


def _error(status: int, reason: str, data: bytes, headers: Any) -> ApiError:
    message = data.decode("utf-8", "replace")
    try:
        decoded = json.loads(data)
        if isinstance(decoded, dict):
            message = str(decoded.get("message", message))
            reason = str(decoded.get("reason", reason))
    except ValueError:
        pass
    retry_after: float | None = None
    raw = headers.get("Retry-After") if headers is not None else None
    if raw:
        try:
            retry_after = float(raw)
        except ValueError:
            retry_after = None
    return ApiError(status, reason, message, retry_after)


def namespaced_path(api_version: str, namespace: str, plural: str, name: str = "") -> str:
    """Path of a namespaced collection (`v1` is the core group), or of one object."""
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{root}/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path


def custom_path(group: str, version: str, namespace: str, plural: str, name: str = "") -> str:
    """Path of a namespaced custom resource collection, or of one object when `name` is set."""
    return namespaced_path(f"{group}/{version}", namespace, plural, name)


def core_path(namespace: str, plural: str, name: str = "") -> str:
    """Path of a namespaced core/v1 collection, or of one object."""
    return namespaced_path("v1", namespace, plural, name)
