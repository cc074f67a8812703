"""An HTTP server for fake APIs: 127.0.0.1 (or an address given), a free port (or one given),
served from a thread until closed."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-response (killed, timed out) is not a server error."""


class LoopbackServer:
    """Serves `handler` on loopback from the moment it is made until `close()`."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._host = host
        self._server = _QuietServer((host, port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def root(self) -> str:
        """`http://<host>:<port>`"""
        return f"http://{self._host}:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class ServedFake:
    """A fake API, served on loopback while it is open as a context manager. `handler_class`
    answers its requests and reaches the fake as `self.fake`."""

    _http: LoopbackServer | None = None
    host = "127.0.0.1"
    """Where it listens: loopback, unless a test serves it inside another network namespace."""
    port = 0

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        handler = type("Handler", (self.handler_class(),), {"fake": self})
        self._http = LoopbackServer(handler, self.host, self.port)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._http is not None
        self._http.close()

    @property
    def root(self) -> str:
        """`http://<host>:<port>` while open."""
        assert self._http is not None
        return self._http.root
