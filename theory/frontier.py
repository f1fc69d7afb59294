"""Derived quantities of the replica theory: Pareto frontier, crossovers, optimal keep fraction.

All functions take 1-d numpy grids and return numpy arrays; eps values come from
:func:`theory.replica.solve_replica`.
"""

from __future__ import annotations

import numpy as np

from theory.replica import RESIDUAL_TOL, solve_replica


def asymptotic_constant(alpha=1e4):
  """c in the power law eps ~ c / alpha of the unpruned (f = 1) max-margin student.

  Evaluated as alpha * eps(alpha) at large alpha (1e4): c = 0.5005 (classic
  maximal-stability teacher-student perceptron value ~0.50).
  """
  return float(alpha * solve_replica(alpha, 1.0, 0.0, "hard")["eps"])


def eps_grid(alpha_prune, fractions, theta=0.0, keeps=("hard", "easy"), return_residual=False):
  """eps on the grid: dict keep -> array (len(fractions), len(alpha_prune)).

  Unconverged points (residual > RESIDUAL_TOL) are reported by one RuntimeWarning per keep
  rule (from solve_replica); with ``return_residual`` also returns dict keep -> residuals.
  """
  a = np.asarray(alpha_prune, float)[None, :]
  f = np.asarray(fractions, float)[:, None]
  sols = {k: solve_replica(a, f, theta, k) for k in keeps}
  eps = {k: r["eps"] for k, r in sols.items()}
  return (eps, {k: r["residual"] for k, r in sols.items()}) if return_residual else eps


def pareto_frontier(alpha_prune, fractions, theta=0.0, keeps=("hard", "easy")):
  """Minimum of eps over keep fraction f (and keep rule) at each alpha_prune.

  Here alpha_prune is the size of the *pruned* set and the pool is assumed as large as
  needed (alpha_tot = alpha_prune / f).  Returns dict(eps, f_opt, keep_opt) of shape
  (len(alpha_prune),), plus ``decay_rate``: slope of -log(eps) vs alpha_prune over the
  upper half of the grid (exponential scaling eps ~ exp(-rate * alpha) for theta = 0).
  Unconverged grid points (residual > RESIDUAL_TOL; warned about) are never chosen; an
  alpha with no converged point raises ValueError naming it.
  """
  grid, resid = eps_grid(alpha_prune, fractions, theta, keeps, return_residual=True)
  stack = np.stack([grid[k] for k in keeps])  # (K, F, A)
  ok = np.stack([resid[k] for k in keeps]) <= RESIDUAL_TOL
  if not ok.any(axis=(0, 1)).all():
    bad = np.asarray(alpha_prune, float)[~ok.any(axis=(0, 1))]
    raise ValueError(
      f"pareto_frontier: no converged saddle point at alpha_prune={bad.tolist()} "
      f"(theta={theta}, keeps={keeps}); refine or drop these alphas"
    )
  flat = np.where(ok, stack, np.inf).reshape(-1, stack.shape[-1])
  best = np.argmin(flat, axis=0)
  k_idx, f_idx = np.unravel_index(best, stack.shape[:2])
  eps = flat[best, np.arange(flat.shape[1])]
  a = np.asarray(alpha_prune, float)
  upper = a >= np.median(a)
  rate = -np.polyfit(a[upper], np.log(eps[upper]), 1)[0]
  return dict(
    eps=eps,
    f_opt=np.asarray(fractions)[f_idx],
    keep_opt=np.asarray(keeps)[k_idx],
    decay_rate=float(rate),
  )


def crossover_alpha(f, alpha_prune=np.geomspace(0.2, 20, 120), theta=0.0):
  """alpha_prune where keep-hard starts beating keep-easy at keep fraction f (nan if none).

  Keep-easy is better for scarce data (small alpha), keep-hard for abundant data.
  """
  g = eps_grid(alpha_prune, [f], theta)
  diff = g["hard"][0] - g["easy"][0]  # > 0: easy better
  sign_change = np.flatnonzero((diff[:-1] > 0) & (diff[1:] <= 0))
  if sign_change.size == 0:
    return float("nan")
  i = sign_change[0]
  a = np.log(alpha_prune)
  return float(np.exp(a[i] - diff[i] * (a[i + 1] - a[i]) / (diff[i + 1] - diff[i])))


def lossless_fraction(alpha_tot, theta=0.0, keep="hard", rel_tol=0.01, f_min=1e-3, iters=16):
  """Smallest keep fraction of a fixed pool that costs at most ``rel_tol`` in test error.

  At a fixed pool size alpha_tot the max-margin error is flat in f over a wide range:
  dropping examples that are not support vectors leaves the max-margin solution
  unchanged, so "the f with the lowest error" is a plateau decided by rounding.  What is
  well defined is where the plateau ends,

      f_*(alpha_tot) = min{ f : eps(f alpha_tot, f) <= (1 + rel_tol) eps(alpha_tot, 1) },

  i.e. how much of the pool can be pruned for free.  Found by bisection in log f between
  ``f_min`` and 1 (eps is non-increasing in f at fixed pool on every grid we checked);
  ``f_min`` is returned where even that keeps the error.

  Returns dict(f (len(alpha_tot),), eps_full (eps at f = 1), eps (at f_*)).
  """
  at = np.asarray(alpha_tot, float).ravel()
  eps_full = solve_replica(at, 1.0, theta, keep)["eps"]
  target = (1.0 + rel_tol) * eps_full
  lo = np.full(at.shape, np.log(f_min))  # invariant: eps(hi) <= target
  hi = np.zeros(at.shape)
  free_at_min = solve_replica(f_min * at, f_min, theta, keep)["eps"] <= target
  hi = np.where(free_at_min, lo, hi)
  for _ in range(iters):
    mid = 0.5 * (lo + hi)
    ok = solve_replica(np.exp(mid) * at, np.exp(mid), theta, keep)["eps"] <= target
    lo, hi = np.where(ok, lo, mid), np.where(ok, mid, hi)
  f = np.exp(hi)
  return dict(f=f, eps_full=eps_full, eps=solve_replica(f * at, f, theta, keep)["eps"])
