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
  * `BatchSelector`: the callable for the trainer's `batch_selector` slot,
    ``selector(step, candidate_ids, candidate_losses, n_b) -> selected ids``;
    it also counts how often each id was a candidate / was selected.
  * `ILLosses`: IL losses by example id (`lookup(ids)`), saved / loaded as a
    score file.
  * label noise: `flip_labels` (flip a fixed fraction to a *different* random
    class with a fixed seed, returns the noisy ids); `split_holdout`.
  * IL model: `train_il_model` (the shared trainer on the holdout ids),
    `il_losses_from_model` (its per-example losses on the training pool).
  * the label-noise experiment: `run_experiment(config, workdir)` and
    `plot_results`; entry point ``scripts/rholoss.py``.

Which split trains the IL model: a fixed random part of the *training* split
(`config.il.holdout_fraction`, seed `config.il.holdout_seed`), which then is
excluded from the pool every target model trains on (all methods, uniform
included, see the same pool). The test split is never used for the IL model.
The label noise is applied to the whole training split before the holdout is
cut, so the IL model also sees noisy labels (as a practitioner's holdout would).
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np

from pruning.data import ArrayDataset, DataError, atomic_save_npz

METHODS = ("uniform", "loss", "il", "rholoss")


# ----------------------------------------------------------------------------
# Selection: pure functions.


def per_example_xent(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Softmax cross-entropy per example (float64), labels int (n,) or soft (n, C)."""
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels)
  m = logits.max(axis=1, keepdims=True)
  logz = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
  if labels.ndim == 1:
    return logz - logits[np.arange(len(labels)), labels.astype(np.int64)]
  return logz - (labels * logits).sum(axis=1)


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
  def load(cls, path: str) -> "ILLosses":
    ids, scores, meta = load_scores(path)
    return cls(ids, scores, meta)


def _atomic_write_text(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".tmp")
  with os.fdopen(fd, "w") as fh:
    fh.write(text)
  os.replace(tmp, path)


def save_scores(path: str, ids: np.ndarray, scores: np.ndarray, metadata: dict) -> None:
  """Score file: ``path`` (npz with ids, score) + ``path + '.json'`` (metadata)."""
  try:
    from pruning import score_io  # shared format, when present
  except ImportError:
    score_io = None
  if score_io is not None and hasattr(score_io, "save_scores"):
    score_io.save_scores(path, ids=ids, scores=scores, metadata=metadata)
    return
  atomic_save_npz(path, ids=np.asarray(ids, np.int64), score=np.asarray(scores, np.float64))
  _atomic_write_text(path + ".json", json.dumps(metadata, indent=1, sort_keys=True, default=str))


def load_scores(path: str):
  """(ids, scores, metadata) of a score file written by `save_scores`."""
  try:
    from pruning import score_io
  except ImportError:
    score_io = None
  if score_io is not None and hasattr(score_io, "load_scores"):
    out = score_io.load_scores(path)
    if isinstance(out, tuple):
      return out
    return out.ids, out.scores, dict(out.metadata)
  with np.load(path) as f:
    ids, scores = f["ids"], f["score"]
  meta = {}
  if os.path.exists(path + ".json"):
    with open(path + ".json") as fh:
      meta = json.load(fh)
  return ids, scores, meta


# ----------------------------------------------------------------------------
# The trainer's batch_selector.


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


# ----------------------------------------------------------------------------
# Label noise and the holdout split.


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
