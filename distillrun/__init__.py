"""distillrun: distill a large model's Text-to-SQL skill into a small model for one schema."""

__version__ = "0.1.0"
