"""Near-duplicate questions: the same question asked twice with cosmetic differences.

Two examples whose questions differ only in case, punctuation, spacing, word order, filler
words or a plural teach the student nothing new, and when their SQL differs they teach it two
answers to one question. Identical SQL is caught by the SQL normal form; this catches the
question side, with one rule for both places that apply it: an LLM teacher's review of one
reply before it is stored (`teacher.review`, problem `duplicate_question`) and the screening of
every shard in plan order (`jobs.judging.screen`, `Reason.NEAR_DUPLICATE_QUESTION`).

A question is reduced to its *content words* (lower case, split on anything not a letter or
digit, stop words dropped, a plural `s` cut) and its *literals* (numbers and quoted values).
Two questions are near duplicates when their literals are equal and the Jaccard similarity of
their content-word sets is at least `NEAR_DUPLICATE_JACCARD`. Literals must match exactly
because "orders of customer 5" and "orders of customer 6" are different questions however
alike they read.

`QuestionIndex` answers "is this a near duplicate of one already kept?" without comparing all
pairs: questions are bucketed by their literals, and inside a bucket by prefix filtering (two
sets with Jaccard >= t share at least one of the first |A| - ceil(t*|A|) + 1 words of each in
any fixed word order), so only questions sharing a rare-enough word are compared.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass

NEAR_DUPLICATE_JACCARD = 0.9
"""At this threshold reorderings, filler words, plurals and punctuation always match, while one
added content word makes a near duplicate only next to 9+ shared ones and one swapped word
only in questions of 19+: "orders by category" and "order items by category" stay apart."""

_STOP_WORDS_TEXT = (
    "a an the of in on at to for by with and or is are was were be been do does did "
    "what which who whom whose how me my our we us i you your please show list give tell "
    "find get display return all there that this these those it its"
)
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
"""Words that change how a question is phrased, not what it asks. Words that change its
meaning (not, no, each, per, most, more, than, never, without) are kept."""

_WORD = re.compile(r"[a-z0-9]+")
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


@dataclass(frozen=True)
class QuestionForm:
    """A question reduced to what decides whether another one asks the same."""

    words: frozenset[str]
    literals: tuple[str, ...]


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def question_form(question: str) -> QuestionForm:
    """Content words and literals of `question` (see the module docstring)."""
    quoted = [a or b for a, b in _QUOTED.findall(question)]
    text = _QUOTED.sub(" ", question).lower()
    tokens = _WORD.findall(text)
    numbers = [t for t in tokens if any(c.isdigit() for c in t)]
    words = frozenset(_stem(t) for t in tokens if t not in STOP_WORDS and t not in numbers)
    literals = tuple(sorted([*numbers, *(q.strip().lower() for q in quoted)]))
    return QuestionForm(words, literals)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a & b| / |a | b|; two empty sets are the same question (1.0)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def near_duplicates(a: str, b: str, threshold: float = NEAR_DUPLICATE_JACCARD) -> bool:
    """Whether questions `a` and `b` ask the same thing (see the module docstring)."""
    fa, fb = question_form(a), question_form(b)
    return fa.literals == fb.literals and jaccard(fa.words, fb.words) >= threshold


class QuestionIndex:
    """The questions kept so far, for finding an earlier near duplicate of a new one."""

    def __init__(self, threshold: float = NEAR_DUPLICATE_JACCARD) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._forms: list[tuple[QuestionForm, str]] = []
        self._by_prefix_word: dict[tuple[tuple[str, ...], str], list[int]] = defaultdict(list)
        self._empty: dict[tuple[str, ...], str] = {}

    def _prefix(self, words: frozenset[str]) -> list[str]:
        # the epsilon keeps a product like 0.85 * 20 = 17.000000000000004 from shortening the
        # prefix by one word, which could miss a pair
        size = len(words) - math.ceil(self.threshold * len(words) - 1e-9) + 1
        return sorted(words)[:size]

    def find(self, question: str) -> str | None:
        """The id of a kept question that `question` near-duplicates, or None."""
        form = question_form(question)
        if not form.words:
            return self._empty.get(form.literals)
        checked: set[int] = set()
        for word in self._prefix(form.words):
            for position in self._by_prefix_word.get((form.literals, word), ()):
                if position in checked:
                    continue
                checked.add(position)
                kept, kept_id = self._forms[position]
                if jaccard(form.words, kept.words) >= self.threshold:
                    return kept_id
        return None

    def add(self, question: str, example_id: str) -> None:
        """Keeps `question` (under `example_id`) for later `find` calls."""
        form = question_form(question)
        if not form.words:
            self._empty.setdefault(form.literals, example_id)
            return
        self._forms.append((form, example_id))
        for word in self._prefix(form.words):
            self._by_prefix_word[(form.literals, word)].append(len(self._forms) - 1)
