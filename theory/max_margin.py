r"""Batched exact hard-margin (max-margin) linear classifier without bias, in JAX.

Problem (per data set):   min_w 1/2 |w|^2   s.t.   y_i w.x_i >= 1,  i = 1..P.
Dual:   max_{a >= 0}  sum_i a_i - 1/2 a^T Q a,   Q_ij = y_i y_j x_i.x_j,   w = sum_i a_i y_i x_i.

Solver: exact dual coordinate ascent (the sequential AdaTron of Anlauf & Biehl 1989):
for i = 1..P,

    a_i <- max(0, a_i + (1 - y_i w.x_i) / |x_i|^2),    w <- w + (delta a_i) y_i x_i ,

which maximises the dual exactly along coordinate i.  Sweeps are repeated until the
KKT violation  max_i { |1 - y_i w.x_i| if a_i > 0 else max(0, 1 - y_i w.x_i) }  is
below ``tol`` (in units of the functional margin 1).  All problems of a batch run in
lock-step inside one jitted ``lax.while_loop``; problems of different size P are padded
to a common ``P_max`` and masked (padded rows never enter w).  Computation is in float64
(``jax.experimental.enable_x64`` context) so the solution is exact to ``tol``.

Shapes: x (B, P_max, N), y (B, P_max) in {-1, +1}, mask (B, P_max) bool.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from threadpoolctl import threadpool_limits


def enable_x64():
    """float64 context: `jax.enable_x64(True)` on newer JAX (where
    `jax.experimental.enable_x64` is gone), the experimental one on JAX 0.5."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64 as experimental_enable_x64
    return experimental_enable_x64()


@partial(jax.jit, static_argnames=("max_sweeps",))
def _dual_coordinate_ascent(x, y, mask, tol, max_sweeps):
    z = jnp.where(mask[..., None], y[..., None] * x, 0.0)  # (B, P, N) signed inputs
    sq_norm = jnp.where(mask, jnp.sum(z * z, axis=-1), 1.0)  # (B, P)
    B, P, N = z.shape

    def kkt_violation(a, w):
        h = jnp.einsum("bpn,bn->bp", z, w)  # stabilities y_i w.x_i
        viol = jnp.where(a > 0, jnp.abs(1.0 - h), jnp.maximum(0.0, 1.0 - h))
        return jnp.max(jnp.where(mask, viol, 0.0), axis=-1)  # (B,)

    def coordinate_step(i, state):
        a, w = state
        z_i = lax.dynamic_index_in_dim(z, i, axis=1, keepdims=False)  # (B, N)
        a_i = lax.dynamic_index_in_dim(a, i, axis=1, keepdims=False)  # (B,)
        n_i = lax.dynamic_index_in_dim(sq_norm, i, axis=1, keepdims=False)
        m_i = lax.dynamic_index_in_dim(mask, i, axis=1, keepdims=False)
        gap = 1.0 - jnp.sum(z_i * w, axis=-1)
        a_new = jnp.where(m_i, jnp.maximum(0.0, a_i + gap / n_i), 0.0)
        w = w + (a_new - a_i)[:, None] * z_i
        a = lax.dynamic_update_index_in_dim(a, a_new, i, axis=1)
        return a, w

    def cond(state):
        a, w, sweeps, viol = state
        return jnp.logical_and(sweeps < max_sweeps, jnp.max(viol) > tol)

    def body(state):
        a, w, sweeps, _ = state
        a, w = lax.fori_loop(0, P, coordinate_step, (a, w))
        return a, w, sweeps + 1, kkt_violation(a, w)

    a0 = jnp.zeros((B, P), z.dtype)
    w0 = jnp.zeros((B, N), z.dtype)
    a, w, sweeps, viol = lax.while_loop(cond, body, (a0, w0, jnp.int32(0), jnp.full((B,), jnp.inf, z.dtype)))
    return w, a, sweeps, viol


def adatron_batch(x, y, mask=None, tol=1e-7, max_sweeps=20000):
    """Reference solver: sequential AdaTron / dual coordinate ascent to KKT tolerance ``tol``.

    Exact but slow at large alpha (hundreds to thousands of sweeps); kept as an
    independent check of :func:`max_margin_batch`.

    Args:
      x: (B, P_max, N) inputs; y: (B, P_max) labels in {-1, +1};
      mask: (B, P_max) bool, True for real examples (default: all).
      tol: KKT tolerance on the functional margins (which are 1 at the solution).
    Returns:
      dict with ``w`` (B, N) float64 numpy, ``alpha`` (B, P_max) dual variables,
      ``margin`` (B,) = 1/|w| (geometric margin), ``sweeps`` (int) and ``kkt`` (B,) final
      violations.  Data must be linearly separable through the origin (true for
      teacher labels).
    """
    with enable_x64():
        x = jnp.asarray(x, jnp.float64)
        y = jnp.asarray(y, jnp.float64)
        if x.ndim == 2:
            raise ValueError(f"x must have shape (B, P, N), got {x.shape}")
        mask = jnp.ones(y.shape, bool) if mask is None else jnp.asarray(mask, bool)
        w, a, sweeps, viol = _dual_coordinate_ascent(x, y, mask, jnp.float64(tol), int(max_sweeps))
        w, a, viol = np.asarray(w), np.asarray(a), np.asarray(viol)
    return dict(w=w, alpha=a, margin=1.0 / np.linalg.norm(w, axis=-1), sweeps=int(sweeps), kkt=viol)


def max_margin(x, y, **kw):
    """Single problem: x (P, N), y (P,) -> weight vector w (N,) of the max-margin classifier."""
    return max_margin_batch(np.asarray(x)[None], np.asarray(y)[None], **kw)["w"][0]


def pad_problems(xs, ys):
    """Stack problems of different size P into padded arrays (B, P_max, N), (B, P_max), mask."""
    p_max = max(x.shape[0] for x in xs)
    n = xs[0].shape[1]
    X = np.zeros((len(xs), p_max, n))
    Y = np.ones((len(xs), p_max))
    M = np.zeros((len(xs), p_max), bool)
    for b, (x, y) in enumerate(zip(xs, ys)):
        X[b, : x.shape[0]] = x
        Y[b, : x.shape[0]] = y
        M[b, : x.shape[0]] = True
    return X, Y, M


# ----------------------------------------------------------------------------- main solver
_C_SCHEDULE = (1e0, 1e2, 1e4, 1e6, 1e8, 1e10)


@partial(jax.jit, static_argnames=("c_schedule", "max_iter"))
def _penalty_newton(x, y, mask, c_schedule, max_iter):
    """Finite Newton on  1/2|w|^2 + C/2 sum_i (1 - y_i w.x_i)_+^2  along a schedule C -> inf."""
    z = jnp.where(mask[..., None], y[..., None] * x, 0.0)  # (B, P, N)
    B, P, N = z.shape
    eye = jnp.eye(N, dtype=z.dtype)
    steps = 0.5 ** jnp.arange(30, dtype=z.dtype)  # line-search trial steps (T,)

    def objective(w_sq, slack, C):  # slack: (..., P) = (1 - h)_+ masked
        return 0.5 * w_sq + 0.5 * C * jnp.sum(slack**2, axis=-1)

    def newton_step(state, C):
        w, _, it = state
        h = jnp.einsum("bpn,bn->bp", z, w)
        slack = jnp.where(mask & (h < 1.0), 1.0 - h, 0.0)  # (B, P)
        active = (slack > 0).astype(z.dtype)
        grad = w - C * jnp.einsum("bp,bpn->bn", slack, z)
        hess = eye + C * jnp.einsum("bpn,bpm->bnm", z * active[..., None], z)
        chol = jnp.linalg.cholesky(hess)
        d = -jax.scipy.linalg.cho_solve((chol, True), grad[..., None])[..., 0]
        # backtracking (Armijo) line search, all trial steps evaluated at once
        zd = jnp.einsum("bpn,bn->bp", z, d)
        h_t = h[:, None, :] + steps[None, :, None] * zd[:, None, :]  # (B, T, P)
        slack_t = jnp.where(mask[:, None, :] & (h_t < 1.0), 1.0 - h_t, 0.0)
        w_sq_t = jnp.sum(w * w, -1)[:, None] + 2 * steps[None] * jnp.sum(w * d, -1)[:, None] \
            + steps[None] ** 2 * jnp.sum(d * d, -1)[:, None]
        f_t = objective(w_sq_t, slack_t, C)
        f_0 = objective(jnp.sum(w * w, -1), slack, C)
        ok = f_t <= f_0[:, None] + 1e-4 * steps[None] * jnp.sum(grad * d, -1)[:, None]
        t = jnp.where(jnp.any(ok, -1), steps[jnp.argmax(ok, axis=-1)], 0.0)  # largest admissible
        w_new = w + t[:, None] * d
        rel_change = jnp.max(jnp.linalg.norm(t[:, None] * d, axis=-1) / (jnp.linalg.norm(w_new, axis=-1) + 1e-300))
        return w_new, rel_change, it + 1

    c_values = jnp.asarray(c_schedule, z.dtype)

    def body(state):  # one Newton step at C = c_schedule[stage]; next stage once converged
        w, rel, it, stage, total = state
        w, rel, it = newton_step((w, rel, it), c_values[stage])
        done = (rel < 1e-13) | (it >= max_iter)
        return (w, jnp.where(done, jnp.inf, rel), jnp.where(done, 0, it),
                stage + done.astype(jnp.int32), total + 1)

    state = (jnp.zeros((B, N), z.dtype), jnp.asarray(jnp.inf, z.dtype), jnp.int32(0), jnp.int32(0), jnp.int32(0))
    w, _, _, _, total = lax.while_loop(lambda s: s[3] < len(c_schedule), body, state)
    h = jnp.einsum("bpn,bn->bp", z, w)
    alpha = jnp.where(mask & (h < 1.0), c_schedule[-1] * (1.0 - h), 0.0)  # dual variables a_i
    # hard-margin KKT violation: constraints y_i w.x_i >= 1, complementary slackness
    viol = jnp.where(alpha > 0, jnp.abs(1.0 - h), jnp.maximum(0.0, 1.0 - h))
    viol = jnp.max(jnp.where(mask, viol, 0.0), axis=-1)
    return w, alpha, total, viol


def max_margin_batch(x, y, mask=None, max_iter=100, c_schedule=_C_SCHEDULE):
    r"""Solve a batch of hard-margin, no-bias SVMs (main solver).

    Method: the hard-margin problem  min 1/2|w|^2 s.t. y_i w.x_i >= 1  is the C -> inf limit
    of the squared-hinge (L2-SVM) problem  min 1/2|w|^2 + C/2 sum_i (1 - y_i w.x_i)_+^2,
    whose solution satisfies y_i w.x_i >= 1 - a_i / C with dual variables a_i = C (1 - y_i w.x_i)_+.
    We run finite (generalised) Newton with an Armijo line search, warm-started along
    C = 1, 1e2, ..., 1e10 (inputs are rescaled to unit mean square norm), so the final
    hard-margin KKT violation is ~ max(a_i)/1e10, i.e. < 1e-8 in practice (returned as ``kkt``).
    Each Newton step costs one batched (N x N) Cholesky solve; all problems run in lock-step.

    Args:
      x: (B, P_max, N) inputs; y: (B, P_max) labels in {-1, +1};
      mask: (B, P_max) bool, True for real examples (padding rows are ignored).
    Returns:
      dict: ``w`` (B, N) weight vectors (float64 numpy, in the units of the given x),
      ``alpha`` (B, P_max) dual variables (for the rescaled inputs), ``newton_steps`` (int),
      ``kkt`` (B,) hard-margin KKT violation (for the rescaled inputs, functional margin 1).
    """
    # single-threaded BLAS/LAPACK for the batched (N x N) Cholesky: on a busy machine the
    # multi-threaded OpenBLAS kernels that XLA:CPU calls are up to ~100x slower.
    with enable_x64(), threadpool_limits(1, user_api="blas"):
        x = jnp.asarray(x, jnp.float64)
        y = jnp.asarray(y, jnp.float64)
        if x.ndim != 3:
            raise ValueError(f"x must have shape (B, P, N), got {x.shape}")
        mask = jnp.ones(y.shape, bool) if mask is None else jnp.asarray(mask, bool)
        # rescale so that mean |x|^2 = 1 (conditioning); w scales back by the same factor
        scale = jnp.sqrt(jnp.sum(jnp.where(mask[..., None], x * x, 0.0), axis=(1, 2))
                         / jnp.maximum(jnp.sum(mask, axis=1), 1))[:, None, None]
        scale = jnp.where(scale > 0, scale, 1.0)
        w, a, steps, viol = _penalty_newton(x / scale, y, mask, tuple(c_schedule), int(max_iter))
        w = np.asarray(w) / np.asarray(scale)[:, 0]  # padded all-empty problems give w = 0
        a, viol = np.asarray(a), np.asarray(viol)
    return dict(w=w, alpha=a, newton_steps=int(steps), kkt=viol)
