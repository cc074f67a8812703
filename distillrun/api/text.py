"""Reading a user's text file as UTF-8, or saying which encoding it is in instead.

Manifests, schema and seed files and gold sets are UTF-8. A file saved as UTF-16 (what some
Windows editors and PowerShell's `>` write) or as Latin-1 / Windows-1252 would otherwise end in
a UnicodeDecodeError traceback; here it becomes a `NotUtf8` whose message names the file, the
encoding it looks like and where the first bad byte is, so the user knows what to re-save. A
UTF-8 byte-order mark is dropped (it is still UTF-8).
"""

from __future__ import annotations

import codecs
from pathlib import Path

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)


class NotUtf8(ValueError):
    """A file that is not UTF-8 text; the message names the file and its likely encoding."""


def _likely_encoding(data: bytes) -> str:
    if data.startswith(_UTF32_BOMS):  # before UTF-16: the UTF-32 LE mark starts with UTF-16's
        return "UTF-32 (it starts with a UTF-32 byte-order mark)"
    if data.startswith(_UTF16_BOMS):
        return "UTF-16 (it starts with a UTF-16 byte-order mark)"
    if data[:512].count(0) * 4 >= min(len(data), 512):
        return "UTF-16 (every other byte is zero)"
    return "Latin-1 or Windows-1252 (8-bit)"


def decode_text(data: bytes, name: str) -> str:
    """`data` as text; raises NotUtf8 naming `name` unless it is UTF-8 (a BOM is allowed)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise NotUtf8(
            f"{name} is not UTF-8 text: it looks like {_likely_encoding(data)}; byte "
            f"0x{data[exc.start]:02x} on line {line} cannot be read. Save it as UTF-8"
        ) from None


def read_text(path: Path) -> str:
    """The UTF-8 text of the file at `path`; OSError when it cannot be read, NotUtf8 when it
    is in another encoding."""
    return decode_text(path.read_bytes(), str(path))
