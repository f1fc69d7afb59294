"""Kernel ridge regression with a support set (float64).

Prediction for targets t from a support set s (Nguyen, Chen, Lee 2021, eq. 1):

    Y_t_hat = K_ts (K_ss + lambda I)^-1 Y_s,   lambda = reg * trace(K_ss) / n_s

Targets are centred one-hot vectors (one_hot - 1/C); the loss is
0.5 * mean((Y_t_hat - Y_t)^2) over all entries, as in the KIP notebook.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_reg(reg: float) -> float:
  reg = float(reg)
  if not np.isfinite(reg) or reg <= 0:
    raise ValueError(f"reg must be a finite number > 0, got {reg}")
  return reg


def centered_one_hot(labels, num_classes: int):
  """one_hot(labels) - 1/C as float64 numpy (n, C)."""
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels must be 1-D ints, got shape {labels.shape}")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"labels must lie in [0, {num_classes}), got range "
                     f"[{labels.min()}, {labels.max()}]")
  return np.eye(num_classes, dtype=np.float64)[labels] - 1.0 / num_classes


def targets_of(y, num_classes: int):
  """Regression targets: int labels -> centred one-hot; soft (n, C) targets as given."""
  y = np.asarray(y)
  if y.ndim == 1:
    return centered_one_hot(y, num_classes)
  if y.ndim != 2 or y.shape[1] != num_classes:
    raise ValueError(f"targets must be (n,) labels or (n, {num_classes}), got {y.shape}")
  return y.astype(np.float64)


def ridge(k_ss, reg: float):
  """lambda = reg * trace(K_ss) / n_s."""
  return reg * jnp.trace(k_ss) / k_ss.shape[0]


def krr_solve(k_ss, y_s, reg: float):
  """alpha = (K_ss + lambda I)^-1 Y_s (differentiable; K_ss symmetric PSD)."""
  n = k_ss.shape[0]
  if k_ss.shape != (n, n) or y_s.shape[0] != n:
    raise ValueError(f"krr_solve: K_ss {k_ss.shape} and Y_s {y_s.shape} do not match")
  a = k_ss + ridge(k_ss, reg) * jnp.eye(n, dtype=k_ss.dtype)
  return jax.scipy.linalg.solve(a, y_s, assume_a="pos")


def krr_predict(k_ts, k_ss, y_s, reg: float):
  """Y_t_hat = K_ts (K_ss + lambda I)^-1 Y_s."""
  if k_ts.shape[1] != k_ss.shape[0]:
    raise ValueError(f"krr_predict: K_ts {k_ts.shape} has {k_ts.shape[1]} columns, "
                     f"K_ss has {k_ss.shape[0]} rows")
  return k_ts @ krr_solve(k_ss, y_s, reg)


def mse_loss(pred, target):
  """0.5 * mean squared error over all entries (the KIP loss)."""
  return 0.5 * jnp.mean((pred - target) ** 2)


def accuracy(pred, labels):
  return jnp.mean(jnp.argmax(pred, axis=-1) == labels)


def krr_evaluate(kernel_fn, support_x, support_y, x, labels, reg: float = 1e-6,
                 batch_size: int = 256) -> dict:
  """KRR test metrics of a support set: {'accuracy', 'mse', 'loss'}.

  `kernel_fn(x1, x2)` as from `kernels.make_kernel_fn`; `support_y` (n_s, C)
  targets; `labels` (n,) ints. 'mse' = mean((pred - centred one-hot)^2) over
  entries, 'loss' = mse / 2. Raises ValueError on NaN predictions.
  """
  from distill import kernels
  check_reg(reg)
  support_y = np.asarray(support_y, np.float64)
  if support_y.ndim != 2 or len(support_y) != len(support_x):
    raise ValueError(f"support_y must be (n_s, C) with n_s = {len(support_x)}, got {support_y.shape}")
  num_classes = support_y.shape[1]
  with kernels.x64():
    k_ss = kernels.kernel_matrix(kernel_fn, support_x, support_x, batch_size)
    k_ts = kernels.kernel_matrix(kernel_fn, x, support_x, batch_size)
    pred = np.asarray(krr_predict(jnp.asarray(k_ts), jnp.asarray(k_ss), jnp.asarray(support_y), reg))
  if not np.isfinite(pred).all():
    raise ValueError("krr_evaluate: NaN/inf in KRR predictions (support set or kernel not finite)")
  target = centered_one_hot(labels, num_classes)
  mse = float(np.mean((pred - target) ** 2))
  return {"accuracy": float(np.mean(np.argmax(pred, 1) == np.asarray(labels))),
          "mse": mse, "loss": mse / 2}
