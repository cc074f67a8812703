"""Near-duplicate questions: one rule for an LLM reply's review and for screening every shard."""

from __future__ import annotations

import random

import pytest

from distillrun.teacher.diversity import QuestionIndex, jaccard, near_duplicates, question_form

NEAR_DUPLICATES = [
    ("How many orders per customer?", "how many ORDERS per customers", True),
    ("What are the five most expensive products?", "Five most expensive products?", True),
    (
        "List customers from 'DE' by signup date.",
        "Show the customers from 'DE', by signup date",
        True,
    ),
    ("Which category has the fewest products?", "Which category has the fewest products?", True),
    ("Which products cost more than 50?", "Which products cost more than 60?", False),
    ("Customers from 'DE'?", "Customers from 'FR'?", False),
    ("Orders by product category.", "Order items by product category.", False),
    ("Break down the number of orders by category.", "Break down revenue by category.", False),
    ("How many orders were placed?", "How many orders were not placed?", False),
    ("What is it?", "What is this?", True),
]


@pytest.mark.parametrize(("a", "b", "expected"), NEAR_DUPLICATES)
def test_near_duplicate_questions(a: str, b: str, expected: bool) -> None:
    assert near_duplicates(a, b) is expected
    assert near_duplicates(b, a) is expected


def test_literals_are_numbers_and_quoted_values() -> None:
    form = question_form("Orders of customer 5 from 'Berlin Mitte' in 2024")
    assert form.literals == ("2024", "5", "berlin mitte")
    assert form.words == frozenset({"order", "customer", "from"})


def test_the_index_finds_exactly_the_pairs_a_full_comparison_finds() -> None:
    rng = random.Random(3)
    vocabulary = ["orders", "customers", "products", "revenue", "category", "country", "per"]
    questions = [
        " ".join(rng.choice(vocabulary) for _ in range(rng.randint(2, 12)))
        + (f" {rng.randint(1, 3)}" if rng.random() < 0.3 else "")
        for _ in range(400)
    ]
    index = QuestionIndex()
    kept: list[str] = []
    for question in questions:
        found = index.find(question)
        brute = next((k for k in kept if near_duplicates(question, k)), None)
        assert (found is None) == (brute is None), question
        if found is None:
            index.add(question, question)
            kept.append(question)
        else:
            assert near_duplicates(question, found)
    assert 0 < len(kept) < len(questions)


def test_an_empty_question_set_is_a_duplicate_of_itself_only() -> None:
    assert jaccard(frozenset(), frozenset()) == 1.0
    index = QuestionIndex()
    index.add("What is it?", "x-1")
    assert index.find("what is this") == "x-1"
    assert index.find("what is 5") is None
    with pytest.raises(ValueError):
        QuestionIndex(threshold=0.0)
