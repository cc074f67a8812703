"""The price table: one data file, overridable, exact money, and a refusal for unpriced models."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path

import pytest

from distillrun.api.spec import TeacherSpec
from distillrun.teacher.base import Usage
from distillrun.teacher.factory import TeacherUnavailable, make_teacher
from distillrun.teacher.pricing import (
    PRICES_ENV,
    ModelPrice,
    PriceError,
    from_usd,
    load_prices,
    to_usd,
)


def test_models_match_exactly_or_by_their_longest_listed_prefix() -> None:
    table = load_prices({})
    assert table.price("claude-sonnet-5-5").output == Decimal(15)
    assert table.price("claude-sonnet-4-5-20250929") == table.price("claude-sonnet-4")
    assert table.price("claude-haiku-4-5").input == Decimal(1)
    assert table.price("claude-opus-4-5").cache_read == Decimal("0.50")
    with pytest.raises(PriceError, match=PRICES_ENV):
        table.price("claude-opus-4-1")


def test_a_prices_file_overrides_and_extends_the_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "models": {
                    "claude-sonnet-5-5": {
                        "input": "2.5",
                        "output": "12",
                        "cacheWrite": "3.125",
                        "cacheRead": "0.25",
                    },
                    "qwen3-coder": {"input": 0, "output": 0, "cacheWrite": 0, "cacheRead": 0},
                }
            }
        )
    )
    table = load_prices({PRICES_ENV: str(path)})
    assert table.price("claude-sonnet-5-5").input == Decimal("2.5")
    assert table.price("claude-sonnet-5-5").batch_discount == Decimal("0.5")
    assert table.price("qwen3-coder").output == 0
    assert table.price("claude-haiku-4-5").input == Decimal(1)  # untouched entries stay

    path.write_text('{"models": {"x": {"input": 1, "output": "lots"}}}')
    with pytest.raises(PriceError, match=r"models\.x\.output is not a number"):
        load_prices({PRICES_ENV: str(path)})
    with pytest.raises(PriceError, match="cannot read it"):
        load_prices({PRICES_ENV: str(tmp_path / "missing.json")})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"models": {"x": {"input": NaN, "output": 1, "cacheWrite": 1, "cacheRead": 1}}}',
            r"models\.x\.input is not a number",
        ),
        (
            '{"models": {"x": {"input": 1, "output": Infinity, "cacheWrite": 1, "cacheRead": 1}}}',
            r"models\.x\.output is not a number",
        ),
        (
            '{"models": {"": {"input": 1, "output": 1, "cacheWrite": 1, "cacheRead": 1}}}',
            "model name in models is empty",
        ),
    ],
)
def test_a_bad_prices_file_is_named_with_its_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(text)
    with pytest.raises(PriceError, match=message):
        load_prices({PRICES_ENV: str(path)})


def test_a_prices_file_that_is_not_text_is_named(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(PriceError, match="not UTF-8"):
        load_prices({PRICES_ENV: str(path)})


def test_costs_are_exact_and_add_up() -> None:
    price = ModelPrice(Decimal(3), Decimal(15), Decimal("3.75"), Decimal("0.30"))
    usage = Usage(
        input_tokens=1_234, output_tokens=5_678, cache_write_tokens=2_048, cache_read_tokens=9_999
    )
    assert price.cost(usage) == Decimal("0.0995517")  # 3702 + 85170 + 7680 + 2999.7 µ$
    assert price.cost(usage, batch=True) == Decimal("0.04977585")
    rng = random.Random(7)
    parts = [
        Usage(
            input_tokens=rng.randrange(5000),
            output_tokens=rng.randrange(5000),
            cache_write_tokens=rng.randrange(5000),
            cache_read_tokens=rng.randrange(50000),
        )
        for _ in range(500)
    ]
    total = Usage(
        input_tokens=sum(p.input_tokens for p in parts),
        output_tokens=sum(p.output_tokens for p in parts),
        cache_write_tokens=sum(p.cache_write_tokens for p in parts),
        cache_read_tokens=sum(p.cache_read_tokens for p in parts),
    )
    stored = [to_usd(price.cost(p, batch=True)) for p in parts]  # what shards record
    assert sum(from_usd(s) for s in stored) == price.cost(total, batch=True)


def test_a_teacher_without_a_price_is_refused_naming_the_model_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PRICES_ENV, raising=False)
    with pytest.raises(TeacherUnavailable) as refused:
        make_teacher(TeacherSpec(provider="anthropic", model="claude-unknown-1"))
    assert refused.value.field == "spec.teacher.model"
    assert "claude-unknown-1" in str(refused.value)
