"""Real PostgreSQL and MariaDB servers for the tests (and the benchmark), never mocks.

Each server gets a fresh data directory in a temporary directory, listens on 127.0.0.1 on a
free port, and is stopped and deleted at the end. The binaries come from Debian's packages,
which `scripts/test-deps` installs; when they are missing the caller gets `ServersMissing`
with a message saying so, and the test set fails (it never skips: a skipped sandbox test
would hide an escape).

Both servers refuse to run as root (PostgreSQL outright, MariaDB unless told otherwise), and a
sandbox server should not run as root anyway: when the tests run as root (CI does), the
servers run as the unprivileged `nobody` user, through `subprocess.Popen(user=..., group=...,
extra_groups=[])`, over a data directory handed to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillrun.api.spec import Dialect
from distillrun.operator.builders.sandbox import MARIADB_HARDENING
from distillrun.sql.target import ServerTarget

READY_TIMEOUT_S = 60.0
SERVER_USER = "nobody"
INSTALL_HINT = "run scripts/test-deps (it installs the postgresql and mariadb-server packages)"

_INNODB_FAST = (
    "--innodb-flush-method=nosync",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--innodb-log-file-size=8M",
    "--innodb-buffer-pool-size=64M",
)
"""Durability is worthless for a throw-away test server; these make start-up and loads fast."""


class ServersMissing(RuntimeError):
    """A server binary is not installed; the message names it and how to install it."""


@dataclass(frozen=True)
class RunningServer:
    """A started server: how to administer it, and a directory its user may write to.

    `scratch` is where hostile tests put canary paths: the server's own user could write there,
    so a canary that never appears proves the sandbox's permissions stopped the write, not the
    file system.
    """

    dialect: Dialect
    target: ServerTarget
    scratch: Path
    process: subprocess.Popen[bytes]
    log: Path


def _postgres_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
    if not candidates:
        raise ServersMissing(
            f"PostgreSQL is not installed (no /usr/lib/postgresql/*/bin); {INSTALL_HINT}"
        )
    return candidates[0].parent


def _mariadb_bins() -> tuple[str, str]:
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/bin")
    install = shutil.which("mariadb-install-db", path="/usr/bin:/usr/sbin:" + os.environ["PATH"])
    if server is None or install is None:
        raise ServersMissing(
            f"MariaDB is not installed (no mariadbd or mariadb-install-db); {INSTALL_HINT}"
        )
    return server, install


def check_installed() -> None:
    """Raises ServersMissing unless both servers' binaries are present."""
    _postgres_bin()
    _mariadb_bins()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_server_user() -> dict[str, Any]:
    """Popen arguments that drop root to `nobody`; nothing when not root."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(SERVER_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _hand_over(root: Path) -> None:
    """Gives the server's user the directory tree (only needed when running as root)."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(SERVER_USER)
    for path in [root, *root.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _run(command: list[str], log: Path) -> None:
    with log.open("ab") as out:
        result = subprocess.run(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
            **_as_server_user(),
        )
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(process: subprocess.Popen[bytes], log: Path, probe: Callable[[], None]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"the server exited ({process.returncode}) while starting: {_tail(log)}"
            )
        try:
            probe()
            return
        except Exception:
            if time.monotonic() > deadline:
                waited = f"{READY_TIMEOUT_S:.0f} s"
                raise RuntimeError(
                    f"the server did not accept connections within {waited}: {_tail(log)}"
                ) from None
            time.sleep(0.1)


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **_as_server_user(),
        )


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def postgres_server() -> Iterator[RunningServer]:
    """A PostgreSQL server whose superuser `admin` logs in with a password over TCP."""
    bin_dir = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="distillrun-postgres-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        password = secrets.token_hex(16)
        (root / "scratch").mkdir()
        (root / "pwfile").write_text(password + "\n")
        log = root / "server.log"
        _hand_over(root)
        _run(
            [
                str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "admin",
                f"--pwfile={root / 'pwfile'}", "--auth=scram-sha-256", "--no-sync",
                "--encoding=UTF8", "--locale=C.UTF-8",
            ],
            log,
        )  # fmt: skip
        port = _free_port()
        process = _start(
            [
                str(bin_dir / "postgres"), "-D", str(root / "data"), "-p", str(port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=50", "-c", "shared_buffers=32MB",
            ],
            log,
        )  # fmt: skip
        target = ServerTarget(
            dialect=Dialect.POSTGRES, host="127.0.0.1", port=port, user="admin", password=password
        )
        _wait_ready(process, log, lambda: _probe_postgres(target))
        yield RunningServer(Dialect.POSTGRES, target, root / "scratch", process, log)
    finally:
        if process is not None:
            _stop(process, signal.SIGINT)  # "fast" shutdown: ends sessions, then exits
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def mariadb_server() -> Iterator[RunningServer]:
    """A MariaDB server with an `admin` account (all privileges) reachable over TCP.

    The server runs with the same hardening flags as the Kubernetes sandbox server
    (`MARIADB_HARDENING`): no LOCAL INFILE, no symbolic links, no name resolution, read-only for
    every account without READ_ONLY ADMIN (so a login cannot even change its own password), and
    file access only under an empty directory. Its temporary tables live in its own directory:
    in a shared /tmp, another program's clean-up once deleted one under a running query.
    """
    server_bin, install_bin = _mariadb_bins()
    root = Path(tempfile.mkdtemp(prefix="distillrun-mariadb-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        password = secrets.token_hex(16)
        for name in ("scratch", "nofiles", "tmp"):
            (root / name).mkdir()
        log = root / "server.log"
        _hand_over(root)
        data = f"--datadir={root / 'data'}"
        _run(
            [
                install_bin, "--no-defaults", data, "--auth-root-authentication-method=normal",
                "--skip-test-db", "--skip-name-resolve", *_INNODB_FAST,
            ],
            log,
        )  # fmt: skip
        port = _free_port()
        socket_path = str(root / "mysqld.sock")
        process = _start(
            [
                server_bin, "--no-defaults", data, f"--port={port}", "--bind-address=127.0.0.1",
                f"--socket={socket_path}", f"--pid-file={root / 'mysqld.pid'}",
                f"--tmpdir={root / 'tmp'}",
                f"--log-error={log}", "--skip-log-bin", "--skip-name-resolve",
                *MARIADB_HARDENING, f"--secure-file-priv={root / 'nofiles'}",
                "--max-connections=50", *_INNODB_FAST,
            ],
            log,
        )  # fmt: skip
        _wait_ready(process, log, lambda: _probe_tcp(port))
        _create_mariadb_admin(socket_path, password)
        target = ServerTarget(
            dialect=Dialect.MYSQL, host="127.0.0.1", port=port, user="admin", password=password
        )
        yield RunningServer(Dialect.MYSQL, target, root / "scratch", process, log)
    finally:
        if process is not None:
            _stop(process, signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


def _probe_postgres(target: ServerTarget) -> None:
    import psycopg

    psycopg.connect(
        host=target.host, port=target.port, user=target.user, password=target.password,
        dbname="postgres", connect_timeout=2,
    ).close()  # fmt: skip


def _probe_tcp(port: int) -> None:
    """Raises until the port accepts a connection (pymysql would leak a socket per failed try
    on a Unix socket, which pytest reports)."""
    socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _create_mariadb_admin(socket_path: str, password: str) -> None:
    """Over the local socket as root (empty password right after install): an admin for TCP."""
    import pymysql

    con = pymysql.connect(unix_socket=socket_path, user="root", password="", connect_timeout=2)
    try:
        with con.cursor() as cursor:
            cursor.execute(
                "CREATE USER IF NOT EXISTS 'admin'@'127.0.0.1' IDENTIFIED BY %s", (password,)
            )
            cursor.execute("GRANT ALL PRIVILEGES ON *.* TO 'admin'@'127.0.0.1' WITH GRANT OPTION")
    finally:
        con.close()


@contextlib.contextmanager
def sql_servers() -> Iterator[dict[Dialect, RunningServer]]:
    """Both servers, started side by side (MariaDB's install alone takes a few seconds)."""
    check_installed()
    managers = {Dialect.POSTGRES: postgres_server(), Dialect.MYSQL: mariadb_server()}
    with contextlib.ExitStack() as stack:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {dialect: pool.submit(m.__enter__) for dialect, m in managers.items()}
        servers: dict[Dialect, RunningServer] = {}
        failures: list[BaseException] = []
        for dialect, future in futures.items():
            try:
                servers[dialect] = future.result()
            except BaseException as error:
                failures.append(error)
                continue
            stack.push(managers[dialect].__exit__)
        if failures:
            raise failures[0]
        yield servers
