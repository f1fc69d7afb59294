"""Datasets bundled with our dependencies, made offline as numpy arrays (no network).

  * ``digits``  - scikit-learn's bundled 8x8 handwritten digits (1,797 images,
    values 0..16 scaled to [0, 1]); fixed stratified split, `DIGITS_TEST_SIZE`
    test images drawn with `DIGITS_SPLIT_SEED`; x has shape (n, 8, 8, 1).
  * ``mnist1d`` - MNIST-1D (Greydanus 2020) made by the `mnist1d` package's
    generator (never its downloader); default 4,000 train / 1,000 test; x has
    shape (n, 40, 1). Generated draws are cached on disk; a cache file that
    cannot be read (truncated, corrupt) is deleted and regenerated, with a log line.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np

from core.data.types import DataError
from core.io import CorruptFileError, atomic_save_npz, load_npz

log = logging.getLogger(__name__)

BUNDLED = ("digits", "mnist1d")
DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0
MNIST1D_DEFAULT = dict(num_train=4000, num_test=1000, seed=42)

def digits_arrays():
  """(train_x, train_y, test_x, test_y) of sklearn digits with the fixed split."""
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split
  d = load_digits()
  x = (d.images.astype(np.float32) / 16.0)[..., None]
  y = d.target.astype(np.int32)
  tr, te = train_test_split(np.arange(len(y)), test_size=DIGITS_TEST_SIZE,
                            random_state=DIGITS_SPLIT_SEED, stratify=y)
  tr, te = np.sort(tr), np.sort(te)
  return x[tr], y[tr], x[te], y[te]


def _cache_dir() -> str:
  return os.environ.get("PRUNE_DISTILL_CACHE",
                        os.path.join(os.path.expanduser("~"), ".cache", "prune_distill"))


def mnist1d_arrays(num_train: int = 4000, num_test: int = 1000, seed: int = 42):
  """MNIST-1D from the `mnist1d` generator with the authors' default arguments.

  The generator is deterministic given `seed`; a draw is cached in
  $PRUNE_DISTILL_CACHE (default ~/.cache/prune_distill).
  """
  for v, what in ((num_train, "num_train"), (num_test, "num_test")):
    if int(v) < 1:
      raise DataError(f"mnist1d: {what} must be >= 1, got {v}")
  path = os.path.join(_cache_dir(), f"mnist1d_{num_train}_{num_test}_{seed}.npz")
  if os.path.exists(path):
    try:
      f = load_npz(path, ("x", "y", "x_test", "y_test"), what="MNIST-1D cache")
      if (len(f["x"]) == len(f["y"]) == num_train
          and len(f["x_test"]) == len(f["y_test"]) == num_test):
        return f["x"], f["y"], f["x_test"], f["y_test"]
      reason = "has the wrong number of examples"
    except CorruptFileError as e:
      reason = str(e)
    log.warning("mnist1d: deleting and regenerating the cache file %s (%s)", path, reason)
    os.remove(path)
  from mnist1d.data import get_dataset_args, make_dataset
  args = get_dataset_args()
  args.num_samples = num_train + num_test
  args.train_split = num_train / (num_train + num_test)
  args.seed = seed
  d = make_dataset(args)
  x = d["x"].astype(np.float32)[..., None]
  x_test = d["x_test"].astype(np.float32)[..., None]
  y, y_test = d["y"].astype(np.int32), d["y_test"].astype(np.int32)
  if len(x) != num_train or len(x_test) != num_test:  # generator rounding
    x, y, x_test, y_test = x[:num_train], y[:num_train], x_test[:num_test], y_test[:num_test]
  atomic_save_npz(path, x=x, y=y, x_test=x_test, y_test=y_test)
  return x, y, x_test, y_test


def bundled_arrays(name: str, num_train: Optional[int] = None,
                   num_test: Optional[int] = None, seed: Optional[int] = None):
  if name == "digits":
    if num_train or num_test:
      raise DataError("digits has a fixed split; num_train/num_test must be unset")
    return digits_arrays()
  if name == "mnist1d":
    return mnist1d_arrays(num_train or MNIST1D_DEFAULT["num_train"],
                          num_test or MNIST1D_DEFAULT["num_test"],
                          MNIST1D_DEFAULT["seed"] if seed is None else seed)
  raise DataError(f"unknown bundled dataset {name!r}; bundled: {BUNDLED}")
