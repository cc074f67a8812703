"""A student URI the store cannot use stops the stage with a message naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillrun.api.status import StageName
from distillrun.jobs.context import StageFailed
from distillrun.jobs.student import _from_uri


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("file://relative/model", r"spec\.student\.model: .*absolute path"),
        ("file:///nonexistent-distillrun/model", "no model files under"),
    ],
)
def test_an_unusable_student_uri_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uri: str, message: str
) -> None:
    monkeypatch.setenv("DISTILLRUN_CACHE_DIR", str(tmp_path))
    with pytest.raises(StageFailed, match=message) as failed:
        _from_uri(uri, StageName.TRAIN)
    assert failed.value.reason == "StudentNotFound"
