"""A stage whose sandbox server does not answer waits for it, and if it never comes, fails with
a retryable `SandboxUnavailable`, never with `InputsInvalid`.

Found while writing the e2e fault test that deletes the sandbox server pod of a postgres run
mid-validate: the replacement pod takes seconds to load the schema, and a stage that opened its
first sandbox meanwhile (or lost the server while loading it) called the valid seed rows
invalid (`InputsInvalid`, not retryable), which ends the run for good. The same race exists on
a real cluster whenever the server pod starts later than the first stage's Ray cluster (an
image pull) or is evicted or rescheduled."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from distillrun.api.errors import ManifestError
from distillrun.api.failures import FailureReason, is_retryable
from distillrun.api.status import StageName
from distillrun.jobs import entrypoint, inputs
from distillrun.operator.builders.config import run_store_uri, stage_config
from distillrun.operator.outputs import StoreOutputs
from distillrun.sql.errors import SandboxError, SandboxUnreachable
from distillrun.sql.sandbox import postgres
from distillrun.sql.sandbox.server import not_reached
from distillrun.sql.target import ENV_HOST, ENV_PASSWORD, ENV_PORT, ENV_USER
from tests.unit.jobs.test_entrypoint import inline_run

SHOP = Path(__file__).parents[3] / "examples" / "shop"


def _never(seconds: float) -> None:
    raise AssertionError(f"waited {seconds} s without being asked to")


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server_not_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox variables name a server that refuses connections (no pod behind the
    Service yet)."""
    monkeypatch.setenv(ENV_HOST, "127.0.0.1")
    monkeypatch.setenv(ENV_PORT, str(_closed_port()))
    monkeypatch.setenv(ENV_USER, "postgres")
    monkeypatch.setenv(ENV_PASSWORD, "unused")


@pytest.mark.usefixtures("server_not_there")
def test_a_cluster_stage_reports_a_server_that_never_answers_as_unreachable() -> None:
    slept: list[float] = []
    with pytest.raises(SandboxUnreachable, match="Connection refused"):
        inputs.load_inputs(inline_run("postgres"), SHOP, "shop", wait_s=0.05, sleep=slept.append)
    assert slept and set(slept) == {inputs.SANDBOX_RETRY_S}


@pytest.mark.usefixtures("server_not_there")
def test_a_local_run_names_its_unreachable_server_at_once() -> None:
    """Locally the server is the user's own setting: no wait, the field named."""
    with pytest.raises(ManifestError, match="cannot reach the PostgreSQL sandbox server"):
        inputs.load_inputs(inline_run("postgres"), SHOP, "shop", sleep=_never)


def test_a_server_that_comes_up_while_the_stage_waits_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refusals = ["not up yet", "starting up"]

    @contextmanager
    def server_coming_up(*_: Any) -> Iterator[None]:
        if refusals:
            raise SandboxUnreachable(refusals.pop(0))
        yield

    monkeypatch.setattr(inputs, "open_sandbox", server_coming_up)
    slept: list[float] = []
    schema, seed = inputs.load_inputs(
        inline_run("postgres"), SHOP, "shop", wait_s=600.0, sleep=slept.append
    )
    assert schema.dialect == "postgres" and seed
    assert slept == [inputs.SANDBOX_RETRY_S] * 2


def test_a_server_that_refuses_the_inputs_still_names_the_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuses(*_: Any) -> None:
        raise SandboxError("INSERT INTO customers ...: relation does not exist")

    monkeypatch.setattr(inputs, "open_sandbox", refuses)
    with pytest.raises(ManifestError, match=r"spec\.database\.seedData"):
        inputs.load_inputs(inline_run("postgres"), SHOP, "shop", sleep=lambda _: None)


@pytest.mark.parametrize(
    ("message", "reached"),
    [
        ('connection to server at "10.0.0.7", port 5432 failed: Connection refused', False),
        ("FATAL:  the database system is starting up", False),
        ("FATAL:  the database system is shutting down", False),
        ('could not translate host name "shop-sandbox" to address', False),
        ("server closed the connection unexpectedly", False),
        ('FATAL:  password authentication failed for user "postgres"', True),
        ('FATAL:  role "postgres" does not exist', True),
    ],
)
def test_no_server_is_told_from_a_server_that_refuses_the_login(
    message: str, reached: bool
) -> None:
    assert not_reached(message) is not reached


@pytest.mark.usefixtures("server_not_there")
def test_the_entrypoint_records_a_server_that_stayed_away_as_retryable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(inputs, "SANDBOX_WAIT_S", 0.05)
    monkeypatch.setattr(inputs, "SANDBOX_RETRY_S", 0.01)
    run = inline_run("postgres")
    store = run_store_uri(f"file://{tmp_path / 'store'}", run)
    config = tmp_path / "run.json"
    config.write_text(stage_config(run, StageName.VALIDATE, 2, store, {}).to_json())

    assert entrypoint.main([str(config)]) == 1

    failure = StoreOutputs(store).failure(StageName.VALIDATE, 2)
    assert failure is not None
    assert (failure.reason, failure.retryable) == (FailureReason.SANDBOX_UNAVAILABLE, True)
    assert "Connection refused" in failure.message
    assert is_retryable("SandboxUnavailable")


@pytest.mark.parametrize(
    ("error", "unreachable"),
    [
        (errors.AdminShutdown("terminating connection due to administrator command"), True),
        (errors.CannotConnectNow("the database system is starting up"), True),
        (psycopg.OperationalError("consuming input failed: server closed the connection"), True),
        (psycopg.OperationalError("the connection is lost"), True),
        (errors.UndefinedTable('relation "customers" does not exist'), False),
        (psycopg.OperationalError('password authentication failed for user "postgres"'), False),
    ],
)
def test_a_postgres_server_going_away_mid_build_is_unreachable_not_bad_inputs(
    error: psycopg.Error, unreachable: bool
) -> None:
    """The server pod deleted while a sandbox loads the schema: the loss shows as a failed
    statement, which must not read as a seed row the server refused."""
    raised = postgres._failure("schema statement 1 failed", error)
    assert isinstance(raised, SandboxUnreachable) is unreachable
    assert isinstance(raised, SandboxError)
