"""RHO-LOSS online batch selection (Mindermann et al., ICML 2022).

"Prioritized Training on Points that are Learnable, Worth Learning, and Not Yet
Learnt": at every step draw a large candidate batch of n_B examples, score each
by its *reducible holdout loss*

    rho(x, y) = L[y | x; current model] - L[y | x; irreducible-loss (IL) model]

and take the gradient step on the top n_b. The IL model is a small model trained
once, before the run, on a holdout split; its per-example losses on the training
pool are computed once and stored by example id (a score file). Noisy labels
have a high training loss *and* a high IL loss, so RHO-LOSS skips them, while
highest-loss selection keeps picking them.

Pieces
  * selectors (pure, deterministic, tie-break by smaller id):
    `select(method, candidate_ids, candidate_losses, n_b, il_losses)` for
    method in `METHODS`: 'uniform' (first n_b candidates), 'loss' (highest
    training loss), 'il' (lowest IL loss), 'rholoss' (highest training - IL).
  * `BatchSelector`: ``selector(step, candidate_ids, candidate_losses, n_b) -> selected
    ids``; it also counts how often each id was a candidate / was selected.
  * `RhoLossSource`: the trainer's batch source (`core.train`): draws n_B candidates per
    step from the sampler, asks the trainer for their eval-mode losses, and trains on the
    n_b its selector picks. The trainer itself knows nothing of candidates.
  * `ILLosses`: IL losses by example id (`lookup(ids)`), saved / loaded as a
    score file.
  * `il_losses_from_model` (a trained IL model's per-example losses on the training pool).
Label noise lives in `pruning.label_noise`; the label-noise experiment (IL model training,
runs, plots) in `experiments.rholoss`.

Which split trains the IL model: a fixed random part of the *training* split
(`config.il.holdout_fraction`, seed `config.il.holdout_seed`), which then is
excluded from the pool every target model trains on (all methods, uniform
included, see the same pool). The test split is never used for the IL model.
The label noise is applied to the whole training split before the holdout is
cut, so the IL model also sees noisy labels (as a practitioner's holdout would).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from core.data import ArrayDataset, DataError
from pruning import score_io

METHODS = ("uniform", "loss", "il", "rholoss")


# ----------------------------------------------------------------------------
# Selection: pure functions.


def select_top(ids: np.ndarray, priority: np.ndarray, n_b: int) -> np.ndarray:
  """The `n_b` ids of highest priority, in order of decreasing priority.

  Ties are broken by smaller id, so the result does not depend on the order of
  the candidates. Raises on NaN priorities, duplicated ids or n_b > len(ids).
  """
  ids = np.asarray(ids)
  priority = np.asarray(priority, np.float64)
  if ids.ndim != 1 or priority.shape != ids.shape:
    raise ValueError(f"ids {ids.shape} and priorities {priority.shape} must be 1-D, same length")
  if not 1 <= int(n_b) <= len(ids):
    raise ValueError(f"cannot select n_b={n_b} of {len(ids)} candidates")
  if np.isnan(priority).any():
    bad = ids[np.isnan(priority)][:10].tolist()
    raise ValueError(f"NaN selection priority (diverged training loss?) for ids {bad}")
  if len(np.unique(ids)) != len(ids):
    raise ValueError("candidate ids must be distinct")
  order = np.lexsort((ids, -priority))  # last key is primary: priority desc, then id asc
  return ids[order[:int(n_b)]]


def selection_priority(method: str, candidate_losses: np.ndarray,
                       il_losses: Optional[np.ndarray] = None) -> np.ndarray:
  """Higher is selected first. 'uniform' has no priority (see `select`)."""
  losses = np.asarray(candidate_losses, np.float64)
  if method == "loss":
    return losses
  if method in ("il", "rholoss"):
    if il_losses is None:
      raise ValueError(f"method {method!r} needs IL losses")
    il = np.asarray(il_losses, np.float64)
    if il.shape != losses.shape:
      raise ValueError(f"IL losses {il.shape} vs candidate losses {losses.shape}")
    return -il if method == "il" else losses - il
  raise ValueError(f"unknown selection method {method!r}; choose from {METHODS}")


def select(method: str, candidate_ids: np.ndarray, candidate_losses: np.ndarray, n_b: int,
           il_losses: Optional[np.ndarray] = None) -> np.ndarray:
  """Selected ids of one step (pure). `il_losses` aligned with `candidate_ids`.

  'uniform' takes the first n_b candidates (the candidates are a uniform
  random draw, so this is plain uniform training with batch n_b).
  """
  candidate_ids = np.asarray(candidate_ids)
  if method == "uniform":
    if not 1 <= int(n_b) <= len(candidate_ids):
      raise ValueError(f"cannot select n_b={n_b} of {len(candidate_ids)} candidates")
    return candidate_ids[:int(n_b)].copy()
  return select_top(candidate_ids, selection_priority(method, candidate_losses, il_losses), n_b)


# ----------------------------------------------------------------------------
# IL losses by example id.


class ILLosses:
  """Per-example irreducible losses keyed by stable example id."""

  def __init__(self, ids: np.ndarray, losses: np.ndarray, metadata: Optional[dict] = None):
    ids = np.asarray(ids, np.int64)
    losses = np.asarray(losses, np.float64)
    if ids.ndim != 1 or losses.shape != ids.shape:
      raise DataError(f"IL losses: ids {ids.shape} and losses {losses.shape} must match")
    if len(np.unique(ids)) != len(ids):
      raise DataError("IL losses: duplicated ids")
    if not np.isfinite(losses).all():
      raise DataError(f"IL losses: non-finite values at ids {ids[~np.isfinite(losses)][:10].tolist()}")
    order = np.argsort(ids, kind="stable")
    self.ids, self.losses = ids[order], losses[order]
    self.metadata = dict(metadata or {})

  def __len__(self) -> int:
    return len(self.ids)

  def lookup(self, ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, np.int64)
    pos = np.clip(np.searchsorted(self.ids, ids), 0, len(self.ids) - 1)
    bad = self.ids[pos] != ids
    if bad.any():
      raise DataError(f"IL losses: no IL loss for ids {ids[bad][:10].tolist()}")
    return self.losses[pos]

  def save(self, path: str) -> None:
    save_scores(path, self.ids, self.losses, self.metadata)

  @classmethod
  def load(cls, path: str, dataset: Optional[ArrayDataset] = None) -> "ILLosses":
    """With `dataset` (the pool the losses are for), checks ids and fingerprint."""
    ids, scores, meta = load_scores(path, dataset)
    return cls(ids, scores, meta)


def save_scores(path: str, ids: np.ndarray, scores: np.ndarray, metadata: dict) -> None:
  """Score file in the shared `pruning.score_io` format (npz + JSON metadata, atomic)."""
  meta = dict(metadata)
  meta.setdefault("method", "il_loss")
  meta.setdefault("num_examples", int(len(ids)))
  score_io.save(path, score_io.ScoreResult(ids, scores, meta))


def load_scores(path: str, dataset: Optional[ArrayDataset] = None):
  """(ids, scores, metadata) of a score file; with `dataset`, checks ids + fingerprint."""
  res = score_io.load(path, dataset)
  return res.ids, res.scores, dict(res.meta)


# ----------------------------------------------------------------------------
# Selection during training.


class BatchSelector:
  """``selector(step, candidate_ids, candidate_losses, n_b) -> selected ids``.

  Wraps the pure `select` for one method and tallies, per example id, how often
  it was a candidate and how often it was selected (host-side counters, used for
  the noisy-selection statistics). `noisy_ids` (optional) marks flipped labels.
  """

  def __init__(self, method: str, il: Optional[ILLosses] = None,
               noisy_ids: Optional[Sequence[int]] = None):
    if method not in METHODS:
      raise ValueError(f"unknown selection method {method!r}; choose from {METHODS}")
    if method in ("il", "rholoss") and il is None:
      raise ValueError(f"method {method!r} needs IL losses")
    self.method, self.il = method, il
    self.noisy_ids = np.unique(np.asarray([] if noisy_ids is None else noisy_ids, np.int64))
    self.selected_count: Dict[int, int] = {}
    self.candidate_count: Dict[int, int] = {}
    self.log: list = []  # (step, selected ids) of every call
    self.num_selected = 0
    self.num_noisy_selected = 0
    self.num_candidates = 0
    self.num_noisy_candidates = 0

  def __call__(self, step: int, candidate_ids, candidate_losses, n_b: int) -> np.ndarray:
    candidate_ids = np.asarray(candidate_ids).astype(np.int64)
    il = self.il.lookup(candidate_ids) if self.method in ("il", "rholoss") else None
    out = select(self.method, candidate_ids, np.asarray(candidate_losses), int(n_b), il)
    self._tally(int(step), candidate_ids, out)
    return out

  def _tally(self, step, cand, out):
    self.log.append((step, out.copy()))
    for i in cand.tolist():
      self.candidate_count[i] = self.candidate_count.get(i, 0) + 1
    for i in out.tolist():
      self.selected_count[i] = self.selected_count.get(i, 0) + 1
    self.num_candidates += len(cand)
    self.num_selected += len(out)
    if len(self.noisy_ids):
      self.num_noisy_candidates += int(np.isin(cand, self.noisy_ids).sum())
      self.num_noisy_selected += int(np.isin(out, self.noisy_ids).sum())

  def stats(self) -> dict:
    """Noisy share among selected vs among candidates (the base rate)."""
    sel = self.num_noisy_selected / max(self.num_selected, 1)
    cand = self.num_noisy_candidates / max(self.num_candidates, 1)
    return dict(method=self.method, steps=len(self.log), selected=self.num_selected,
                candidates=self.num_candidates, noisy_selected=self.num_noisy_selected,
                noisy_candidates=self.num_noisy_candidates,
                noisy_selected_frac=sel, noisy_candidate_frac=cand,
                noisy_selection_ratio=sel / cand if cand > 0 else float("nan"))


class RhoLossSource:
  """The trainer's batch source for online selection: n_B candidates from the sampler, their
  eval-mode losses from the trainer, n_b of them chosen by `selector` (a `BatchSelector`)."""

  def __init__(self, selector: BatchSelector, candidate_batch_size: int):
    self.selector = selector
    self.sampled_batch_size = int(candidate_batch_size)

  def batch(self, step: int, ctx):
    if self.sampled_batch_size <= ctx.batch_size:
      raise ValueError(f"online selection needs candidate_batch_size > batch_size="
                       f"{ctx.batch_size}, got {self.sampled_batch_size}")
    pos = ctx.sampler.positions(step)
    cand_ids = ctx.ids[pos]
    chosen = np.asarray(self.selector(step, cand_ids.copy(), ctx.eval_losses(pos),
                                      ctx.batch_size))
    if chosen.shape != (ctx.batch_size,):
      raise ValueError(f"selector returned {chosen.shape} ids at step {step}; expected "
                       f"({ctx.batch_size},)")
    return ctx.positions_of(chosen), None


def il_losses_from_model(model, variables_or_state, dataset: ArrayDataset, batch_size: int = 1024,
                         loss: str = "cross_entropy", num_devices=None,
                         metadata: Optional[dict] = None) -> ILLosses:
  """Per-example loss of a trained IL model on every example of `dataset` (on the device)."""
  from core.predict import per_example_losses
  out = per_example_losses(model, variables_or_state, dataset, batch_size, loss=loss,
                           num_devices=num_devices)
  return ILLosses(out["ids"], np.asarray(out["loss"], np.float64), metadata)
