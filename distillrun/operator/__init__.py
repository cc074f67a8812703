"""The DistillRun operator (kopf): reconciles each DistillRun into one KubeRay RayJob per stage.

Why a package under `distillrun/` and not a top-level `operator/`: Python's standard library
already has a module named `operator`, loaded at start-up, so a top-level package of that name
could not be imported. This package imports `distillrun.api` (and the light SQL schema parser)
but never the stages, torch, transformers, anthropic or ray, so the operator image stays small;
`tests/unit/operator/test_operator_imports.py` keeps it so.

Layout: `builders/` are pure functions from a run to child manifests; `planner` is the pure
level-based decision (what exists → what the status is and what to create); `controller` reads
the world and applies the plan; `handlers` are the thin kopf wiring; `main` is the
`kopf run -m distillrun.operator.main` target.
"""
