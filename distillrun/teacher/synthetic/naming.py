"""Words for schema names: how a table or column is said in a question, and what it is about.

Questions read like a person wrote them only if `order_items` is "order items" (one "order
item"), `signup_date` is "signup date", and a `price` column is "expensive" at the top and
"cheap" at the bottom. A column's *role* (money, quantity, country, status, ...) is read from
the words of its name; it decides plausible thresholds, likely text values and the adjectives
of superlative questions. Everything here is a pure function of a name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_IRREGULAR_SINGULAR = {
    "people": "person",
    "children": "child",
    "men": "man",
    "women": "woman",
    "mice": "mouse",
    "geese": "goose",
}
_IRREGULAR_PLURAL = {v: k for k, v in _IRREGULAR_SINGULAR.items()}
_UNCOUNTABLE = frozenset({"data", "info", "information", "news", "series", "species", "staff"})


def name_words(name: str) -> list[str]:
    """`signupDate`, `signup_date` and `Signup-Date` all give ["signup", "date"]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def singular(word: str) -> str:
    """English singular of a lowercase noun, by the common rules."""
    if word in _UNCOUNTABLE or word in _IRREGULAR_PLURAL:
        return word
    if word in _IRREGULAR_SINGULAR:
        return _IRREGULAR_SINGULAR[word]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def plural(word: str) -> str:
    """English plural of a lowercase singular noun, by the common rules."""
    if word in _UNCOUNTABLE:
        return word
    if word in _IRREGULAR_PLURAL:
        return _IRREGULAR_PLURAL[word]
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "sh", "ch", "x", "z")):
        return word + "es"
    return word + "s"


@dataclass(frozen=True)
class Noun:
    """How a table's rows are called: one "order item", many "order items"."""

    one: str
    many: str


def table_noun(table_name: str) -> Noun:
    words = name_words(table_name) or [table_name.lower()]
    head = singular(words[-1])
    prefix = " ".join(words[:-1])
    one = f"{prefix} {head}".strip()
    return Noun(one=one, many=f"{prefix} {plural(head)}".strip())


def column_phrase(column_name: str) -> str:
    """`signup_date` → "signup date"; `unitPrice` → "unit price"."""
    return " ".join(name_words(column_name)) or column_name


class Role(StrEnum):
    """What a column is about, as far as its name tells."""

    MONEY = "money"
    QUANTITY = "quantity"
    RATING = "rating"
    AGE = "age"
    PERCENT = "percent"
    COUNTRY = "country"
    STATUS = "status"
    CATEGORY = "category"
    CURRENCY = "currency"
    CITY = "city"
    LABEL = "label"
    IDENTIFYING = "identifying"
    GENERIC = "generic"


_ROLE_WORDS: tuple[tuple[Role, frozenset[str]], ...] = tuple(
    (role, frozenset(words.split()))
    for role, words in (
        (Role.CURRENCY, "currency"),
        (Role.COUNTRY, "country nation nationality"),
        (Role.STATUS, "status stage"),
        (Role.CITY, "city town"),
        (
            Role.IDENTIFYING,
            "email mail phone address street url description desc comment comments note notes body "
            "password hash token uuid sku slug zip postcode iban",
        ),
        (Role.LABEL, "name title label username headline"),
        (
            Role.CATEGORY,
            "category type kind genre segment tier department class group region brand channel "
            "plan level gender",
        ),
        (Role.PERCENT, "percent pct discount rate ratio"),
        (Role.RATING, "rating score stars"),
        (Role.AGE, "age"),
        (Role.QUANTITY, "quantity qty units stock inventory count"),
        (
            Role.MONEY,
            "price cost amount total revenue salary balance fee payment spend income budget "
            "sales value",
        ),
    )
)


def role_of(column_name: str) -> Role:
    words = set(name_words(column_name))
    for role, role_words in _ROLE_WORDS:
        if words & role_words:
            return role
    return Role.GENERIC


# Thresholds a person would plausibly ask about, smallest first, per numeric role.
THRESHOLDS: dict[Role, tuple[int, ...]] = {
    Role.MONEY: (10, 20, 50, 100, 150, 200, 500),
    Role.QUANTITY: (1, 2, 3, 5, 10),
    Role.RATING: (2, 3, 4),
    Role.AGE: (18, 21, 30, 40, 50, 65),
    Role.PERCENT: (5, 10, 20, 50),
}
DEFAULT_INTEGER_THRESHOLDS = (1, 2, 5, 10, 100)
DEFAULT_NUMBER_THRESHOLDS = (1, 10, 50, 100)

# Values a text column of a role very often holds; a guess, used only when the seed questions
# name none. A value that is absent makes a query with no rows, which is still valid SQL.
TEXT_VALUES: dict[Role, tuple[str, ...]] = {
    Role.COUNTRY: ("US", "DE", "FR", "GB", "JP", "BR", "IN", "CA"),
    Role.STATUS: ("shipped", "delivered", "cancelled", "pending", "completed", "active", "paid"),
    Role.CATEGORY: ("books", "electronics", "toys", "garden", "kitchen", "clothing", "games"),
    Role.CURRENCY: ("USD", "EUR", "GBP", "JPY"),
    Role.CITY: ("London", "Paris", "Berlin", "New York", "Tokyo"),
}

_HIGH_LOW: dict[Role, tuple[str, str]] = {
    Role.MONEY: ("highest", "lowest"),
    Role.QUANTITY: ("largest", "smallest"),
    Role.AGE: ("oldest", "youngest"),
}
_PRICE_WORDS = frozenset({"price", "cost", "fee"})
GENERIC_SUPERLATIVES = frozenset({"highest", "lowest", "largest", "smallest"})
"""Superlatives that describe a column, not the rows: "the highest price", never "the highest
product"."""


def top_variants(word: str, n: int, descending: bool) -> list[str]:
    """The phrasing variants of a question about the top `n` rows by a superlative `word`:
    `one_` or `many_` by `n`; `named` when the word describes the rows ("most expensive",
    "most recent") and `by_column` when it needs the column ("highest"); and `top` too for
    several of the highest."""
    named = "by_column" if word in GENERIC_SUPERLATIVES else "named"
    variants = [f"one_{named}" if n == 1 else f"many_{named}"]
    if descending and n > 1:
        variants.append("top")
    return variants


def superlatives(column_name: str, role: Role, is_date: bool) -> tuple[str, str]:
    """The words for "top" and "bottom" by a column: ("most expensive", "cheapest") for a
    price, ("most recent", "earliest") for a date, ("highest", "lowest") otherwise."""
    if is_date:
        return ("most recent", "earliest")
    if set(name_words(column_name)) & _PRICE_WORDS:
        return ("most expensive", "cheapest")
    return _HIGH_LOW.get(role, ("highest", "lowest"))


_NUMBER_WORDS = dict(
    enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))
)
WORD_NUMBERS = {w: n for n, w in _NUMBER_WORDS.items()} | {"ten": 10, "twelve": 12, "twenty": 20}


def spell(number: int, in_words: bool) -> str:
    """Writes `number` as a word ("five") or as digits ("5"); from ten on, always digits."""
    return _NUMBER_WORDS.get(number, str(number)) if in_words else str(number)


def plural_phrase(phrase: str) -> str:
    """ "product category" → "product categories"."""
    head, _, last = phrase.rpartition(" ")
    return f"{head} {plural(last)}".strip()


def output_name(*parts: str) -> str:
    """A snake_case output column name from words: ("order item", "count") → order_item_count."""
    return "_".join(w for part in parts for w in name_words(part))
