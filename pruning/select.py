"""Choosing which training examples to keep, given per-example scores.

Convention: a larger score means a *harder* example (EL2N, GraNd, forgetting
counts, prototype distance). Every function returns stable example ids (int64),
never row positions.

Sizes: a keep fraction ``f`` must lie in (0, 1]; the number kept is
``num_keep(f, n) = floor(f * n + 0.5)`` (round half up), computed over the whole
set, or per class when ``class_balanced`` (each class keeps ``num_keep(f, n_c)``
of its ``n_c`` members). Ties in score are broken by id (smaller id first among
equals when keeping the hardest, too), so selections are deterministic.

Modes
  * ``hard``  - keep the highest scores (Data Diet / Sorscher et al. regime for
    abundant data);
  * ``easy``  - keep the lowest scores (the theory's regime for scarce data);
  * ``ccs``   - coverage-centric coreset selection (Zheng et al. 2023, Alg. 1):
    drop the hardest ``beta`` fraction (likely mislabeled / ambiguous), split the
    remaining score range into ``num_strata`` equal-width strata, then fill the
    budget by visiting strata from the smallest to the largest and taking
    ``min(|stratum|, remaining_budget // strata_left)`` uniformly random
    examples from each;
  * ``random`` - uniformly random ids (scores are ignored).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from pruning.budget import check_fraction, count_of as _count, num_keep  # noqa: F401  (API)

MODES = ("hard", "easy", "ccs", "random")


def _as_arrays(scores, ids):
  scores = np.asarray(scores, dtype=np.float64).ravel()
  ids = np.asarray(ids).ravel()
  if scores.shape != ids.shape:
    raise ValueError(f"scores and ids differ in length: {scores.shape[0]} vs {ids.shape[0]}")
  if not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
  if len(np.unique(ids)) != len(ids):
    raise ValueError("ids contain duplicates")
  if np.isnan(scores).any():
    raise ValueError(f"scores contain {int(np.isnan(scores).sum())} NaNs")
  return scores, ids.astype(np.int64)


def _order_hard_first(scores, ids) -> np.ndarray:
  """Positions sorted by score descending, ties by id ascending."""
  return np.lexsort((ids, -scores))


def _top(scores, ids, k: int, hardest: bool) -> np.ndarray:
  order = _order_hard_first(scores, ids) if hardest else np.lexsort((ids, scores))
  return ids[order[:k]]


def keep_hardest(scores, ids, f) -> np.ndarray:
  """The num_keep(f, n) ids with the highest scores."""
  scores, ids = _as_arrays(scores, ids)
  k = _nonzero(num_keep(f, len(ids)), f, len(ids))
  return _top(scores, ids, k, hardest=True)


def keep_easiest(scores, ids, f) -> np.ndarray:
  """The num_keep(f, n) ids with the lowest scores."""
  scores, ids = _as_arrays(scores, ids)
  k = _nonzero(num_keep(f, len(ids)), f, len(ids))
  return _top(scores, ids, k, hardest=False)


def _nonzero(k: int, f, n: int) -> int:
  if k < 1:
    raise ValueError(f"keep fraction f={f} of {n} examples keeps no example")
  return k


def _per_class(fn, scores, ids, labels, f, **kw) -> np.ndarray:
  scores, ids = _as_arrays(scores, ids)
  labels = np.asarray(labels).ravel()
  if labels.shape != ids.shape:
    raise ValueError(f"labels and ids differ in length: {labels.shape[0]} vs {ids.shape[0]}")
  check_fraction(f)
  out = []
  for c in np.unique(labels):
    m = labels == c
    k = num_keep(f, int(m.sum()))
    if k:
      out.append(fn(scores[m], ids[m], k, **kw))
  if not out:
    raise ValueError(f"keep fraction f={f} keeps no example of any class")
  return np.concatenate(out).astype(np.int64)


def keep_hardest_balanced(scores, ids, labels, f) -> np.ndarray:
  """Per class c: the num_keep(f, n_c) hardest members of c."""
  return _per_class(lambda s, i, k: _top(s, i, k, True), scores, ids, labels, f)


def keep_easiest_balanced(scores, ids, labels, f) -> np.ndarray:
  """Per class c: the num_keep(f, n_c) easiest members of c."""
  return _per_class(lambda s, i, k: _top(s, i, k, False), scores, ids, labels, f)


def _ccs(scores, ids, k: int, beta: float, num_strata: int, rng) -> np.ndarray:
  n = len(ids)
  if not 0.0 <= beta < 1.0:
    raise ValueError(f"ccs beta={beta} must lie in [0, 1)")
  order = _order_hard_first(scores, ids)
  # Drop the hardest beta*n, but never so many that fewer than k remain.
  n_drop = min(int(math.floor(beta * n)), n - k)
  keep_pos = order[n_drop:]
  s, i = scores[keep_pos], ids[keep_pos]
  if k >= len(i):
    return np.sort(i)
  lo, hi = float(s.min()), float(s.max())
  if hi <= lo:
    strata = np.zeros(len(s), dtype=np.int64)
  else:
    edges = np.linspace(lo, hi, int(num_strata) + 1)
    strata = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, int(num_strata) - 1)
  groups = [np.flatnonzero(strata == b) for b in range(int(strata.max()) + 1)]
  groups = sorted((g for g in groups if len(g)), key=len)
  chosen, budget = [], k
  for j, g in enumerate(groups):
    take = min(len(g), budget // (len(groups) - j))
    if take:
      chosen.append(rng.choice(g, size=take, replace=False))
      budget -= take
  picked = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
  if budget > 0:  # cannot happen with the smallest-first order, kept as a guard
    rest = np.setdiff1d(np.arange(len(i)), picked)
    picked = np.concatenate([picked, rng.choice(rest, size=budget, replace=False)])
  return np.sort(i[picked])


def ccs(scores, ids, f, beta: float = 0.1, num_strata: int = 50, seed: int = 0) -> np.ndarray:
  """Coverage-centric selection of num_keep(f, n) ids (see module docstring)."""
  scores, ids = _as_arrays(scores, ids)
  k = _nonzero(num_keep(f, len(ids)), f, len(ids))
  return _ccs(scores, ids, k, beta, num_strata, np.random.default_rng(seed))


def select_ids(scores, ids, labels=None, fraction: Optional[float] = None,
               count: Optional[int] = None, mode: str = "hard",
               class_balanced: bool = False, seed: int = 0,
               ccs_beta: float = 0.1, ccs_strata: int = 50,
               embeddings=None) -> np.ndarray:
  """One entry point: ids to keep.

  Args:
    scores, ids: per-example scores (larger = harder) and their stable ids.
    labels: hard labels aligned with ids (needed when class_balanced).
    fraction / count: exactly one; fraction in (0, 1] (num_keep rounding) or an
      absolute count in [1, n]. With class_balanced and a count, the count is
      turned into the fraction count / n and rounded per class.
    mode: 'hard' | 'easy' | 'ccs' | 'random'.
    class_balanced: apply the rule within every class.
    seed: randomness of 'ccs' and 'random'.
    embeddings: (n, d) for the coreset modes 'kcenter' | 'herding' | 'facility_location'
      (`pruning.coreset.select`: the same counts, ids in greedy order; scores ignored).
  Returns:
    int64 ids (hardest first for 'hard', easiest first for 'easy', sorted for
    'ccs' and 'random').
  """
  from pruning import coreset
  if mode in coreset.MODES:
    if embeddings is None:
      raise ValueError(f"selection mode {mode!r} needs embeddings= (an (n, d) array)")
    return coreset.select(embeddings, ids, labels, fraction=fraction, count=count, mode=mode,
                          class_balanced=class_balanced, seed=seed)
  if mode not in MODES:
    raise ValueError(f"unknown selection mode {mode!r}; choose from "
                     f"{MODES + coreset.MODES}")
  scores, ids = _as_arrays(scores, ids)
  n = len(ids)
  if fraction is not None:
    check_fraction(fraction)
  k = _count(n, fraction, count)
  rng = np.random.default_rng(seed)
  if mode == "random":
    scores = rng.random(n)
  if class_balanced:
    if labels is None:
      raise ValueError("class_balanced selection needs labels")
    f = fraction if fraction is not None else k / n
    if mode in ("hard", "random"):
      out = keep_hardest_balanced(scores, ids, labels, f)
    elif mode == "easy":
      out = keep_easiest_balanced(scores, ids, labels, f)
    else:
      out = _per_class(lambda s, i, kk: _ccs(s, i, kk, ccs_beta, ccs_strata, rng),
                       scores, ids, labels, f)
    if len(out) == 0:
      raise ValueError(f"class-balanced selection of fraction {f:.4g} keeps no example of "
                       f"any class (per-class counts round to 0); raise the fraction or count")
    return out
  if mode == "hard":
    return _top(scores, ids, k, hardest=True)
  if mode == "easy":
    return _top(scores, ids, k, hardest=False)
  if mode == "random":
    return np.sort(_top(scores, ids, k, hardest=True))
  return _ccs(scores, ids, k, ccs_beta, ccs_strata, rng)
