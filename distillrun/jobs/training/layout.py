"""The seed of the train and evaluate stages (their store keys are `distillrun.api.layout`'s).

Training writes the adapter it produced to `train/adapter/` (the candidate, with its done
marker last); evaluation copies it to `adapter/` -- the run's published result -- only when it
passes the accuracy gate. A candidate that fails the gate stays where it is, for inspection,
and is never published.
"""

SEED = 0
"""Seeds weight init of the builtin student, adapter init, data order, dropout and sampling."""
