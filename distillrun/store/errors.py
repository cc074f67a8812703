"""The store's error vocabulary. Every backend failure a user can cause or fix (a missing object,
a missing bucket, an unreachable endpoint, a bad key) surfaces as one of these, with a message
that names the URI, so callers catch `StoreError` and never a backend's own exception types."""

from __future__ import annotations


class StoreError(Exception):
    """Root of all store errors; the message names the store URI or key at fault."""


class ObjectNotFound(StoreError):
    """No object exists under the key (or no object under a prefix that must hold some)."""


class ChecksumMismatch(StoreError):
    """An object's bytes do not match the sha256 recorded when it was written, or none was
    recorded: the object was changed or corrupted outside the store and must not be used."""
