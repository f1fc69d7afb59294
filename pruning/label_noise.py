"""Label noise and holdout splits for experiments on noisy data (RHO-LOSS, robustness).

`flip_labels` flips a fixed fraction of labels to a *different* random class with a fixed
seed and returns the noisy ids; `split_holdout` cuts a fixed random holdout of ids.
"""
from __future__ import annotations

import numpy as np

from core.data import DataError


def flip_labels(labels: np.ndarray, ids: np.ndarray, fraction: float, num_classes: int,
                seed: int):
  """Flips round(fraction * n) labels to a different uniformly random class.

  Returns (new_labels, noisy_ids) with noisy_ids sorted. Deterministic in seed.
  """
  labels = np.asarray(labels)
  ids = np.asarray(ids, np.int64)
  if labels.ndim != 1:
    raise DataError("flip_labels needs integer labels (n,)")
  if not 0.0 <= float(fraction) <= 1.0:
    raise DataError(f"label-noise fraction must be in [0, 1], got {fraction}")
  if num_classes < 2 and fraction > 0:
    raise DataError("label noise needs at least 2 classes")
  rng = np.random.default_rng([int(seed), 7])
  k = int(round(float(fraction) * len(labels)))
  pos = np.sort(rng.choice(len(labels), size=k, replace=False))
  new = labels.copy()
  new[pos] = (labels[pos] + rng.integers(1, num_classes, size=k)) % num_classes
  return new.astype(labels.dtype), np.sort(ids[pos])


def split_holdout(ids: np.ndarray, fraction: float, seed: int):
  """(pool_ids, holdout_ids): a fixed random `fraction` of ids held out, both sorted."""
  ids = np.asarray(ids, np.int64)
  if not 0.0 < float(fraction) < 1.0:
    raise DataError(f"holdout fraction must be in (0, 1), got {fraction}")
  k = int(round(float(fraction) * len(ids)))
  if k < 1 or k >= len(ids):
    raise DataError(f"holdout of {k} of {len(ids)} examples is empty or everything")
  perm = np.random.default_rng([int(seed), 11]).permutation(len(ids))
  return np.sort(ids[perm[k:]]), np.sort(ids[perm[:k]])
