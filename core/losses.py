"""Per-example losses of a classifier: cross-entropy and squared error, on labels or soft targets.

Shapes: logits (n, C); targets (n,) int labels or (n, C) soft targets; returns (n,) float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

LOSSES = ("cross_entropy", "mse")


def check_loss(loss: str) -> str:
  if loss not in LOSSES:
    raise ValueError(f"unknown loss {loss!r}; choose from {LOSSES}")
  return loss


def cross_entropy(logits, targets):
  """Per-example cross-entropy; targets are int labels (n,) or soft targets (n, C)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  if targets.ndim == 1:
    return -jnp.take_along_axis(logp, targets[:, None].astype(jnp.int32), axis=1)[:, 0]
  return -jnp.sum(targets * logp, axis=-1)


def mse(logits, targets):
  """Per-example 0.5 * ||f(x) - t||^2 with t one-hot (int labels) or soft targets."""
  if targets.ndim == 1:
    targets = jax.nn.one_hot(targets, logits.shape[-1])
  return 0.5 * jnp.sum((logits.astype(jnp.float32) - targets) ** 2, axis=-1)


def per_example_loss(logits, targets, loss: str = "cross_entropy"):
  if loss == "cross_entropy":
    return cross_entropy(logits, targets)
  if loss == "mse":
    return mse(logits, targets)
  raise ValueError(f"unknown loss {loss!r}; choose from {LOSSES}")


def margin(logits, labels):
  """Per-example logit margin: the labelled class's logit minus the largest other one (AUM)."""
  labels = labels.astype(jnp.int32)
  own = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
  other = jnp.max(jnp.where(jax.nn.one_hot(labels, logits.shape[-1]) > 0, -jnp.inf, logits), -1)
  return own - other


def dense_targets(y: np.ndarray, num_classes: int) -> np.ndarray:
  """Float (n, C) targets: one-hot for int labels, soft targets as given."""
  if y.ndim == 1:
    return np.eye(num_classes, dtype=np.float32)[y]
  return y.astype(np.float32)
