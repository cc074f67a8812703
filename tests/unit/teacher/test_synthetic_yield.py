"""What the synthetic teacher yields through the real generate and validate stages on the shop
schema (file store, SQLite sandbox, the quickstart's spec): the quickstart's accepted set shows
every construct of the vocabulary, at least 60% of the examples generated are accepted at
targets up to 1,000, and the same kind of query comes in several phrasings. Counts, not time:
the time it takes is measured by bench/synthetic_yield.py."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlglot
import yaml
from sqlglot import exp

from distillrun.api.resource import parse_run
from distillrun.jobs import generate, validate
from distillrun.jobs.context import StageContext
from distillrun.jobs.inputs import load_inputs
from distillrun.sql.constructs import CONSTRUCTS
from distillrun.store import open_store
from distillrun.teacher.synthetic import SyntheticTeacher

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
MIN_YIELD = 0.6


def _context(tmp_path: Path, **teacher: Any) -> StageContext:
    """The quickstart's run, with `teacher` fields changed, on a fresh file store."""
    data = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    data["spec"]["teacher"].update(teacher)
    run = parse_run(data)
    schema, seed = load_inputs(run, EXAMPLES, "quickstart.yaml")
    store = open_store(str(tmp_path / "store")).sub("default/shop-quickstart/local")
    return StageContext(run=run, store=store, schema=schema, seed_sql=seed)


@dataclass(frozen=True)
class Staged:
    """What generate and validate made of one target."""

    generated: int
    counted: int
    by_round: list[dict[str, Any]]
    accepted: list[dict[str, Any]]


_STAGED: dict[int | None, Staged] = {}


def _staged(tmp_path_factory: pytest.TempPathFactory, target: int | None) -> Staged:
    """Generate and validate at `target` accepted examples (None: the quickstart's own), run
    once per module."""
    if target not in _STAGED:
        teacher = {} if target is None else {"targetExamples": target}
        ctx = _context(tmp_path_factory.mktemp(f"target-{target}"), **teacher)
        summary = generate.run(ctx, SyntheticTeacher()).summary
        manifest = ctx.store.get_json(generate.MANIFEST_KEY)
        validate.run(ctx)
        accepted = ctx.store.read_jsonl("dataset/train.jsonl")
        accepted += ctx.store.read_jsonl("dataset/holdout.jsonl")
        _STAGED[target] = Staged(
            manifest["generated"], summary["screened_accepted"], manifest["by_round"], accepted
        )
    return _STAGED[target]


def test_the_quickstarts_accepted_set_shows_every_construct(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    accepted = _staged(tmp_path_factory, None).accepted
    uses = Counter(c for record in accepted for c in record["constructs"])
    assert not set(CONSTRUCTS) - set(uses), f"never used: {set(CONSTRUCTS) - set(uses)}"


@pytest.mark.parametrize("target", [600, 1000])
def test_most_examples_generated_are_accepted(
    tmp_path_factory: pytest.TempPathFactory, target: int
) -> None:
    staged = _staged(tmp_path_factory, target)
    assert staged.counted >= target
    assert staged.counted >= MIN_YIELD * staged.generated, staged.by_round
    assert len(staged.accepted) == staged.counted  # validate accepts what generate counted


def _skeleton(sql: str) -> str:
    """The query with every literal a placeholder: one intent, whatever its values."""
    tree = sqlglot.parse_one(sql, read="sqlite")
    return tree.transform(lambda n: exp.Placeholder() if isinstance(n, exp.Literal) else n).sql()


def _wording(question: str) -> str:
    """The question with its values (quoted strings, numbers) blanked out."""
    blanked = re.sub(r"'[^']*'", "?", question)
    return re.sub(r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten)\b", "?", blanked)


def test_intents_come_in_several_phrasings(tmp_path_factory: pytest.TempPathFactory) -> None:
    accepted = _staged(tmp_path_factory, 1000).accepted
    wordings: dict[str, set[str]] = defaultdict(set)
    sizes: Counter[str] = Counter()
    for record in accepted:
        intent = _skeleton(record["sql"])
        wordings[intent].add(_wording(record["question"]))
        sizes[intent] += 1
    repeated = [intent for intent, size in sizes.items() if size >= 3]
    varied = [intent for intent in repeated if len(wordings[intent]) >= 2]
    assert len(repeated) >= 50
    assert len(varied) >= 0.9 * len(repeated), [sorted(wordings[i]) for i in repeated[:3]]
    openers = Counter(" ".join(record["question"].split()[:2]) for record in accepted)
    assert len(openers) >= 40
    assert openers.most_common(1)[0][1] <= 0.25 * len(accepted), openers.most_common(5)
