"""Geometry-based coreset selectors over an embedding: k-center greedy, herding, facility location.

Inputs are an embedding E (n, d) (penultimate features of a trained network from
``core.predict.predict(..., return_embedding=True)``, a PCA of the inputs, or any finite array)
and the examples' stable ids. Every selector is *incremental*: the greedy order of length n has
the property that its first k entries are exactly the greedy selection of size k. So one run
gives every budget, and ``greedy_order_scores`` turns the order into scores (first picked =
largest score) that the ``hard`` mode of ``pruning.select`` (keep the largest) turns back into
the greedy prefix; ``pruning.select.select_ids(mode='kcenter'|'herding'|'facility_location',
embeddings=E)`` does the same in one call with the select_ids count semantics.

  * ``kcenter``  k-center greedy (Gonzalez 1985; Sener & Savarese 2018, "core-set"): start
    from a seeded random point, then repeatedly add argmax_i min_{j in S} ||e_i - e_j||^2.
    The covering radius max_i min_{j in S} ||e_i - e_j|| is within 2x of the optimal k-center
    radius.
  * ``herding``  kernel herding with the linear kernel (Welling 2009; Chen et al. 2010): with
    mu = mean(E) and S_t the t examples picked so far, add
    argmin_i || mu - (sum_{j in S_t} e_j + e_i) / (t + 1) ||^2, so the running mean of the
    selection tracks the full mean.
  * ``facility_location``  maximise F(S) = sum_i max_{j in S} s_ij (Mirzasoleiman et al. 2020,
    CRAIG; Iyer et al., submodlib) by the lazy greedy algorithm (Minoux 1978), which gives the
    same selection as plain greedy (ties to the smaller index in both). The similarity is
    sparse: s_ij = exp(-||e_i - e_j||^2 / (2 sigma^2)) for the ``knn`` nearest neighbours j of
    i (i itself included, s_ii = 1), 0 otherwise; sigma^2 = the mean squared distance to the
    neighbours. Memory: n * knn floats and ints (never n x n); the neighbour search runs in
    row chunks on the device (each call a (chunk, n) distance block).

Device computation (``core.parallel``): rows are padded to a multiple of the device count and
sharded over devices; one pmapped ``lax.fori_loop`` runs the whole greedy (k-center, herding),
each step an O(n d / n_devices) pass and two tiny all_gathers, so the host never holds more
than E itself. Ties are broken by the smaller row (then the smaller global index), so 1 and 8
devices give the same selection (tested). Distances are computed as sum((e_i - c)^2) in
float32 (not via a matmul expansion), which makes each row's value independent of the device
split. Cost: k-center / herding O(n k d) flops; facility location O(n^2 d) for the k-NN graph
plus lazy greedy on the host (a gain evaluation costs the in-degree of a node, ~knn).

Per class (``class_balanced=True``) each class is run on its own rows (the k-NN graph of
facility location is then within the class).
"""
from __future__ import annotations

import functools
import heapq
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from core import parallel
from pruning import budget

MODES = ("kcenter", "herding", "facility_location")


# ----------------------------------------------------------------------------
# Input checks.


def check_embedding(embeddings, n: Optional[int] = None) -> np.ndarray:
  """float32 (n, d) copy of `embeddings`; ValueError on a non-2-D, empty or non-finite input."""
  e = np.asarray(embeddings)
  if e.ndim == 1:
    e = e[:, None]
  if e.ndim > 2:
    e = e.reshape(len(e), -1)
  if e.ndim != 2 or e.shape[0] < 1 or e.shape[1] < 1:
    raise ValueError(f"embedding must be a non-empty (n, d) array, got shape {e.shape}")
  if n is not None and e.shape[0] != n:
    raise ValueError(f"embedding has {e.shape[0]} rows but there are {n} ids")
  bad = ~np.isfinite(e).all(axis=1)
  if bad.any():
    raise ValueError(f"embedding has {int(bad.sum())} rows with NaN/inf (first at row "
                     f"{int(np.flatnonzero(bad)[0])}); recompute the embedding (e.g. a network "
                     f"that diverged) or drop those examples before selecting")
  return e.astype(np.float32)


def _check_mode(mode: str) -> str:
  if mode not in MODES:
    raise ValueError(f"unknown coreset selector {mode!r}; choose from {MODES}")
  return mode


# ----------------------------------------------------------------------------
# Device greedy loops (k-center, herding).


def _pad_rows(e: np.ndarray, n_dev: int):
  """Pads rows to a bucket (power of two >= 8 * n_dev) to limit recompilations."""
  n = len(e)
  size = max(8 * n_dev, 1 << int(np.ceil(np.log2(max(n, 1)))))
  size = -(-size // n_dev) * n_dev
  x = np.zeros((size, e.shape[1]), np.float32)
  x[:n] = e
  valid = np.zeros(size, bool)
  valid[:n] = True
  return x, valid, np.arange(size, dtype=np.int32)


def _global_best(value, index, larger: bool):
  """Across devices: the best (value, index), ties to the smaller index."""
  vs = parallel.all_gather(value[None])
  gs = parallel.all_gather(index[None])
  best = jnp.max(vs) if larger else jnp.min(vs)
  big = jnp.iinfo(jnp.int32).max
  return jnp.min(jnp.where(vs == best, gs, big)), best


def _local_best(score, gidx, larger: bool):
  # argmax/argmin return the first (smallest row) among equal values.
  i = jnp.argmax(score) if larger else jnp.argmin(score)
  return score[i], gidx[i]


def _row_of(x, gidx, g):
  """The global row g (summed over devices: only one holds it)."""
  local = jnp.sum(jnp.where((gidx == g)[:, None], x, 0.0), axis=0)
  return jnp.sum(parallel.all_gather(local[None]), axis=0)  # exact: one nonzero term


@functools.lru_cache(maxsize=16)
def _p_greedy(kind: str, devices: tuple):
  def fn(x, valid, gidx, k, first, mu):
    n_pad = x.shape[0] * len(devices) * jax.process_count()  # global padded rows
    order = jnp.full((n_pad,), -1, jnp.int32)
    trace = jnp.zeros((n_pad,), jnp.float32)
    chosen = ~valid
    if kind == "kcenter":
      mind = jnp.where(valid, jnp.inf, -jnp.inf)

      def body(t, carry):
        mind, chosen, order, trace = carry
        v, g = _local_best(jnp.where(chosen, -jnp.inf, mind), gidx, True)
        g, v = _global_best(v, g, True)
        g = jnp.where(t == 0, first, g)
        c = _row_of(x, gidx, g)
        d = jnp.sum((x - c[None]) ** 2, axis=1)
        mind = jnp.minimum(mind, d)
        chosen = chosen | (gidx == g)
        return mind, chosen, order.at[t].set(g), trace.at[t].set(v)

      _, _, order, trace = jax.lax.fori_loop(0, k, body, (mind, chosen, order, trace))
      return order, trace
    # herding: target w_t = (t + 1) mu - sum_{j in S_t} e_j
    # mu: the mean of the valid rows, computed on the host (float64) so that it does not
    # depend on how the rows are split over devices
    total = jnp.zeros_like(mu)

    def hbody(t, carry):
      total, chosen, order, trace = carry
      w = (t + 1).astype(jnp.float32) * mu - total
      d = jnp.sum((x - w[None]) ** 2, axis=1)
      v, g = _local_best(jnp.where(chosen, jnp.inf, d), gidx, False)
      g, _ = _global_best(v, g, False)
      total = total + _row_of(x, gidx, g)
      gap = jnp.sqrt(jnp.sum((mu - total / (t + 1).astype(jnp.float32)) ** 2))
      chosen = chosen | (gidx == g)
      return total, chosen, order.at[t].set(g), trace.at[t].set(gap)

    _, _, order, trace = jax.lax.fori_loop(0, k, hbody, (total, chosen, order, trace))
    return order, trace

  return parallel.pmap(fn, devices)


def _run_greedy(kind: str, e: np.ndarray, k: int, first: int, num_devices: Optional[int]):
  devices = tuple(parallel.local_devices(num_devices))
  if jax.process_count() > 1:
    raise NotImplementedError("coreset selectors run within one process; every process can "
                              "call them on the full embedding (they are deterministic)")
  x, valid, gidx = _pad_rows(e, len(devices))
  args = parallel.shard((x, valid, gidx), devices)
  rk = parallel.replicate(np.int32(k), devices)
  rf = parallel.replicate(np.int32(first), devices)
  rmu = parallel.replicate(e.astype(np.float64).mean(axis=0).astype(np.float32), devices)
  order, trace = _p_greedy(kind, devices)(*args, rk, rf, rmu)
  order, trace = parallel.fetch((order, trace))
  return np.asarray(order[:k], np.int64), np.asarray(trace[:k], np.float64)


def kcenter_greedy(embeddings, k: int, *, seed: int = 0, first: Optional[int] = None,
                   num_devices: Optional[int] = None):
  """k-center greedy order of k rows of `embeddings`.

  Returns (rows (k,), radius (k,)): radius[t] = max_i min_{j in S_t} ||e_i - e_j||^2 before the
  t-th pick (radius[0] = inf), i.e. the squared distance of the picked point to the selection.
  The first row is `first`, or one drawn with numpy's default_rng(seed).
  """
  e = check_embedding(embeddings)
  k = _check_k(k, len(e))
  if first is None:
    first = int(np.random.default_rng([int(seed), 4421]).integers(len(e)))
  if not 0 <= int(first) < len(e):
    raise ValueError(f"first={first} is not a row of the {len(e)}-row embedding")
  return _run_greedy("kcenter", e, k, int(first), num_devices)


def herding(embeddings, k: int, *, num_devices: Optional[int] = None):
  """Herding order of k rows; returns (rows (k,), gap (k,)) with gap[t] = ||mu - mean(S_{t+1})||."""
  e = check_embedding(embeddings)
  k = _check_k(k, len(e))
  return _run_greedy("herding", e, k, 0, num_devices)


def _check_k(k, n: int) -> int:
  k = int(k)
  if not 1 <= k <= n:
    raise ValueError(f"budget k={k} must lie in [1, {n}] (the number of examples given)")
  return k


# ----------------------------------------------------------------------------
# Facility location: sparse k-NN similarity + (lazy) greedy.


@functools.lru_cache(maxsize=16)
def _p_knn(m: int, devices: tuple):
  def fn(q, keys, key_valid):
    # q (c, d) on this device, keys (n_pad, d) replicated.
    d2 = jnp.sum(q * q, 1)[:, None] + jnp.sum(keys * keys, 1)[None] - 2.0 * q @ keys.T
    d2 = jnp.where(key_valid[None], jnp.maximum(d2, 0.0), jnp.inf)
    neg, idx = jax.lax.top_k(-d2, m)
    return idx.astype(jnp.int32), -neg

  return parallel.pmap(fn, devices)


def knn_graph(embeddings, knn: int, *, chunk: int = 0, num_devices: Optional[int] = None,
              max_block_elems: int = 1 << 25):
  """Each row's `knn` nearest rows (itself included) and squared distances: ((n, m), (n, m)).

  Query rows are processed in chunks of `chunk` rows per device (default: as many as keep a
  (chunk, n) float32 block under `max_block_elems`); the keys are replicated on every device.
  The per-device chunk shape does not depend on the device count, so the result does not either.
  The self-distance is set to exactly 0.
  """
  e = check_embedding(embeddings)
  n = len(e)
  m = int(min(int(knn), n))
  if m < 1:
    raise ValueError(f"knn={knn} must be >= 1")
  devices = tuple(parallel.local_devices(num_devices))
  n_dev = len(devices)
  x, valid, _ = _pad_rows(e, 1)
  if not chunk:
    chunk = int(max(8, min(1024, max_block_elems // len(x))))
  keys = parallel.replicate(x, devices)
  kvalid = parallel.replicate(valid, devices)
  fn = _p_knn(m, devices)
  step = chunk * n_dev
  nbr = np.empty((n, m), np.int64)
  dist = np.empty((n, m), np.float64)
  for start in range(0, n, step):
    rows = np.arange(start, start + step)
    q = e[np.minimum(rows, n - 1)]
    idx, d2 = jax.device_get(fn(parallel.shard(q, devices), keys, kvalid))
    idx = np.asarray(idx).reshape(step, m)
    d2 = np.asarray(d2).reshape(step, m)
    ok = rows < n
    nbr[rows[ok]] = idx[ok]
    dist[rows[ok]] = d2[ok]
  # make sure each row has itself at distance 0 (float rounding of the expansion)
  self_pos = nbr == np.arange(n)[:, None]
  missing = ~self_pos.any(axis=1)
  if missing.any():  # an exact duplicate took its place: put self in the last slot
    nbr[missing, -1] = np.flatnonzero(missing)
    self_pos = nbr == np.arange(n)[:, None]
  dist[self_pos] = 0.0
  return nbr, dist


class SparseFacilityLocation:
  """F(S) = sum_i max(0, max_{j in S} s_ij) over a sparse similarity (rows i, columns j).

  Built from (n, m) neighbour lists: s_ij is nonzero for j in nbr[i]. Stored by column (CSR
  of the transpose), so the gain of a column j, sum_{i: s_ij > 0} max(0, s_ij - cur_i), costs
  its in-degree. `cur` holds max_{j in S} s_ij per row.
  """

  def __init__(self, nbr: np.ndarray, sim: np.ndarray):
    nbr = np.asarray(nbr, np.int64)
    sim = np.asarray(sim, np.float64)
    n, m = nbr.shape
    rows = np.repeat(np.arange(n), m)
    cols = nbr.ravel()
    order = np.lexsort((rows, cols))
    self_rows, self_sims = rows[order], sim.ravel()[order]
    self.ptr = np.searchsorted(cols[order], np.arange(n + 1))
    self.rows, self.sims = self_rows, self_sims
    self.n = n
    self.cur = np.zeros(n, np.float64)

  def gain(self, j: int) -> float:
    a, b = self.ptr[j], self.ptr[j + 1]
    return float(np.sum(np.maximum(self.sims[a:b] - self.cur[self.rows[a:b]], 0.0)))

  def add(self, j: int) -> None:
    a, b = self.ptr[j], self.ptr[j + 1]
    r = self.rows[a:b]
    self.cur[r] = np.maximum(self.cur[r], self.sims[a:b])

  def value(self) -> float:
    return float(self.cur.sum())


def greedy_maximize(objective: SparseFacilityLocation, k: int, lazy: bool = True):
  """Greedy maximisation of a monotone submodular `objective` for k picks.

  Returns (rows (k,), gains (k,)). Plain greedy evaluates every remaining gain each step; lazy
  greedy (Minoux 1978) keeps stale gains (upper bounds, by submodularity) in a max-heap keyed by
  (-gain, row) and re-evaluates only the top until it is fresh. Both pick the largest gain,
  ties to the smaller row, so they return the same selection.
  """
  n = objective.n
  k = _check_k(k, n)
  picked, gains = [], []
  if not lazy:
    chosen = np.zeros(n, bool)
    for _ in range(k):
      best, best_g = -1, -np.inf
      for j in range(n):
        if chosen[j]:
          continue
        g = objective.gain(j)
        if g > best_g:
          best, best_g = j, g
      chosen[best] = True
      objective.add(best)
      picked.append(best)
      gains.append(best_g)
    return np.asarray(picked, np.int64), np.asarray(gains)
  heap = [(-objective.gain(j), j, 0) for j in range(n)]
  heapq.heapify(heap)
  for t in range(k):
    while True:
      neg, j, stamp = heapq.heappop(heap)
      if stamp == t:
        break
      heapq.heappush(heap, (-objective.gain(j), j, t))
    objective.add(j)
    picked.append(j)
    gains.append(-neg)
  return np.asarray(picked, np.int64), np.asarray(gains)


def facility_location(embeddings, k: int, *, knn: int = 20, lazy: bool = True,
                      num_devices: Optional[int] = None):
  """Facility-location greedy order of k rows on the sparse k-NN RBF similarity.

  Returns (rows (k,), gains (k,)): the marginal gain of each pick (non-increasing).
  """
  e = check_embedding(embeddings)
  k = _check_k(k, len(e))
  nbr, d2 = knn_graph(e, knn, num_devices=num_devices)
  off = d2[nbr != np.arange(len(e))[:, None]]
  sigma2 = float(off.mean()) if off.size and off.mean() > 0 else 1.0
  sim = np.exp(-d2 / (2.0 * sigma2))
  return greedy_maximize(SparseFacilityLocation(nbr, sim), k, lazy=lazy)


# ----------------------------------------------------------------------------
# Selection by ids (same count semantics as pruning.select.select_ids).


def greedy_order(mode: str, embeddings, k: Optional[int] = None, *, seed: int = 0,
                 knn: int = 20, num_devices: Optional[int] = None) -> np.ndarray:
  """Rows of `embeddings` in the order the selector `mode` picks them (k of them; all if None)."""
  _check_mode(mode)
  e = check_embedding(embeddings)
  k = len(e) if k is None else k
  if mode == "kcenter":
    return kcenter_greedy(e, k, seed=seed, num_devices=num_devices)[0]
  if mode == "herding":
    return herding(e, k, num_devices=num_devices)[0]
  return facility_location(e, k, knn=knn, num_devices=num_devices)[0]


def greedy_order_scores(mode: str, embeddings, labels=None, *, per_class: bool = True,
                        seed: int = 0, knn: int = 20,
                        num_devices: Optional[int] = None) -> np.ndarray:
  """Scores (n,) whose descending order is the greedy order: score = n_group - rank.

  With `per_class` the greedy runs within each class (rank within the class), which matches
  class-balanced 'hard' selection; otherwise one global run.
  """
  e = check_embedding(embeddings)
  n = len(e)
  scores = np.empty(n, np.float64)
  groups = _groups(labels, n, per_class)
  for rows in groups:
    order = greedy_order(mode, e[rows], seed=seed, knn=knn, num_devices=num_devices)
    scores[rows[order]] = len(rows) - np.arange(len(rows), dtype=np.float64)
  return scores


def _groups(labels, n: int, per_class: bool) -> list:
  if not per_class:
    return [np.arange(n)]
  if labels is None:
    raise ValueError("per-class coreset selection needs labels")
  labels = np.asarray(labels).ravel()
  if labels.shape != (n,):
    raise ValueError(f"labels have shape {labels.shape}, expected ({n},) like the embedding")
  return [np.flatnonzero(labels == c) for c in np.unique(labels)]


def select(embeddings, ids, labels=None, fraction: Optional[float] = None,
           count: Optional[int] = None, mode: str = "kcenter", class_balanced: bool = False,
           seed: int = 0, knn: int = 20, per_class_count: Optional[int] = None,
           num_devices: Optional[int] = None) -> np.ndarray:
  """Ids chosen by a coreset selector, in greedy order (per class, classes in label order).

  Budget: exactly one of `fraction` / `count` (pruning.select.select_ids semantics:
  floor(f n + 0.5) overall, or per class with `class_balanced`, a count then turned into the
  fraction count / n), or `per_class_count` = that many per class (ValueError when a class is
  smaller).
  """
  _check_mode(mode)
  ids = np.asarray(ids).ravel()
  e = check_embedding(embeddings, len(ids))
  if not np.issubdtype(ids.dtype, np.integer) or len(np.unique(ids)) != len(ids):
    raise ValueError("ids must be unique integers")
  ids = ids.astype(np.int64)
  n = len(ids)
  if per_class_count is not None:
    if fraction is not None or count is not None:
      raise ValueError("give one of fraction, count or per_class_count")
    groups = _groups(labels, n, True)
    labels = np.asarray(labels).ravel()
    out = []
    for rows in groups:
      if int(per_class_count) > len(rows) or int(per_class_count) < 1:
        raise ValueError(f"per_class_count={per_class_count} but class {labels[rows[0]]} has "
                         f"{len(rows)} examples; lower the budget or use a fraction")
      out.append(ids[rows[greedy_order(mode, e[rows], int(per_class_count), seed=seed,
                                       knn=knn, num_devices=num_devices)]])
    return np.concatenate(out)
  k = budget.count_of(n, fraction, count)
  if fraction is not None:
    budget.check_fraction(fraction)
  if not class_balanced:
    return ids[greedy_order(mode, e, k, seed=seed, knn=knn, num_devices=num_devices)]
  f = fraction if fraction is not None else k / n
  out = []
  for rows in _groups(labels, n, True):
    kc = budget.num_keep(f, len(rows))
    if kc:
      out.append(ids[rows[greedy_order(mode, e[rows], kc, seed=seed, knn=knn,
                                       num_devices=num_devices)]])
  if not out:
    raise ValueError(f"keep fraction f={f} keeps no example of any class")
  return np.concatenate(out)


# ----------------------------------------------------------------------------
# Score-registry entries (pruning.scores.SCORERS): the greedy order as scores.

SCORER_DEFAULTS = dict(embedding="supervised", epoch=2, per_class=True, knn=20, dim=32,
                       normalize=False)


def embedding_for(data, config, sub) -> np.ndarray:
  """The (n, d) embedding of data.train that `sub.embedding` names.

  'supervised': penultimate features of config.train's network after `sub.epoch` epochs
  (labels used); 'random_features': the same network at init; 'pca': a `sub.dim`-d PCA of the
  inputs (label-free, no network).
  """
  from pruning import prototypes, scoring_runs
  kind = sub.embedding
  if kind == "pca":
    return prototypes.pca_embedding(data.train.x, int(sub.dim), int(config.seed))
  if kind not in ("supervised", "random_features"):
    raise ValueError(f"unknown coreset embedding {kind!r}; choose supervised, random_features "
                     f"or pca")
  epoch = int(sub.epoch) if kind == "supervised" else 0
  return scoring_runs.network_embedding(config, data, epoch, f"coreset/{kind}")


def _num_devices(config):
  train = config.get("train")
  return train.get("num_devices") if train is not None else None


def make_scorer(mode: str):
  """A scorer(data, config, sub, log) -> ScoreResult for `mode` (greedy-order scores)."""
  _check_mode(mode)

  def scorer(data, config, sub, log):
    import time
    from pruning import scoring_runs
    from pruning.score_io import ScoreResult
    t0 = time.time()
    sub = scoring_runs.with_defaults(sub, SCORER_DEFAULTS)
    emb = embedding_for(data, config, sub)
    t_emb = time.time() - t0
    if sub.normalize:
      emb = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
    s = greedy_order_scores(mode, emb, data.train.labels, per_class=bool(sub.per_class),
                            seed=int(config.seed), knn=int(sub.knn),
                            num_devices=_num_devices(config))
    wall = time.time() - t0
    log(f"{mode}: embedding {t_emb:.1f}s, greedy {wall - t_emb:.1f}s")
    meta = scoring_runs.score_meta(mode, data, config, sub, embedding=sub.embedding,
                                   per_class=bool(sub.per_class), wall_time_s=round(wall, 2),
                                   embedding_time_s=round(t_emb, 2), greedy_order=True)
    return ScoreResult(data.train.ids.copy(), s, meta)

  scorer.__name__ = f"{mode}_scorer"
  return scorer
