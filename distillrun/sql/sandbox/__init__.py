"""Sandboxes that execute untrusted SQL against a copy of the target schema and its seed rows.

`open_sandbox` picks the engine for the schema's dialect. Every sandbox runs its engine in a
separate worker process (see `process.py` for why); the engines themselves are in
`sqlite_engine.py` and `duckdb_engine.py`.
"""

from distillrun.sql.sandbox.base import ResultSet, Sandbox
from distillrun.sql.sandbox.process import WorkerSandbox, open_sandbox

__all__ = ["ResultSet", "Sandbox", "WorkerSandbox", "open_sandbox"]
