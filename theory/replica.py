r"""Replica theory of the max-margin student trained on pruned data (thermodynamic limit).

Order parameters
----------------
The student ``J`` (|J|^2 = N) is described by its overlaps with the teacher and with
the unit direction ``u`` orthogonal to ``T`` in the probe plane:

    R = J.T_hat / |J|,    S = J.u / |J|,    s = sqrt(1 - R^2 - S^2),

and by its margin ``kappa`` (min_i y_i J.x_i / |J| in units where x ~ N(0, I)).
We parametrise ``R = cos(psi)``, ``S = sin(psi) sin(chi)``, ``s = sin(psi) cos(chi)``.

Fields of a training example
----------------------------
teacher field ``t = T_hat.x``, orthogonal field ``v = u.x``, probe field
``p = cos(theta) t + sin(theta) v`` and ``o = -sin(theta) t + cos(theta) v``; in the pool
``p, o`` are i.i.d. N(0, 1) and pruning truncates ``p`` to ``|p| < gamma`` (keep hard) or
``|p| > gamma`` (keep easy), gamma fixed by the keep fraction f
(:func:`theory.teacher_student.pruning_threshold`).  The student's stability is

    y J.x / |J| = m + s z,    m = sign(t) (R t + S v),    z ~ N(0, 1) independent.

Saddle point (q -> 1 limit of Gardner's volume)
-----------------------------------------------
    G(R, S, kappa) = 1 - R^2 - S^2 - alpha_prune E_{p,o} E_z[(kappa - m - s z)_+^2] ,

with ``E_z[(d - s z)_+^2] = (d^2 + s^2) Phi(d/s) + d s phi(d/s)`` (closed form).  The
max-margin student solves

    G = 0,   dG/dR = 0,   dG/dS = 0,

equivalently ``kappa*(R, S)`` defined by ``G = 0`` is maximised over (R, S) (since
dG/dkappa < 0).  At theta = 0, S = 0 by symmetry and the equations reduce to
``G = 1 - R^2 - alpha E_t E_z[(kappa - R|t| - sqrt(1-R^2) z)_+^2]`` with t a
truncated standard normal.  ``eps = arccos(R) / pi``.

Numerics: expectations by Gauss-Legendre quadrature on the kept range of ``p``
(p > 0 by the symmetry (p, o) -> (-p, -o)) and, for theta > 0, on the two half lines of
``o`` separated by the label boundary ``t = 0`` (``o = p cot(theta)``), so every
integrand is smooth.  ``kappa*(R, S)`` by Newton's method (G is concave and
decreasing in kappa, so Newton started right of the root converges monotonically);
the outer maximisation by a grid start plus safeguarded Newton steps on
``grad kappa*`` (analytic gradient, finite-difference Hessian).  Everything is
vectorised over a flat batch of (alpha_prune, f, theta) problems.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import special

from theory.teacher_student import (
  pruning_threshold,
  validate_alpha,
  validate_fraction,
  validate_keep,
  validate_theta,
)

_P_SPAN = 12.0  # integrate the kept probe field over at most this range
_O_SPAN = 10.0  # |o| <= _O_SPAN


_GRADING = np.array([0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5, 1.0])


def _graded_gauss_legendre(a, b, n_per_panel, toward="a"):
  """Composite Gauss-Legendre on [a, b] with panels graded geometrically toward one end.

  a, b: arrays (...,).  Returns nodes, weights of shape (..., n_panels * n_per_panel).
  The integrands have structure on the scale of the student's margin / noise
  (kappa, s), which shrinks at large alpha; graded panels resolve it down to ~1e-6.
  """
  x, w = np.polynomial.legendre.leggauss(n_per_panel)
  rel = _GRADING if toward == "a" else (1.0 - _GRADING)[::-1]
  lo, hi = rel[:-1], rel[1:]  # (n_panels,)
  a, b = np.asarray(a)[..., None], np.asarray(b)[..., None]
  pa, pb = a + (b - a) * lo, a + (b - a) * hi  # (..., n_panels)
  half, mid = 0.5 * (pb - pa), 0.5 * (pb + pa)
  nodes = mid[..., None] + half[..., None] * x
  weights = half[..., None] * w
  sh = nodes.shape[:-2] + (-1,)
  return nodes.reshape(sh), weights.reshape(sh)


def _quadrature(f, theta, keep, n_p=8, n_o=6):
  """Quadrature for E over the pruned (p, o) distribution.

  Returns yt, yv, w: arrays (B, K) with ``sign(t) t``, ``sign(t) v`` at the nodes and
  weights summing to 1 (per problem).  n_p / n_o: Gauss-Legendre nodes per panel.
  """
  gamma = pruning_threshold(f, keep)
  if keep == "hard":
    a, b = np.zeros_like(gamma), np.minimum(gamma, _P_SPAN)
  else:
    a, b = gamma, gamma + _P_SPAN
  if np.all(theta == 0):
    p, wp = _graded_gauss_legendre(a, b, n_p, toward="a")
  else:  # the p-integrand (after the o integral) is smooth: plain Gauss-Legendre
    xg, wg = np.polynomial.legendre.leggauss(4 * n_p)
    half, mid = 0.5 * (b - a)[:, None], 0.5 * (b + a)[:, None]
    p, wp = mid + half * xg, half * wg
  wp = wp * 2.0 * np.exp(-0.5 * p**2) / math.sqrt(2 * math.pi) / f[:, None]
  c, sn = np.cos(theta)[:, None], np.sin(theta)[:, None]
  if np.all(theta == 0):  # o integrates out exactly: t = p > 0, v = o has mean 0 -> S = 0
    yt, yv, w = p, np.zeros_like(p), wp
  else:
    with np.errstate(divide="ignore", invalid="ignore"):
      o_star = np.where(sn > 0, p * c / np.where(sn > 0, sn, 1.0), np.inf)
    o_star = np.clip(o_star, -_O_SPAN, _O_SPAN)  # (B, n_p): label boundary t = 0
    o_lo, w_lo = _graded_gauss_legendre(np.full_like(o_star, -_O_SPAN), o_star, n_o, "b")
    o_hi, w_hi = _graded_gauss_legendre(o_star, np.full_like(o_star, _O_SPAN), n_o, "a")
    o = np.concatenate([o_lo, o_hi], axis=-1)  # (B, n_p, 2 K_o)
    wo = np.concatenate([w_lo, w_hi], axis=-1) * np.exp(-0.5 * o**2) / math.sqrt(2 * math.pi)
    k_o = o_lo.shape[-1]
    y = np.concatenate([np.ones(k_o), -np.ones(k_o)])  # label sign(t): + below o*, - above
    pp = p[..., None]
    t = c[..., None] * pp - sn[..., None] * o
    v = sn[..., None] * pp + c[..., None] * o
    B = p.shape[0]
    yt = (y * t).reshape(B, -1)
    yv = (y * v).reshape(B, -1)
    w = (wp[..., None] * wo).reshape(B, -1)
  w = w / w.sum(axis=1, keepdims=True)  # remove the (tiny) truncation error
  return yt, yv, w


def _moments(R, S, kappa, yt, yv, w):
  """Expectations entering G and its derivatives. R, S, kappa: (B,); yt, yv, w: (B, K)."""
  s = np.sqrt(np.maximum(1.0 - R**2 - S**2, 1e-300))[:, None]
  d = kappa[:, None] - R[:, None] * yt - S[:, None] * yv
  u = d / s
  cdf = special.ndtr(u)
  pdf = np.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)
  F = (d**2 + s**2) * cdf + d * s * pdf  # E_z (d - s z)_+^2
  F1 = d * cdf + s * pdf  # E_z (d - s z)_+
  return dict(
    F=(w * F).sum(1),
    F1=(w * F1).sum(1),
    Phi=(w * cdf).sum(1),
    tF1=(w * yt * F1).sum(1),
    vF1=(w * yv * F1).sum(1),
  )


def saddle_point_residuals(alpha, R, S, kappa, yt, yv, w):
  """(G, dG/dR, dG/dS, dG/dkappa), each (B,). Solution: first three vanish."""
  m = _moments(R, S, kappa, yt, yv, w)
  G = 1.0 - R**2 - S**2 - alpha * m["F"]
  G_R = -2 * R + 2 * alpha * m["tF1"] + 2 * alpha * R * m["Phi"]
  G_S = -2 * S + 2 * alpha * m["vF1"] + 2 * alpha * S * m["Phi"]
  G_k = -2 * alpha * m["F1"]
  return G, G_R, G_S, G_k


def _angles_to_RS(psi, chi):
  return np.cos(psi), np.sin(psi) * np.sin(chi)


def _kappa_star(alpha, psi, chi, yt, yv, w, kappa0=None, iters=60, tol=1e-13):
  """Largest margin at fixed (R, S): root of G(kappa) = 0 by monotone Newton. (B,)"""
  R, S = _angles_to_RS(psi, chi)
  kappa = np.full_like(R, 10.0) if kappa0 is None else kappa0.copy()
  # make sure we start right of the root (G < 0)
  for _ in range(60):
    G = saddle_point_residuals(alpha, R, S, kappa, yt, yv, w)[0]
    bad = G > 0
    if not bad.any():
      break
    kappa = np.where(bad, 2 * np.abs(kappa) + 1.0, kappa)
  for _ in range(iters):
    G, _, _, G_k = saddle_point_residuals(alpha, R, S, kappa, yt, yv, w)
    step = G / np.minimum(G_k, -1e-300)
    kappa = kappa - step
    if np.max(np.abs(step)) < tol:
      break
  return kappa


def _grad_kappa(alpha, psi, chi, kappa, yt, yv, w):
  """d kappa*/d(psi, chi) = -(dG/d(psi, chi)) / (dG/dkappa)."""
  R, S = _angles_to_RS(psi, chi)
  _, G_R, G_S, G_k = saddle_point_residuals(alpha, R, S, kappa, yt, yv, w)
  dR_dpsi, dS_dpsi, dS_dchi = -np.sin(psi), np.cos(psi) * np.sin(chi), np.sin(psi) * np.cos(chi)
  g_psi = -(G_R * dR_dpsi + G_S * dS_dpsi) / G_k
  g_chi = -(G_S * dS_dchi) / G_k
  return g_psi, g_chi


def _solve_batch(alpha, f, theta, keep, n_p, n_o, max_newton=40):
  yt, yv, w = _quadrature(f, theta, keep, n_p, n_o)
  B = alpha.shape[0]
  two_d = not np.all(theta == 0)
  # --- grid start over the student angle psi (chi = 0)
  psi_grid = np.geomspace(2e-4, 1.5, 20)
  best_k, best_psi = np.full(B, -np.inf), np.zeros(B)
  kap = None
  for psi_g in psi_grid[::-1]:
    psi = np.full(B, psi_g)
    kap = _kappa_star(alpha, psi, np.zeros(B), yt, yv, w, kappa0=kap)
    better = kap > best_k
    best_k, best_psi = np.where(better, kap, best_k), np.where(better, psi, best_psi)
  psi, chi, kappa = best_psi, np.zeros(B), best_k
  if two_d:  # also scan the angle chi in the (u, w) plane (S = sin(psi) sin(chi))
    for chi_g in np.linspace(-1.2, 1.2, 9):
      for psi_s in (0.7, 1.0, 1.4):
        cand_psi, cand_chi = np.minimum(best_psi * psi_s, 1.5), np.full(B, chi_g)
        k = _kappa_star(alpha, cand_psi, cand_chi, yt, yv, w, kappa0=kappa)
        better = k > kappa
        psi, chi, kappa = (
          np.where(better, cand_psi, psi),
          np.where(better, cand_chi, chi),
          np.where(better, k, kappa),
        )
  # --- safeguarded Newton ascent on kappa*(psi, chi)
  for _ in range(max_newton):
    g = np.stack(_grad_kappa(alpha, psi, chi, kappa, yt, yv, w), -1)  # (B, 2)
    if not two_d:
      g[:, 1] = 0.0
    h_psi = 1e-6 * np.maximum(psi, 1e-4)
    h_chi = np.full(B, 1e-6)
    k1 = _kappa_star(alpha, psi + h_psi, chi, yt, yv, w, kappa0=kappa)
    g1 = np.stack(_grad_kappa(alpha, psi + h_psi, chi, k1, yt, yv, w), -1)
    H = np.zeros((B, 2, 2))
    H[:, :, 0] = (g1 - g) / h_psi[:, None]
    if two_d:
      k2 = _kappa_star(alpha, psi, chi + h_chi, yt, yv, w, kappa0=kappa)
      g2 = np.stack(_grad_kappa(alpha, psi, chi + h_chi, k2, yt, yv, w), -1)
      H[:, :, 1] = (g2 - g) / h_chi[:, None]
      H = 0.5 * (H + np.transpose(H, (0, 2, 1)))
    else:
      H[:, 1, 1] = -1.0
      H[:, 0, 1] = H[:, 1, 0] = 0.0
    eig_max = np.linalg.eigvalsh(H)[:, -1]
    newton_ok = eig_max < 0
    step_newton = -np.linalg.solve(np.where(newton_ok[:, None, None], H, -np.eye(2)), g[..., None])[
      ..., 0
    ]
    scale = np.maximum(psi, 1e-3)[:, None]
    step_grad = g * scale**2 / np.maximum(np.abs(g).max(1, keepdims=True) * scale, 1e-300) * 0.3
    step = np.where(newton_ok[:, None], step_newton, step_grad)
    # limit step so that psi stays in (0, pi/2) and chi in (-pi/2, pi/2)
    step[:, 0] = np.clip(step[:, 0], -0.5 * psi, 0.5 * (np.pi / 2 - psi))
    step[:, 1] = np.clip(step[:, 1], -0.3, 0.3)
    t = np.ones(B)
    accepted = np.zeros(B, bool)
    new_psi, new_chi, new_k = psi.copy(), chi.copy(), kappa.copy()
    for _ls in range(12):
      cand_psi = psi + t * step[:, 0]
      cand_chi = np.clip(chi + t * step[:, 1], -1.5, 1.5)
      cand_k = _kappa_star(alpha, cand_psi, cand_chi, yt, yv, w, kappa0=kappa)
      ok = (cand_k >= kappa - 1e-15) & ~accepted
      new_psi, new_chi, new_k = (
        np.where(ok, cand_psi, new_psi),
        np.where(ok, cand_chi, new_chi),
        np.where(ok, cand_k, new_k),
      )
      accepted |= ok
      if accepted.all():
        break
      t = np.where(accepted, t, 0.5 * t)
    moved = np.maximum(np.abs(new_psi - psi) / np.maximum(psi, 1e-12), np.abs(new_chi - chi))
    psi, chi, kappa = new_psi, new_chi, new_k
    if np.max(moved) < 1e-10:
      break
  R, S = _angles_to_RS(psi, chi)
  G, G_R, G_S, _ = saddle_point_residuals(alpha, R, S, kappa, yt, yv, w)
  return dict(
    R=R, S=S, kappa=kappa, eps=psi / np.pi, residual=np.max(np.abs(np.stack([G, G_R, G_S])), axis=0)
  )


RESIDUAL_TOL = 1e-6  # max |G|, |dG/dR|, |dG/dS| of a converged saddle point
ON_UNCONVERGED = ("warn", "raise", "ignore")


class UnconvergedSaddlePointWarning(RuntimeWarning):
  """solve_replica returned points whose saddle-point residual exceeds the tolerance."""


def unconverged_message(alpha, f, theta, keep, residual, tol=RESIDUAL_TOL, limit=5):
  """A message naming the problems (alpha, f, theta, keep, residual) with residual > tol."""
  alpha, f, theta, residual = (np.ravel(v) for v in np.broadcast_arrays(alpha, f, theta, residual))
  bad = np.flatnonzero(~(residual <= tol))
  pts = ", ".join(
    f"(alpha={alpha[i]:.4g}, f={f[i]:.4g}, theta={theta[i]:.4g}, keep={keep!r}, "
    f"residual={residual[i]:.3g})"
    for i in bad[:limit]
  )
  more = f" and {bad.size - limit} more" if bad.size > limit else ""
  return (
    f"solve_replica: {bad.size} of {residual.size} saddle points did not converge "
    f"(residual > {tol:g}): {pts}{more}; their eps is not the theory's (the Newton ascent "
    f"stalled): drop these points (solve_replica returns the residual of each)"
  )


def solve_replica(
  alpha_prune,
  f=1.0,
  theta=0.0,
  keep="hard",
  n_p=8,
  n_o=6,
  batch_size=32,
  tol=RESIDUAL_TOL,
  on_unconverged="warn",
):
  """Solve the saddle-point equations for the max-margin student on pruned data.

  Args:
    alpha_prune: data density of the kept set P/N (> 0); array-like.
    f: keep fraction in (0, 1]; array-like, broadcast with ``alpha_prune``.
    theta: probe angle in radians, [0, pi/2]; array-like, broadcast.
    keep: 'hard' (keep small probe margins) or 'easy'.
  Returns:
    dict of arrays of the broadcast shape: ``R`` (teacher overlap), ``S`` (overlap with
    the orthogonal probe direction u), ``kappa`` (margin), ``eps = arccos(R)/pi``,
    ``residual`` (max |G|, |dG/dR|, |dG/dS| at the solution).
  Points with ``residual > tol`` are not saddle points: ``on_unconverged='warn'`` (default)
  emits an UnconvergedSaddlePointWarning (a RuntimeWarning naming alpha, f, theta, keep and
  the residual), ``'raise'`` raises ValueError, ``'ignore'`` leaves it to the caller.
  """
  validate_keep(keep)
  if on_unconverged not in ON_UNCONVERGED:
    raise ValueError(f"on_unconverged={on_unconverged!r}; choose from {ON_UNCONVERGED}")
  alpha_prune, f, theta = np.broadcast_arrays(
    validate_alpha(alpha_prune, "alpha_prune"), validate_fraction(f), validate_theta(theta)
  )
  shape = alpha_prune.shape
  a, ff, th = (np.ravel(v).astype(float) for v in (alpha_prune, f, theta))
  out = {k: np.empty(a.size) for k in ("R", "S", "kappa", "eps", "residual")}
  # theta == 0 problems are 1-d (S = 0): solve them separately (cheaper quadrature)
  for mask in (th == 0, th != 0):
    idx = np.flatnonzero(mask)
    for start in range(0, idx.size, batch_size):
      sl = idx[start : start + batch_size]
      res = _solve_batch(a[sl], ff[sl], th[sl], keep, n_p, n_o)
      for k in out:
        out[k][sl] = res[k]
      # a problem whose Newton ascent stalled in the batch is re-solved on its own
      for i in sl[res["residual"] > 1e-8]:
        single = _solve_batch(a[i : i + 1], ff[i : i + 1], th[i : i + 1], keep, n_p, n_o)
        if single["residual"][0] < out["residual"][i]:
          for k in out:
            out[k][i] = single[k][0]
  if on_unconverged != "ignore" and not np.all(out["residual"] <= tol):
    msg = unconverged_message(a, ff, th, keep, out["residual"], tol)
    if on_unconverged == "raise":
      raise ValueError(msg)
    warnings.warn(msg, UnconvergedSaddlePointWarning, stacklevel=2)
  return {k: v.reshape(shape) for k, v in out.items()}


def generalization_error(alpha_prune, f=1.0, theta=0.0, keep="hard", **kw):
  """eps(alpha_prune; f, theta, keep) = arccos(R)/pi from :func:`solve_replica` (which warns
  about unconverged points; pass on_unconverged='raise' to refuse them)."""
  return solve_replica(alpha_prune, f, theta, keep, **kw)["eps"]
