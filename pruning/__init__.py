"""Data, models, the pmap trainer, pruning scores and selection."""
