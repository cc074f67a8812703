"""The sandbox worker process: `python -m distillrun.sql.sandbox.worker`.

It reads one start-up message (engine, database location, build inputs, limits) and then answers
requests (`execute`, `checksum`) one at a time until its stdin closes. Its address space is
capped before any engine loads, so a query that tries to allocate its way out fails inside
the worker instead of taking the host down.
"""

from __future__ import annotations

import os
import resource
from typing import Any

from distillrun.sql.errors import QueryFailed, QueryTimeout, SessionLost, SqlError
from distillrun.sql.sandbox.engine import Engine, FileEngine, Limits
from distillrun.sql.sandbox.protocol import (
    MAX_FRAME_BYTES,
    encode_frame,
    encode_value,
    read_frame,
    write_frame,
)

_STDIN = 0


def _cap_memory(limit: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _open_engine(start: dict[str, Any]) -> Engine:
    limits = Limits(
        timeout_ms=start["timeout_ms"],
        max_rows=start["max_rows"],
        memory_bytes=start["memory_bytes"],
        deny_functions=frozenset(start["deny_functions"]),
        deny_prefixes=tuple(start["deny_prefixes"]),
    )
    engine_class = _engine_class(start["engine"])
    if start["build"]:
        assert issubclass(engine_class, FileEngine), "only embedded engines build their database"
        engine_class.build(start["location"], start["ddl"], start["seed"])
    return engine_class(start["location"], limits)


def _engine_class(name: str) -> type[Engine]:
    """Imported on demand: a SQLite sandbox must not need DuckDB or a server driver."""
    if name == "duckdb":
        from distillrun.sql.sandbox.duckdb_engine import DuckdbEngine

        return DuckdbEngine
    if name == "postgres":
        from distillrun.sql.sandbox.postgres import PostgresEngine

        return PostgresEngine
    if name == "mysql":
        from distillrun.sql.sandbox.mysql import MysqlEngine

        return MysqlEngine
    from distillrun.sql.sandbox.sqlite_engine import SqliteEngine

    return SqliteEngine


def _answer(engine: Engine, request: dict[str, Any]) -> bytes:
    if request["op"] == "checksum":
        if not isinstance(engine, FileEngine):
            return encode_frame(
                {"error": "failed", "message": "server engines checksum on the server"}
            )
        return encode_frame({"ok": True, "checksum": engine.checksum()})
    try:
        result = engine.execute(request["sql"])
    except QueryTimeout as error:
        return encode_frame({"error": "timeout", "message": error.message})
    except QueryFailed as error:
        return encode_frame({"error": "failed", "message": error.message, "reason": error.reason})
    except SessionLost as error:
        return encode_frame({"error": "lost", "message": error.message})
    frame = encode_frame(
        {
            "ok": True,
            "columns": list(result.columns),
            "rows": [encode_value(row) for row in result.rows],
            "truncated": result.truncated,
            "ms": result.ms,
        }
    )
    if len(frame) > MAX_FRAME_BYTES:
        message = f"the result is {len(frame)} bytes; the cap is {MAX_FRAME_BYTES}"
        return encode_frame({"error": "failed", "message": message})
    return frame


def main() -> None:
    # Answers go to a private copy of stdout; stdout itself is pointed at stderr so that a
    # stray print from any library can never corrupt the protocol.
    answers = os.dup(1)
    os.dup2(2, 1)
    start = read_frame(_STDIN)
    try:
        _cap_memory(start["memory_bytes"])
        engine = _open_engine(start)
    except SqlError as error:
        write_frame(answers, encode_frame({"error": "sandbox", "message": error.message}))
        return
    except ImportError as error:
        message = f"the {start['engine']} engine is not installed ({error})"
        write_frame(answers, encode_frame({"error": "sandbox", "message": message}))
        return
    write_frame(answers, encode_frame({"ok": True}))
    try:
        while True:
            try:
                request = read_frame(_STDIN)
            except EOFError:
                return
            try:
                answer = _answer(engine, request)
            except MemoryError:
                answer = encode_frame(
                    {"error": "failed", "message": "the result does not fit in sandbox memory"}
                )
            write_frame(answers, answer)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
