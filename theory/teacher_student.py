"""Teacher-student perceptron model of data pruning (Sorscher et al., NeurIPS 2022).

Model
-----
* Teacher ``T`` in R^N, inputs ``x ~ N(0, I_N)``, labels ``y = sign(T . x)``.
* A pool of ``P_tot = alpha_tot * N`` examples is pruned with a *probe* student
  ``J_probe`` at angle ``theta`` to ``T``:  margin_i = |J_probe . x_i| / |J_probe|.
* Keep a fraction ``f`` of the pool: the hardest (smallest margins, ``keep='hard'``)
  or the easiest (largest margins, ``keep='easy'``).  ``P = f P_tot`` examples remain,
  ``alpha_prune = P / N = f alpha_tot``.
* A new student ``J`` is trained to max margin on the kept set;
  ``R = J.T / (|J||T|)`` and the generalisation error is ``eps = arccos(R) / pi``.

Because ``x`` is isotropic, only the two fields ``t = T_hat . x`` (teacher) and
``v = u . x`` (the unit direction ``u`` orthogonal to ``T`` in the probe plane)
are affected by pruning; the other ``N-2`` coordinates stay i.i.d. N(0, 1).
:func:`sample_pruned_dataset` uses this to draw a pruned data set exactly in
distribution while only sampling 2 scalars per pool example (teacher ``T = e_1``,
probe plane spanned by ``e_1, e_2``; the max-margin student is rotation
equivariant, so this is no loss of generality).  :func:`sample_pool` /
:func:`prune_by_probe` do the same thing explicitly in N dimensions (used for a
probe trained from data, and as a check of the fast path).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

KEEP_CHOICES = ("hard", "easy")


# ----------------------------------------------------------------------------- validation
def _as_float_array(name, value):
  try:
    arr = np.asarray(value, dtype=float)
  except (TypeError, ValueError) as exc:
    raise ValueError(f"{name} must be numeric, got {value!r}") from exc
  if np.any(np.isnan(arr)):
    raise ValueError(f"{name} must not be NaN, got {value!r}")
  return arr


def validate_fraction(f):
  """Keep fraction ``f`` must lie in (0, 1]."""
  arr = _as_float_array("f", f)
  if np.any(arr <= 0) or np.any(arr > 1):
    raise ValueError(f"keep fraction f must be in (0, 1], got f={f!r}")
  return arr


def validate_theta(theta):
  """Probe angle ``theta`` (radians) must lie in [0, pi/2]."""
  arr = _as_float_array("theta", theta)
  if np.any(arr < 0) or np.any(arr > math.pi / 2 + 1e-12):
    raise ValueError(f"probe angle theta must be in [0, pi/2] radians, got theta={theta!r}")
  return arr


def validate_alpha(alpha, name="alpha"):
  """Data density ``alpha = P / N`` must be positive and finite."""
  arr = _as_float_array(name, alpha)
  if np.any(arr <= 0) or np.any(~np.isfinite(arr)):
    raise ValueError(f"{name} must be > 0 and finite, got {name}={alpha!r}")
  return arr


def validate_n(n):
  """Input dimension ``N`` must be an integer >= 2."""
  if isinstance(n, float) and math.isnan(n):
    raise ValueError(f"dimension N must be an integer >= 2, got N={n!r}")
  if int(n) != n or int(n) < 2:
    raise ValueError(f"dimension N must be an integer >= 2, got N={n!r}")
  return int(n)


def validate_keep(keep):
  if keep not in KEEP_CHOICES:
    raise ValueError(f"keep must be one of {KEEP_CHOICES}, got keep={keep!r}")
  return keep


# ----------------------------------------------------------------------------- thresholds
def pruning_threshold(f, keep):
  """Field threshold ``gamma`` on a standard-normal probe field ``p`` with P(kept) = f.

  keep='hard':  keep |p| < gamma,  gamma = Phi^{-1}((1 + f) / 2)
  keep='easy':  keep |p| > gamma,  gamma = Phi^{-1}(1 - f / 2)
  (``gamma = inf`` for keep-hard at f = 1.)
  """
  f = validate_fraction(f)
  validate_keep(keep)
  if keep == "hard":
    return special.ndtri((1.0 + f) / 2.0)
  return special.ndtri(1.0 - f / 2.0)


def num_kept(alpha_tot, f, n):
  """Number of examples kept: ``round(f * alpha_tot * N)`` (at least 1)."""
  return max(1, int(round(float(f) * float(alpha_tot) * n)))


# ----------------------------------------------------------------------------- probes
def probe_at_angle(teacher, theta, key):
  """``J_probe = cos(theta) T_hat + sin(theta) u`` with ``u`` a random unit vector orthogonal to T.

  teacher: (N,), theta: scalar radians.  Returns a unit vector (N,).
  """
  validate_theta(theta)
  t_hat = teacher / jnp.linalg.norm(teacher)
  g = jax.random.normal(key, t_hat.shape, dtype=t_hat.dtype)
  u = g - (g @ t_hat) * t_hat
  u = u / jnp.linalg.norm(u)
  return jnp.cos(theta) * t_hat + jnp.sin(theta) * u


def angle_between(a, b):
  """Angle (radians) between two vectors."""
  cos = jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))
  return jnp.arccos(jnp.clip(cos, -1.0, 1.0))


# ----------------------------------------------------------------------------- explicit data
def sample_pool(key, teacher, num_examples):
  """Explicit pool: ``X`` (P_tot, N) with x ~ N(0, I_N) and labels ``y = sign(T.x)`` (P_tot,)."""
  x = jax.random.normal(key, (num_examples, teacher.shape[0]), dtype=teacher.dtype)
  y = jnp.where(x @ teacher >= 0, 1.0, -1.0).astype(teacher.dtype)
  return x, y


def prune_by_probe(x, y, probe, f, keep):
  """Keep the ``round(f P_tot)`` hardest (smallest |J_probe.x|/|J_probe|) or easiest examples.

  x: (P_tot, N), y: (P_tot,), probe: (N,).  Returns (x_kept, y_kept) of shape (P, N), (P,).
  """
  validate_fraction(f)
  validate_keep(keep)
  margins = jnp.abs(x @ probe) / jnp.linalg.norm(probe)
  n_keep = max(1, int(round(float(f) * x.shape[0])))
  order = jnp.argsort(margins)
  idx = order[:n_keep] if keep == "hard" else order[::-1][:n_keep]
  return x[idx], y[idx]


# ----------------------------------------------------------------------------- fast exact sampler
def sample_pruned_dataset(rng: np.random.Generator, n, alpha_tot, f, theta, keep):
  """Pruned data set drawn exactly in distribution, teacher ``T = e_1``.

  The probe is ``cos(theta) e_1 + sin(theta) e_2``.  Only the pool's fields
  ``(t, v) = (x_1, x_2)`` are drawn for all ``P_tot`` examples; the remaining
  ``N - 2`` coordinates are drawn for the kept ``P`` examples only.

  Returns ``x`` (P, N) float64, ``y`` (P,) in {-1, +1}.
  """
  n = validate_n(n)
  validate_alpha(alpha_tot, "alpha_tot")
  validate_fraction(f)
  validate_theta(theta)
  validate_keep(keep)
  p_tot = max(1, int(round(float(alpha_tot) * n)))
  n_keep = max(1, int(round(float(f) * p_tot)))
  tv = rng.standard_normal((p_tot, 2))
  probe_field = math.cos(theta) * tv[:, 0] + math.sin(theta) * tv[:, 1]
  order = np.argsort(np.abs(probe_field), kind="stable")
  idx = order[:n_keep] if keep == "hard" else order[::-1][:n_keep]
  x = np.empty((n_keep, n))
  x[:, :2] = tv[idx]
  x[:, 2:] = rng.standard_normal((n_keep, n - 2))
  y = np.where(x[:, 0] >= 0, 1.0, -1.0)
  return x, y
