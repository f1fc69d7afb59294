"""InfoBatch: unbiased dynamic data pruning (Qin et al., ICLR 2024) as a trainer batch source.

Each example keeps a score H_i, its training loss the last time it was presented (per-example
'loss' of the trainer's ``step_callback``, stored by position in the training set). At the
start of epoch e (0-based) of E:

  * if e < floor(delta * E) (pruning phase; paper: delta = 0.875): the "well-learned" set is
    W = {i : H_i < mean_j H_j} (examples never presented yet are never in W); each i in W is
    dropped independently with probability r (paper: r = 0.5) and every kept i in W has its
    loss scaled by 1 / (1 - r);
  * otherwise (annealing): every example, weight 1.

The kept positions are shuffled (numpy default_rng([seed, e, 73])) and cut into
ceil(kept / B) full batches of B, the last one filled up by wrapping round to the start of the
epoch's order (as core.sampler.IndexSampler does). The trainer's per-batch loss is
mean_b(w_b * loss_b), so over an epoch the expected rescaled gradient equals the full-data one:
E[sum_{kept} w_i g_i] = sum_{i not in W} g_i + sum_{i in W} (1 - r) g_i / (1 - r) = sum_i g_i.

Interface (core.train.train_and_evaluate): pass the object as ``batch_source`` and its
``on_step`` as ``step_callback``. ``batch(step, ctx) -> (positions (B,), weights (B,))``;
``total_steps(default)`` = E * ceil(n / B) (the schedule length of full training); after its
last epoch ``batch`` returns ``(None, None)``, which ends training early (the learning-rate
schedule is that of full training, as in the authors' per-iteration schedulers). Scores use the
losses delivered so far: the trainer delivers them when it logs (set ``log_every_steps`` to a
divisor of the steps per epoch, or 1, so that an epoch's plan sees the previous epoch's losses).
Not resumable mid-run (the scores are not checkpointed): a jump in `step` raises.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np


class InfoBatch:
  """Per-epoch random pruning of below-mean-loss examples with loss rescaling and annealing."""

  def __init__(self, num_examples: int, batch_size: int, num_epochs: int, *,
               prune_ratio: float = 0.5, delta: float = 0.875, seed: int = 0):
    self.n = int(num_examples)
    self.batch_size = int(batch_size)
    self.num_epochs = int(num_epochs)
    if self.n < 1 or self.batch_size < 1 or self.num_epochs < 1:
      raise ValueError(f"InfoBatch needs num_examples, batch_size, num_epochs >= 1, got "
                       f"{num_examples}, {batch_size}, {num_epochs}")
    if not 0.0 <= float(prune_ratio) < 1.0:
      raise ValueError(f"InfoBatch prune_ratio r={prune_ratio} must lie in [0, 1)")
    if not 0.0 <= float(delta) <= 1.0:
      raise ValueError(f"InfoBatch delta={delta} must lie in [0, 1]")
    self.r = float(prune_ratio)
    self.delta = float(delta)
    self.seed = int(seed)
    self.prune_epochs = int(math.floor(self.delta * self.num_epochs + 1e-9))
    self.scores = np.zeros(self.n, np.float64)
    self.seen = np.zeros(self.n, bool)
    self.history: list = []          # one dict per planned epoch
    self._epoch = -1
    self._epoch_start = 0
    self._order = np.zeros(0, np.int64)
    self._weights = np.zeros(0, np.float32)
    self._next_step = 0
    self._lookup = None              # (sorted training ids, their positions)

  # --- scores -----------------------------------------------------------------

  def update(self, positions, losses) -> None:
    """Records the latest training losses of the examples at `positions`."""
    positions = np.asarray(positions, np.int64).ravel()
    losses = np.asarray(losses, np.float64).ravel()
    if positions.shape != losses.shape:
      raise ValueError(f"need one loss per position, got {positions.shape} and {losses.shape}")
    if len(positions) and (positions.min() < 0 or positions.max() >= self.n):
      raise ValueError(f"positions outside [0, {self.n})")
    if not np.isfinite(losses).all():
      raise ValueError("InfoBatch got non-finite per-example losses")
    self.scores[positions] = losses  # a repeated position keeps its last loss in the batch
    self.seen[positions] = True

  def on_step(self, step: int, ids, per_example: dict) -> None:
    """The trainer's step_callback: stores per_example['loss'] by id."""
    if self._lookup is None:
      raise ValueError("InfoBatch.on_step called before the first batch (no training ids yet)")
    sorted_ids, pos = self._lookup
    ids = np.asarray(ids)
    k = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
    if (sorted_ids[k] != ids).any():
      raise ValueError("InfoBatch.on_step: ids not in the training set")
    self.update(pos[k], per_example["loss"])

  # --- plans ------------------------------------------------------------------

  def epoch_plan(self, epoch: int):
    """(kept positions (shuffled), weights) of `epoch` under the current scores."""
    rng = np.random.default_rng([self.seed, int(epoch), 73])
    weights = np.ones(self.n, np.float32)
    keep = np.ones(self.n, bool)
    n_below = 0
    if epoch < self.prune_epochs and self.seen.any() and self.r > 0:
      mean = float(self.scores[self.seen].mean())
      below = self.seen & (self.scores < mean)
      n_below = int(below.sum())
      drop = below & (rng.random(self.n) < self.r)
      keep = ~drop
      weights[below & keep] = 1.0 / (1.0 - self.r)
    else:
      rng.random(self.n)  # same stream position in both branches
    kept = np.flatnonzero(keep)
    order = kept[rng.permutation(len(kept))]
    return order, weights[order], n_below

  def _start_epoch(self, epoch: int, step: int) -> None:
    order, w, n_below = self.epoch_plan(epoch)
    steps = math.ceil(len(order) / self.batch_size)
    self._order = np.resize(order, steps * self.batch_size)
    self._weights = np.resize(w, steps * self.batch_size)
    self._epoch, self._epoch_start = epoch, step
    self.history.append(dict(epoch=epoch, start_step=step, steps=steps, kept=int(len(order)),
                             below_mean=n_below, pruned=int(self.n - len(order))))

  def full_steps_per_epoch(self) -> int:
    return math.ceil(self.n / self.batch_size)

  def total_steps(self, default: Optional[int] = None) -> int:
    """Upper bound (full training): E * ceil(n / B); training ends earlier (see batch)."""
    return self.num_epochs * self.full_steps_per_epoch()

  def batch(self, step: int, ctx=None):
    """Positions and weights of the global batch at `step`; (None, None) once all epochs ran."""
    if ctx is not None:
      if len(ctx.ids) != self.n:
        raise ValueError(f"InfoBatch was built for {self.n} examples, the trainer has "
                         f"{len(ctx.ids)}")
      if int(ctx.batch_size) != self.batch_size:
        raise ValueError(f"InfoBatch batch_size {self.batch_size} != trainer batch_size "
                         f"{ctx.batch_size}")
      if self._lookup is None:
        ids = np.asarray(ctx.ids)
        order = np.argsort(ids, kind="stable")
        self._lookup = (ids[order], order)
    step = int(step)
    if step != self._next_step:
      raise ValueError(f"InfoBatch is not resumable: asked for step {step}, expected "
                       f"{self._next_step} (its per-example losses are not checkpointed)")
    self._next_step += 1
    if self._epoch < 0 or (step - self._epoch_start) * self.batch_size >= len(self._order):
      if self._epoch + 1 >= self.num_epochs:
        return None, None
      self._start_epoch(self._epoch + 1, step)
    j = step - self._epoch_start
    sl = slice(j * self.batch_size, (j + 1) * self.batch_size)
    return self._order[sl], self._weights[sl]

  # --- accounting ---------------------------------------------------------------

  def summary(self) -> dict:
    steps = int(sum(h["steps"] for h in self.history))
    full = self.num_epochs * self.full_steps_per_epoch()
    return dict(epochs=len(self.history), steps=steps, full_steps=full,
                steps_saved=full - steps, saved_fraction=(full - steps) / full,
                prune_ratio=self.r, delta=self.delta, prune_epochs=self.prune_epochs,
                per_epoch=list(self.history))


def train_with_infobatch(config, data, *, num_epochs: int, prune_ratio: float = 0.5,
                         delta: float = 0.875, seed: int = 0, log_every_steps: int = 1,
                         train_ids=None):
  """Trains config's network for `num_epochs` InfoBatch epochs; returns (TrainResult, summary).

  The trainer config gets num_epochs (so its learning-rate schedule is that of full training
  for that many epochs) and `log_every_steps` (losses reach the scores at that period).
  """
  import ml_collections
  from core import train as train_lib
  tc = ml_collections.ConfigDict(config.to_dict() if hasattr(config, "to_dict") else config)
  tc.num_steps = None
  tc.num_examples = None
  tc.num_epochs = float(num_epochs)
  tc.seed = int(seed)
  tc.log_every_steps = int(log_every_steps)
  tc.checkpoint = False
  n = len(data.train) if train_ids is None else len(np.unique(np.asarray(train_ids)))
  ib = InfoBatch(n, int(tc.batch_size), int(num_epochs), prune_ratio=prune_ratio, delta=delta,
                 seed=seed)
  res = train_lib.train_and_evaluate(tc, None, data=data, train_ids=train_ids, batch_source=ib,
                                     step_callback=ib.on_step)
  return res, ib.summary()
