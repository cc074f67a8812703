"""Local runs with an LLM teacher run against the fake API on loopback (`tests/fakes`)."""

from tests.fakes.fixtures import anthropic_env, fake

__all__ = ["anthropic_env", "fake"]
