"""The builtin SQL base (`builtin:sql-qwen3`): a small Qwen3-shaped model first trained in full
on Text-to-SQL over several bundled example schemas, so that a run's LoRA adapts a base that
already writes SQL, the way real distillation adapts a pretrained student.

`corpus` writes the pretraining examples (the synthetic teacher over `schemas/*.sql`, in every
dialect), `pretrain` trains the base on them, `cache` builds it once per machine and keeps it
under the cache directory, keyed by a fingerprint of everything that decides what is built.
The run's own schema is never among the bundled ones, so the base has not seen the questions a
run holds out.
"""
