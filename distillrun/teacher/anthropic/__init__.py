"""The `anthropic` teacher: Claude through the official SDK, realtime (`teacher`) or through
Message Batches (`batch`), paced by the run's governor (`middleware`), with every API failure
mapped in one place (`errors`)."""

from distillrun.teacher.anthropic.teacher import AnthropicTeacher

__all__ = ["AnthropicTeacher"]
