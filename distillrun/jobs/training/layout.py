"""Where the train and evaluate stages keep their outputs in the run's store, and the seed.

Training writes the adapter it produced to `train/adapter/` (the candidate, with its done
marker last); evaluation copies it to `adapter/` -- the run's published result -- only when it
passes the accuracy gate. A candidate that fails the gate stays where it is, for inspection,
and is never published.
"""

TRAIN_KEY = "dataset/train.jsonl"
HOLDOUT_KEY = "dataset/holdout.jsonl"

CANDIDATE_PREFIX = "train/adapter/"
CANDIDATE_DONE_KEY = "train/adapter/_done.json"
TRAIN_METRICS_KEY = "train/metrics.json"

PUBLISHED_PREFIX = "adapter/"
PUBLISHED_DONE_KEY = "adapter/_done.json"
MERGED_DIR = "merged"
"""Under the published adapter: the base with the adapter merged in, when asked for."""

SEED = 0
"""Seeds weight init of the builtin student, adapter init, data order, dropout and sampling."""
