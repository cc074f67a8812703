"""The model card (`README.md`) that goes with an adapter.

Written by training (base model, method, data counts, training metrics, profile and plan) and
written again by evaluation when the adapter is published, with the execution accuracy on the
holdout and, when there is one, on the gold set. The facts come from a plain dict (`CardFacts`)
kept in the adapter's done marker, so the card can be rendered again without the trainer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict


class CardFacts(TypedDict):
    """What a card says about training."""

    run: str
    dialect: str
    schema_fingerprint: str
    base_model: str
    base_reference: str
    method: str
    lora: str | None
    profile: str
    plan: str
    examples: int
    truncated: int
    dropped: int
    max_seq_length: int
    steps: int
    epochs: int
    learning_rate: float
    final_loss: float | None
    reasoning: bool


def _accuracy_line(label: str, metrics: Mapping[str, Any] | None) -> str:
    if not metrics:
        return ""
    return (
        f"- {label}: execution accuracy {metrics['execution_accuracy']:.3f} "
        f"({metrics['correct']}/{metrics['scored']} scored, {metrics['examples']} examples)\n"
    )


def render(
    facts: CardFacts,
    holdout: Mapping[str, Any] | None = None,
    gold: Mapping[str, Any] | None = None,
) -> str:
    """The card as Markdown with Hugging Face front matter."""
    library = "transformers" if facts["method"] == "full" else "peft"
    loss = facts["final_loss"]
    loss_text = f"{loss:.4f}" if isinstance(loss, float) else "n/a"
    lora = f"- LoRA: {facts['lora']}\n" if facts["lora"] else ""
    evaluation = _accuracy_line("Holdout (synthetic)", holdout) + _accuracy_line(
        "Gold set (user-written)", gold
    )
    if evaluation:
        evaluation = "\n## Evaluation\n\n" + evaluation
    return (
        "---\n"
        f"base_model: {facts['base_reference']}\n"
        f"library_name: {library}\n"
        "pipeline_tag: text-generation\n"
        f"tags: [distillrun, text-to-sql, {facts['dialect']}, {facts['method']}]\n"
        "---\n\n"
        f"# {facts['run']}: text-to-SQL student\n\n"
        f"Fine-tuned by distillrun to write {facts['dialect']} SQL for one schema "
        f"(schema sha256 `{facts['schema_fingerprint'][:16]}`).\n\n"
        "## Training\n\n"
        f"- Base model: `{facts['base_model']}`\n"
        f"- Method: {facts['method']}\n"
        f"{lora}"
        f"- Hardware profile: {facts['profile']} ({facts['plan']})\n"
        f"- Training examples: {facts['examples']} ({facts['truncated']} truncated to "
        f"{facts['max_seq_length']} tokens, {facts['dropped']} dropped: no room left for the "
        "answer)\n"
        f"- Optimizer steps: {facts['steps']}, epochs: {facts['epochs']}, "
        f"learning rate: {facts['learning_rate']}\n"
        f"- Final training loss: {loss_text}\n"
        f"- Explanations in the target: {'yes' if facts['reasoning'] else 'no'}\n"
        f"{evaluation}\n"
        "## Use\n\n"
        "Prompts are chat messages: a system message with the dialect and the schema's DDL, "
        "a user message with the question; answers end in a ```sql fenced block. Use "
        "`distillrun.jobs.prompting` to build prompts and `extract_sql` to read answers.\n"
    )
