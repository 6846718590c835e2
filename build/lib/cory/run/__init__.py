"""A training run: the loop, checkpoints, the run directory, metrics and their plots."""
