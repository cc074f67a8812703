"""The wire between a sandbox and its worker process, and the plain values that cross it.

Messages are JSON objects in length-prefixed frames over the worker's stdin and stdout. JSON
rather than pickle because the worker runs hostile queries: should an engine ever be
subverted, what it sends back is parsed as data and can never become code in the parent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import select
import struct
import time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from distillrun.sql.errors import SandboxError

_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 256 * 2**20
"""Largest message either side accepts; the worker answers bigger results with an error."""


def plain(value: Any) -> Any:
    """Converts an engine value into a plain, hashable, JSON-able Python value.

    Integral decimals become int and the rest float (comparison is tolerant anyway), dates
    and times become ISO strings (which is how SQLite stores them, so both engines agree),
    lists become tuples and structs tuples of (key, value) pairs.
    """
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, Decimal):
        integral = value.is_finite() and value == value.to_integral_value()
        return int(value) if integral else float(value)  # NaN and infinities as floats
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, list | tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, dict):
        return tuple((str(k), plain(v)) for k, v in value.items())
    return str(value)  # intervals, UUIDs and anything newer: their text form is stable


def encode_value(value: Any) -> Any:
    """A plain value as JSON: bytes become {"hex": ...}, tuples lists."""
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, tuple):
        return [encode_value(v) for v in value]
    return value


def decode_value(value: Any) -> Any:
    """Inverse of `encode_value`."""
    if isinstance(value, dict):
        return bytes.fromhex(value["hex"])
    if isinstance(value, list):
        return tuple(decode_value(v) for v in value)
    return value


def rows_digest(rows: Iterable[Sequence[Any]]) -> str:
    """sha256 of rows in an order that does not depend on the engine's scan order."""
    hasher = hashlib.sha256()
    for line in sorted(json.dumps(encode_value(plain(tuple(row)))) for row in rows):
        hasher.update(line.encode() + b"\n")
    return hasher.hexdigest()


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


def write_frame(fd: int, frame: bytes, deadline: float | None = None) -> None:
    """Writes one message; TimeoutError past `deadline` (a `time.monotonic()` value).

    With a deadline, chunks of at most PIPE_BUF bytes are written only once the pipe has room
    for them, so a reader that stopped reading can never block the writer.
    """
    view = memoryview(frame)
    while view:
        if deadline is not None:
            _wait(fd, deadline, writing=True)
            chunk = view[: select.PIPE_BUF]
        else:
            chunk = view
        view = view[os.write(fd, chunk) :]


def read_frame(fd: int, deadline: float | None = None) -> dict[str, Any]:
    """Reads one message; EOFError when the other side is gone, TimeoutError past `deadline`
    (a `time.monotonic()` value; None waits forever)."""
    size = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))[0]
    if size > MAX_FRAME_BYTES:
        raise SandboxError(f"sandbox message of {size} bytes exceeds {MAX_FRAME_BYTES}")
    message = json.loads(_read_exact(fd, size, deadline))
    if not isinstance(message, dict):
        raise SandboxError("sandbox message is not a JSON object")
    return message


def _wait(fd: int, deadline: float, *, writing: bool = False) -> None:
    remaining = deadline - time.monotonic()
    watched = ([], [fd]) if writing else ([fd], [])
    if remaining <= 0 or not any(select.select(*watched, [], remaining)[:2]):
        raise TimeoutError("no answer before the deadline")


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        if deadline is not None:
            _wait(fd, deadline)
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
