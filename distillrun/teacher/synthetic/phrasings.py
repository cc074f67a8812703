"""The question phrasings of every builder, kept as data in `questions.yaml` (shipped with the
package) apart from the builders that choose a variant and fill in its placeholders.

Why data: the phrasings are most of a builder's text and all of them have the same form, so a
newcomer adds or rewords a phrasing in one list without reading query-building code.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydantic import TypeAdapter

_Catalogue = dict[str, dict[str, tuple[str, ...]]]


@cache
def catalogue() -> _Catalogue:
    """Every builder's phrasings, by builder name and variant."""
    text = resources.files(__package__).joinpath("questions.yaml").read_text(encoding="utf-8")
    return TypeAdapter(_Catalogue).validate_python(yaml.safe_load(text))


def questions(builder: str, *variants: str) -> tuple[str, ...]:
    """The phrasings of `builder`'s question in each of `variants`, one variant's after the
    other's, in file order (a shard draws by position)."""
    entry = catalogue()[builder]
    return tuple(phrasing for variant in variants for phrasing in entry[variant])
