"""Label Solve (Nguyen, Chen, Lee 2021, sec. 3): closed-form support labels.

For fixed support images X_s, the targets that make kernel ridge regression
least-squares optimal on a target set (X_t, Y_t):

    Y_s* = argmin_Y || K_ts A Y - Y_t ||^2 = (K_ts A)^+ Y_t,  A = (K_ss + lambda I)^-1

solved with `scipy.linalg.lstsq` (minimum-norm solution; equals the
pseudo-inverse formula) in float64.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import scipy.linalg

from distill import kernels
from distill import kip
from distill import krr


def solve_labels(kernel_fn: Callable, support_x, target_x, target_y, reg: float = 1e-6,
                 batch_size: int = 256, rcond: Optional[float] = None) -> np.ndarray:
  """Y_s = (K_ts (K_ss + lambda I)^-1)^+ Y_t as float64 (n_s, C)."""
  reg = krr.check_reg(reg)
  support_x, target_x = np.asarray(support_x), np.asarray(target_x)
  target_y = np.asarray(target_y, np.float64)
  if target_y.ndim != 2 or len(target_y) != len(target_x):
    raise ValueError(f"target_y must be (n_t, C) with n_t = {len(target_x)}, got {target_y.shape}")
  kip.check_finite(support_x, "label solve support images")
  kip.check_finite(target_x, "label solve target images")
  with kernels.x64():
    k_ss = kernels.kernel_matrix(kernel_fn, support_x, support_x, batch_size)
    k_ts = kernels.kernel_matrix(kernel_fn, target_x, support_x, batch_size)
  n = len(k_ss)
  lam = reg * np.trace(k_ss) / n
  # M = K_ts A  <=>  M^T = A K_st (A symmetric).
  m = scipy.linalg.solve(k_ss + lam * np.eye(n), k_ts.T, assume_a="pos").T
  y_s, *_ = scipy.linalg.lstsq(m, target_y, cond=rcond)
  if not np.isfinite(y_s).all():
    raise ValueError("label solve produced NaN/inf labels (ill-conditioned kernel; raise reg)")
  return y_s


def target_loss(kernel_fn: Callable, support_x, support_y, target_x, target_y,
                reg: float = 1e-6, batch_size: int = 256) -> float:
  """0.5 * mean((K_ts (K_ss + lambda I)^-1 Y_s - Y_t)^2) in float64."""
  import jax.numpy as jnp
  reg = krr.check_reg(reg)
  with kernels.x64():
    k_ss = kernels.kernel_matrix(kernel_fn, support_x, support_x, batch_size)
    k_ts = kernels.kernel_matrix(kernel_fn, target_x, support_x, batch_size)
    pred = krr.krr_predict(jnp.asarray(k_ts), jnp.asarray(k_ss),
                           jnp.asarray(support_y, jnp.float64), reg)
    return float(krr.mse_loss(pred, jnp.asarray(target_y, jnp.float64)))


def label_solve_support(train, images_per_class: int, config, *, seed: int = 0,
                        support: Optional[kip.SupportSet] = None) -> kip.SupportSet:
  """Random class-balanced support images (or `support`'s) with solved labels.

  The target set is the whole training split, or a class-balanced sample of
  `config.label_solve.target_per_class` per class when that is set (> 0).
  """
  reg = krr.check_reg(config["kip"]["reg"])
  ls = config.get("label_solve", {}) if hasattr(config, "get") else {}
  per_class = int((ls or {}).get("target_per_class", 0) or 0)
  kbs = int(config["kip"].get("kernel_batch_size", 256))
  spec = kernels.KernelSpec.from_config(dict(config["kernel"], num_classes=train.num_classes))
  kernel_fn = kernels.make_kernel_fn(spec, train.example_shape)
  if support is None:
    support = kip.init_support(train, images_per_class, seed)
  labels = np.asarray(train.labels)
  pos = (np.arange(len(labels)) if per_class <= 0 else
         kip.target_batch_positions(labels, train.num_classes, per_class, seed, 10**9))
  y_t = krr.centered_one_hot(labels[pos], train.num_classes)
  y_s = solve_labels(kernel_fn, support.x, np.asarray(train.x)[pos], y_t, reg, kbs)
  return support.replace(y=y_s)
