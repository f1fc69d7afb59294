"""Index-based sampling and training durations.

The global batch at a step is a pure function of (seed, step, dataset ids):
epoch ``e`` uses the permutation ``numpy.random.default_rng([seed, e])`` of the
n training examples, cut into ``steps_per_epoch = ceil(n / batch_size)``
consecutive batches; the last batch of an epoch is filled up by wrapping round to
the start of that epoch's permutation (``np.resize``), so every example is seen
at least once per epoch and every batch is full. A run resumed at step s sees
exactly the data an uninterrupted run sees.

Every process holds the whole (small) training set in memory, builds the same
global batch of ids, and feeds only its contiguous slice to its local devices.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np


class IndexSampler:
  """Global batches of example ids, a pure function of (seed, step, ids)."""

  def __init__(self, ids: np.ndarray, batch_size: int, seed: int):
    self.ids = np.asarray(ids)
    if self.ids.size == 0:
      raise ValueError("IndexSampler: empty id list")
    if int(batch_size) < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.batch_size = int(batch_size)
    self.seed = int(seed)
    self.steps_per_epoch = math.ceil(len(self.ids) / self.batch_size)
    self._cache = (None, None)

  def epoch_order(self, epoch: int) -> np.ndarray:
    """Positions (into `ids`) in the order seen in `epoch`, length steps_per_epoch * B."""
    if self._cache[0] != epoch:
      perm = np.random.default_rng([self.seed, int(epoch)]).permutation(len(self.ids))
      self._cache = (epoch, np.resize(perm, self.steps_per_epoch * self.batch_size))
    return self._cache[1]

  def positions(self, step: int) -> np.ndarray:
    epoch, j = divmod(int(step), self.steps_per_epoch)
    return self.epoch_order(epoch)[j * self.batch_size:(j + 1) * self.batch_size]

  def global_batch(self, step: int) -> np.ndarray:
    """The ids of the global batch at `step` (0-based)."""
    return self.ids[self.positions(step)]


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  return math.ceil(int(num_examples) / int(batch_size))


def num_train_steps(config: Any, num_examples: int, sampled_batch_size: int | None = None) -> int:
  """Training length in steps from exactly one of config.num_steps / num_epochs / num_examples.

  The one place durations become steps (the trainer, the score runs and SSL encoders call it):
  * num_steps: taken as is;
  * num_epochs: num_epochs * ceil(num_examples / sampled batch), where the
    sampled batch is `sampled_batch_size` if given (a batch source's candidates), else
    batch_size;
  * num_examples: ceil(num_examples / batch_size) (examples that get a gradient).

  Rule when several are set: an explicit override wins. On the command line
  (``--config.num_steps=N`` over a config file with num_epochs, in any script) `core.cli`
  clears the file's other duration fields before this runs
  (`core.config.apply_duration_overrides`); in code, set a duration with
  `core.config.set_duration`, which clears the other two. Two fields still set here (both given
  explicitly, or a config built by hand) raise a ValueError naming both and what to do.
  """
  get = lambda k: config.get(k) if hasattr(config, "get") else getattr(config, k, None)
  given = {k: get(k) for k in ("num_steps", "num_epochs", "num_examples") if get(k)}
  if len(given) > 1:
    named = " and ".join(f"config.{k}={v}" for k, v in given.items())
    raise ValueError(
        f"{named} are {'both' if len(given) == 2 else 'all'} set, but the training length comes "
        f"from exactly one of num_steps / num_epochs / num_examples: keep the one you mean and "
        f"set the others to None (in code: core.config.set_duration(config, field, value)); on "
        f"the command line give only that one (e.g. --config.num_steps=N): it replaces the "
        f"config file's duration")
  if not given:
    raise ValueError("set exactly one of config.num_steps / num_epochs / num_examples "
                     "(> 0); got none")
  (key, value), = given.items()
  if value < 0 or not math.isfinite(value):
    raise ValueError(f"config.{key} must be positive, got {value}")
  batch = int(get("batch_size"))
  if key == "num_steps":
    return int(value)
  if key == "num_examples":
    return math.ceil(value / batch)
  sampled = int(sampled_batch_size or batch)
  return int(math.ceil(value * steps_per_epoch(num_examples, sampled)))
