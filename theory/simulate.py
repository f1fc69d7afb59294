"""Batched simulations of the teacher-student pruning model.

``simulate_eps`` draws, for every configuration (alpha_prune, f, theta, keep) and seed, a
pool of ``alpha_tot N = alpha_prune N / f`` examples, prunes it with a probe at angle
theta (:func:`theory.teacher_student.sample_pruned_dataset`), and trains the max-margin
student with the JAX solver (:func:`theory.max_margin.max_margin_batch`).
Problems are padded to a size bucket ``P_max`` (64 * 2^(k/4), rounded up to 16), so only a
handful of XLA compilations happen per sweep; on CPU they are solved one per call by a thread
per core, on an accelerator in batches (:func:`solve_problems`).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from itertools import product

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from theory.max_margin import max_margin, pad_problems, solve_batch
from theory.teacher_student import (
  sample_pruned_dataset,
  validate_alpha,
  validate_fraction,
  validate_keep,
  validate_n,
  validate_theta,
  prune_by_probe,
)

BATCH = 16


def _bucket(p):
  """Padded size: 64 * 2^(k/4) (four sizes per octave, <= 19% padding), rounded up to 16."""
  q = 64 * 2 ** (max(0, math.ceil(4 * math.log2(p / 64) - 1e-9)) / 4)
  return 16 * math.ceil(q / 16)


def student_eps(w, teacher):
  """eps = arccos(R)/pi with R = w.T/(|w||T|).  w: (..., N), teacher: (N,)."""
  R = (w @ teacher) / (np.linalg.norm(w, axis=-1) * np.linalg.norm(teacher))
  return np.arccos(np.clip(R, -1.0, 1.0)) / np.pi


def solve_problems(xs, ys, progress=False, desc="max-margin", batch_size=None, threads=None):
  """Max-margin weights for a list of problems (x (P_b, N), y (P_b,)) -> (B, N), kkt (B,).

  Problems are padded to their size bucket (few XLA compilations).  On CPU each problem is
  solved on its own (``batch_size=1``) by a pool of ``threads`` (default: one per core):
  problems in a batch run in lock-step until the slowest is done, and Newton step counts
  vary 2-3x between problems, while XLA:CPU's batched Cholesky is a plain loop that gains
  nothing from the batch.  On an accelerator problems are batched (16), which it needs.
  """
  import jax

  on_cpu = jax.default_backend() == "cpu"
  batch_size = batch_size or (1 if on_cpu else BATCH)
  threads = threads or (len(os.sched_getaffinity(0)) if on_cpu else 1)
  n = xs[0].shape[1]
  order = sorted(range(len(xs)), key=lambda i: -xs[i].shape[0])  # largest first: less idle tail
  buckets = {}
  for i in order:
    buckets.setdefault(_bucket(xs[i].shape[0]), []).append(i)
  chunks = [
    (p_pad, idx[s : s + batch_size])
    for p_pad, idx in buckets.items()
    for s in range(0, len(idx), batch_size)
  ]

  def solve_chunk(chunk):
    p_pad, idx = chunk
    X, Y, M = pad_problems([xs[i] for i in idx], [ys[i] for i in idx], p_pad, batch_size)
    return idx, solve_batch(X, Y, M)

  w_out, kkt_out = np.zeros((len(xs), n)), np.zeros(len(xs))
  with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
    for idx, res in tqdm(
      pool.map(solve_chunk, chunks), total=len(chunks), desc=desc, disable=not progress
    ):
      w_out[idx] = res["w"][: len(idx)]
      kkt_out[idx] = res["kkt"][: len(idx)]
  return w_out, kkt_out


def simulate_eps(n, alpha_prune, f, theta=0.0, keep="hard", num_seeds=5, seed=0, progress=False):
  """Simulated generalisation error for every configuration and seed.

  Args:
    n: input dimension N (>= 2).
    alpha_prune, f, theta: array-likes broadcast together -> configuration shape ``S``.
    keep: 'hard' or 'easy'.
    num_seeds: independent draws (teacher frame, pool, student) per configuration.
  Returns:
    dict: ``eps`` (S + (num_seeds,)), ``mean``, ``sem`` (standard error over seeds) of shape S,
    ``kkt`` max hard-margin KKT violation over all problems (float).
  """
  n = validate_n(n)
  validate_keep(keep)
  alpha_prune, f, theta = np.broadcast_arrays(
    validate_alpha(alpha_prune, "alpha_prune"), validate_fraction(f), validate_theta(theta)
  )
  shape = alpha_prune.shape
  flat = list(zip(alpha_prune.ravel(), f.ravel(), theta.ravel()))
  xs, ys = [], []
  for (c, (a, ff, th)), s in product(enumerate(flat), range(num_seeds)):
    rng = np.random.default_rng([seed, c, s, 0 if keep == "hard" else 1])
    x, y = sample_pruned_dataset(rng, n, a / ff, ff, th, keep)
    xs.append(x)
    ys.append(y)
  w, kkt = solve_problems(xs, ys, progress=progress, desc=f"simulate keep={keep}")
  teacher = np.zeros(n)
  teacher[0] = 1.0
  eps = student_eps(w, teacher).reshape(shape + (num_seeds,))
  sem = eps.std(-1, ddof=1) / np.sqrt(num_seeds) if num_seeds > 1 else np.zeros(shape)
  return dict(eps=eps, mean=eps.mean(-1), sem=sem, kkt=float(kkt.max()))


def simulate_data_probe(n, alpha_probe, alpha_prune, f, keep="hard", seed=0):
  """Full-N simulation with a probe *trained from data*.

  A probe student is trained to max margin on ``alpha_probe N`` fresh examples; its
  angle to the teacher ``theta = arccos(R_probe)`` is measured.  A pool of
  ``alpha_prune N / f`` explicit N-dim examples is pruned by the probe's margins and a
  new max-margin student is trained on the kept set.
  Returns dict(theta=measured probe angle, eps=student error).
  """
  import jax.numpy as jnp

  n = validate_n(n)
  validate_alpha(alpha_probe, "alpha_probe")
  validate_alpha(alpha_prune, "alpha_prune")
  validate_fraction(f)
  validate_keep(keep)
  rng = np.random.default_rng(seed)
  teacher = rng.standard_normal(n)
  x_probe = rng.standard_normal((max(2, int(round(alpha_probe * n))), n))
  probe = max_margin(x_probe, np.where(x_probe @ teacher >= 0, 1.0, -1.0))
  theta = float(
    np.arccos(np.clip(probe @ teacher / (np.linalg.norm(probe) * np.linalg.norm(teacher)), -1, 1))
  )
  pool = rng.standard_normal((int(round(alpha_prune / f * n)), n))
  labels = np.where(pool @ teacher >= 0, 1.0, -1.0)
  x_kept, y_kept = prune_by_probe(
    jnp.asarray(pool), jnp.asarray(labels), jnp.asarray(probe), f, keep
  )
  w = max_margin(np.asarray(x_kept), np.asarray(y_kept))
  return dict(theta=theta, eps=float(student_eps(w, teacher)))
