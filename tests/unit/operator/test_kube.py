"""The operator's API client keeps a connection open for each thread that makes requests."""

from __future__ import annotations

from pathlib import Path

from distillrun.operator.kube import load_api_client

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: test
  user: {token: not-a-secret}
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
"""


def test_the_connection_pool_holds_as_many_connections_as_asked(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    api = load_api_client(str(kubeconfig), connections=17)
    try:
        assert api.rest_client.pool_manager.connection_pool_kw["maxsize"] == 17
    finally:
        api.close()  # type: ignore[no-untyped-call]
