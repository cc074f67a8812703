"""What teacher tokens cost, from one data table the user can override.

Prices live in `prices.json` next to this module (USD per million tokens: input, output, cache
write, cache read, and the batch discount), never in code paths. A file of the same shape named
by the `DISTILLRUN_PRICES` environment variable is laid over it, model by model, so a team can
correct a price or add a self-hosted model without a release.

Money is `Decimal`: every price in the table is a whole number of cents per million tokens, so a
cost is exact, and a sum of per-shard costs equals the cost of the summed tokens. Floats appear
only at the edge (`Usage.usd`), converted from the exact value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any

from distillrun.api.settings import PriceSettings
from distillrun.teacher.base import Usage

PRICES_ENV = PriceSettings.env_name("prices")
MILLION = Decimal(1_000_000)
ZERO = Decimal(0)


class PriceError(ValueError):
    """A prices file that cannot be used, or a model without a price; the message says which."""


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens for one model."""

    input: Decimal
    output: Decimal
    cache_write: Decimal
    cache_read: Decimal
    batch_discount: Decimal = Decimal("0.5")

    def cost(self, usage: Usage, *, batch: bool = False) -> Decimal:
        """The exact price of `usage` (uncached input, output, cache writes and reads)."""
        total = (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_write_tokens * self.cache_write
            + usage.cache_read_tokens * self.cache_read
        ) / MILLION
        return total * (1 - self.batch_discount) if batch else total


FREE = ModelPrice(ZERO, ZERO, ZERO, ZERO, ZERO)
"""The price of a model nobody bills for (a self-hosted openai-compatible server)."""

_FIELDS = {
    "input": "input",
    "output": "output",
    "cacheWrite": "cache_write",
    "cacheRead": "cache_read",
    "batchDiscount": "batch_discount",
}


def _parse_price(model: str, entry: Any, origin: str) -> ModelPrice:
    if not isinstance(entry, Mapping):
        raise PriceError(f"{origin}: models.{model} must be an object")
    unknown = set(entry) - set(_FIELDS)
    if unknown:
        raise PriceError(f"{origin}: models.{model} has unknown fields {sorted(unknown)}")
    values: dict[str, Decimal] = {}
    for wire, name in _FIELDS.items():
        if wire not in entry:
            if wire == "batchDiscount":
                continue
            raise PriceError(f"{origin}: models.{model}.{wire} is missing")
        try:
            value = Decimal(str(entry[wire]))
        except InvalidOperation:
            raise PriceError(f"{origin}: models.{model}.{wire} is not a number") from None
        if not value.is_finite():  # JSON's NaN and Infinity parse, but price nothing
            raise PriceError(f"{origin}: models.{model}.{wire} is not a number")
        if value < 0 or (name == "batch_discount" and value > 1):
            raise PriceError(f"{origin}: models.{model}.{wire} is out of range")
        values[name] = value
    return ModelPrice(**values)


def _parse_table(text: str, origin: str) -> dict[str, ModelPrice]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PriceError(f"{origin}: not JSON ({exc})") from None
    models = data.get("models") if isinstance(data, Mapping) else None
    if not isinstance(models, Mapping):
        raise PriceError(f'{origin}: expected {{"models": {{name: prices}}}}')
    if "" in models:  # as a prefix it would price every model
        raise PriceError(f"{origin}: a model name in models is empty")
    return {name: _parse_price(name, entry, origin) for name, entry in models.items()}


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name; a name matches exactly, else by its longest listed prefix."""

    models: Mapping[str, ModelPrice]

    def lookup(self, model: str) -> ModelPrice | None:
        if model in self.models:
            return self.models[model]
        prefixes = [name for name in self.models if model.startswith(name)]
        return self.models[max(prefixes, key=len)] if prefixes else None

    def price(self, model: str) -> ModelPrice:
        found = self.lookup(model)
        if found is None:
            raise PriceError(
                f"no price for teacher model {model!r}, so its budget cannot be enforced; add it "
                f"to a prices file and name that file in {PRICES_ENV} (same shape as "
                "distillrun/teacher/prices.json)"
            )
        return found


def load_prices(environ: Mapping[str, str] | None = None) -> PriceTable:
    """The built-in table with the `DISTILLRUN_PRICES` file (if set) laid over it."""
    builtin = resources.files("distillrun.teacher").joinpath("prices.json").read_text("utf-8")
    models = _parse_table(builtin, "distillrun/teacher/prices.json")
    override = PriceSettings.from_env(environ).prices
    if override is not None:
        path = override.expanduser()
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise PriceError(f"{PRICES_ENV}={override}: cannot read it ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise PriceError(f"{PRICES_ENV}={override}: not UTF-8 text") from None
        models.update(_parse_table(text, str(path)))
    return PriceTable(models)


def to_usd(amount: Decimal) -> float:
    """The float stored in `Usage.usd`: the nearest float to the exact amount."""
    return float(amount)


def from_usd(value: float) -> Decimal:
    """The exact amount behind a stored `Usage.usd` (its shortest decimal form)."""
    return Decimal(repr(value))
