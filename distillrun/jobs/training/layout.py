"""Where the train and evaluate stages keep their outputs in the run's store (the keys are
`distillrun.api.layout`'s), and the seed.

Training writes the adapter it produced to `train/adapter/` (the candidate, with its done
marker last); evaluation copies it to `adapter/` -- the run's published result -- only when it
passes the accuracy gate. A candidate that fails the gate stays where it is, for inspection,
and is never published.
"""

from distillrun.api.layout import (
    CANDIDATE_DONE_KEY,
    CANDIDATE_PREFIX,
    HOLDOUT_KEY,
    MERGED_DIR,
    PUBLISHED_DONE_KEY,
    PUBLISHED_PREFIX,
    TRAIN_KEY,
    TRAIN_METRICS_KEY,
)

__all__ = [
    "CANDIDATE_DONE_KEY",
    "CANDIDATE_PREFIX",
    "HOLDOUT_KEY",
    "MERGED_DIR",
    "PUBLISHED_DONE_KEY",
    "PUBLISHED_PREFIX",
    "SEED",
    "TRAIN_KEY",
    "TRAIN_METRICS_KEY",
]

SEED = 0
"""Seeds weight init of the builtin student, adapter init, data order, dropout and sampling."""
