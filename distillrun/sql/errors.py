"""One error root for the SQL layer, so callers can catch `SqlError` and nothing else.

Static check failures (`QueryRejected`) carry a `Reason` and, for parse errors, a position;
execution failures (`QueryTimeout`, `QueryFailed`) carry the engine's own message; a sandbox
that cannot be built or kept alive raises `SandboxError`, which is never the query's fault.
"""

from __future__ import annotations

from distillrun.sql.verdict import Reason


class SqlError(Exception):
    """Root of every error raised by `distillrun.sql`; `message` is the human-readable part."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class QueryRejected(SqlError):
    """The static checks refused the query before it reached any engine.

    `line` and `col` (1-based) point at the offending token when the checker knows it.
    """

    def __init__(
        self, reason: Reason, message: str, *, line: int | None = None, col: int | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.line = line
        self.col = col


class QueryTimeout(SqlError):
    """The query ran past the sandbox's statement timeout and was stopped."""


class QueryFailed(SqlError):
    """The engine refused or failed the query.

    `reason` is `EXECUTION_ERROR` for ordinary engine errors. The sandbox's own guards (the
    engine's parser seeing several statements or a non-SELECT, the SQLite authorizer denying
    an action) report the matching static reason instead, so a query that slipped past the
    static checks is still counted under the right class.
    """

    def __init__(self, message: str, *, reason: Reason = Reason.EXECUTION_ERROR) -> None:
        super().__init__(message)
        self.reason = reason


class SandboxError(SqlError):
    """The sandbox cannot be built or used (bad DDL or seed rows, engine missing, worker lost)."""


class SandboxUnreachable(SandboxError):
    """The sandbox server could not be reached at all: refused, unresolvable, timed out,
    starting up or shutting down.

    On Kubernetes that is a server pod not Ready yet (the run's first stage starts beside it)
    or being replaced (deleted, evicted, its node drained): nothing is wrong with the schema
    or seed rows, and the same inputs work once the server is back. So the stages wait for it
    (`jobs.inputs.load_inputs`) instead of calling the inputs invalid, and a stage that could
    not get it back fails with a retryable reason (`SandboxUnavailable`).
    """


class SessionLost(SandboxError):
    """A server sandbox's session ended under a query, or none could be opened.

    The server restarted, the session was killed or the private database is gone. The server
    sandbox repairs itself and re-runs the query once; only when it cannot does this reach the
    caller, as a `SandboxError` (not the query's fault).
    """
