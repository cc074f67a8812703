"""The teacher tests run against fake APIs on loopback (`tests/fakes`)."""

from tests.fakes.fixtures import anthropic_env, fake

__all__ = ["anthropic_env", "fake"]
