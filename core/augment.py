"""Training-time augmentation of image batches: random crop with zero padding, horizontal flip.

Per example, the rng is `fold_in(step_rng, example id)`, so the transformation of an example
depends on (seed, step, id) only: the same on 1 or 8 devices and after a resume.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def augment_batch(x, ids, rng, crop_padding: int, flip: bool):
  """x (n, H, W, C) -> augmented x; other ranks (signals) pass through unchanged."""
  if x.ndim != 4 or (not crop_padding and not flip):
    return x

  def one(xi, i):
    r = jax.random.fold_in(rng, i)
    r1, r2, r3 = jax.random.split(r, 3)
    if crop_padding:
      p = crop_padding
      h, w = xi.shape[0], xi.shape[1]
      xp = jnp.pad(xi, ((p, p), (p, p), (0, 0)))
      dy = jax.random.randint(r1, (), 0, 2 * p + 1)
      dx = jax.random.randint(r2, (), 0, 2 * p + 1)
      xi = jax.lax.dynamic_slice(xp, (dy, dx, 0), (h, w, xi.shape[2]))
    if flip:
      xi = jnp.where(jax.random.bernoulli(r3), xi[:, ::-1], xi)
    return xi

  return jax.vmap(one)(x, ids.astype(jnp.uint32))
