"""A student whose config.json cannot give the model's shape stops training with a message
naming the file, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillrun.jobs.context import StageFailed
from distillrun.jobs.student import Student
from distillrun.jobs.train import model_shape


def _student(folder: Path) -> Student:
    return Student(kind="local", model_id="local-model", location=str(folder))


def test_a_local_config_gives_the_shape(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        '{"model_type": "qwen3", "hidden_size": 64, "num_attention_heads": 4, '
        '"intermediate_size": 128, "num_hidden_layers": 2, "vocab_size": 100}'
    )
    shape = model_shape(_student(tmp_path))
    assert (shape.hidden_size, shape.head_dim, shape.num_kv_heads) == (64, 16, 4)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "StudentNotFound"),
        ('{"model_type": "gpt2", "n_embd": 64, "n_head": 4}', "UnsupportedStudent"),
        ("[1, 2]", "UnsupportedStudent"),
    ],
)
def test_an_unusable_config_is_named(tmp_path: Path, content: str, reason: str) -> None:
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(StageFailed, match=r"config\.json") as failed:
        model_shape(_student(tmp_path))
    assert failed.value.reason == reason
