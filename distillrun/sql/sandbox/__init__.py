"""Sandboxes that execute untrusted SQL against a copy of the target schema and its seed rows.

`open_sandbox` picks the engine for the schema's dialect. Every sandbox runs its engine (or, for
PostgreSQL and MySQL, its client of a real server) in a separate worker process (see
`process.py` for why); the embedded engines are in `sqlite_engine.py` and `duckdb_engine.py`,
the server sandboxes in `server.py`, `postgres.py` and `mysql.py`.
"""

from distillrun.sql.sandbox.base import ResultSet, Sandbox
from distillrun.sql.sandbox.factory import open_sandbox
from distillrun.sql.sandbox.process import WorkerSandbox
from distillrun.sql.sandbox.server import ServerSandbox
from distillrun.sql.target import ServerTarget

__all__ = ["ResultSet", "Sandbox", "ServerSandbox", "ServerTarget", "WorkerSandbox", "open_sandbox"]
