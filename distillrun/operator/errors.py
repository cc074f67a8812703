"""What an error means to a handler, decided in one place.

- 409 on create: the child is already there (a deterministic name met its twin) — handled where
  children are created, never an error.
- 409 on a status write: someone changed the run since it was read — re-read and recompute.
- 429, 5xx, connection problems: the apiserver is busy or away — `kopf.TemporaryError` with the
  server's `Retry-After` (or a short default); the periodic level-based resync retries too.
- an invalid spec or any other 4xx: retrying cannot help — `kopf.PermanentError` (the controller
  has already written a condition that says why).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import kopf
import urllib3.exceptions

from distillrun.api.errors import ManifestError
from distillrun.operator.kube import ApiError
from distillrun.store import StoreError

DEFAULT_RETRY_DELAY_S = 5.0
CONFLICT = 409


def is_retryable(error: ApiError) -> bool:
    return error.status == 429 or error.status >= 500


def translate(error: Exception, doing: str) -> kopf.TemporaryError | kopf.PermanentError:
    """The kopf error for `error` raised while `doing` something."""
    if isinstance(error, ApiError):
        if is_retryable(error):
            delay = error.retry_after if error.retry_after is not None else DEFAULT_RETRY_DELAY_S
            return kopf.TemporaryError(f"{doing}: {error}", delay=delay)
        return kopf.PermanentError(f"{doing}: {error}")
    if isinstance(error, urllib3.exceptions.HTTPError | StoreError | OSError):
        return kopf.TemporaryError(f"{doing}: {error}", delay=DEFAULT_RETRY_DELAY_S)
    if isinstance(error, ManifestError):
        return kopf.PermanentError(f"{doing}: {error}")
    raise TypeError(f"no mapping for {type(error).__name__}") from error


@contextmanager
def mapped(doing: str) -> Iterator[None]:
    """Raises the kopf error that `translate` picks for whatever fails inside."""
    try:
        yield
    except (ApiError, urllib3.exceptions.HTTPError, StoreError, OSError, ManifestError) as exc:
        raise translate(exc, doing) from exc
