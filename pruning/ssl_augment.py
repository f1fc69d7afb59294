"""Augmentations for self-supervised encoders, as pure functions of (key, example).

Two views of every example are drawn for SimCLR / SwAV (`pruning.ssl`). The key of view v of
the example with stable id i at training step t is

    key(seed, t, v, i) = fold_in(fold_in(fold_in(PRNGKey(seed), t), v), i),

so a view depends only on (seed, step, view, example id, example): never on how the batch
is split over devices or hosts, nor on the example's position in the batch.  Each op of a
pipeline gets its own sub-key ``fold_in(key, op_index)``; the ops run in the order given.

Signals (MNIST-1D, x of shape (L, C), L = 40): the kinds of transformation the MNIST-1D
generator (Greydanus 2020, ``mnist1d.transform``) applies to its templates, re-applied to
the generated (standardised) signal:

  * ``circular_shift``  x_t <- x_{(t - k) mod L}, k ~ U{-max_shift..max_shift} (the generator
                        translates circularly);
  * ``pad_shift``       the same shift with zero fill instead of wrap-around;
  * ``scale``           x <- (1 + scale * (u - 1/2)) x, u ~ U(0, 1) (generator: 0.4);
  * ``shear``           x_t <- x_t - c (t / (L-1) - 1/2), c = shear * (u - 1/2) (generator 0.75);
  * ``stretch``         time dilation about the centre by a = 1 + stretch * (u - 1/2),
                        linear interpolation, zero outside the signal;
  * ``corr_noise``      + sigma * (g * n), n ~ N(0, I), g a Gaussian kernel of width 2 samples
                        (the generator's correlated noise, scale 0.25);
  * ``iid_noise``       + sigma * n.

Images (8x8 digits, x of shape (H, W, C)):

  * ``shift``           integer shift by up to ``max_shift`` pixels in each axis, zero fill
                        (= random crop of the zero-padded image);
  * ``rotate``          rotation by theta ~ U(-max_degrees, max_degrees) about the centre
                        (bilinear, zero outside);
  * ``elastic``         displacement field alpha * (g * n) (Simard et al. 2003), bilinear;
  * ``scale``, ``iid_noise`` as for signals.

`make_augment(config, example_shape)` validates a pipeline and returns ``fn(key, x) -> x``;
`two_views(fn, seed, step, ids, x)` returns the two augmented batches (vmapped).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

SIGNAL_OPS = ("circular_shift", "pad_shift", "scale", "shear", "stretch", "corr_noise",
              "iid_noise")
IMAGE_OPS = ("shift", "rotate", "elastic", "scale", "iid_noise")

# Magnitudes (in the units of the standardised inputs) used when a config leaves them out.
DEFAULTS = dict(max_shift=8, scale=0.4, shear=0.75, stretch=0.3, corr_noise=0.25,
                iid_noise=0.05, max_degrees=15.0, elastic_alpha=0.6, elastic_sigma=1.5)

# Default pipelines per data family.
DEFAULT_SIGNAL_OPS = ("circular_shift", "scale", "shear", "corr_noise")
DEFAULT_IMAGE_OPS = ("shift", "rotate", "iid_noise")


def _gaussian_kernel(sigma: float) -> np.ndarray:
  r = max(int(math.ceil(3 * sigma)), 1)
  t = np.arange(-r, r + 1, dtype=np.float64)
  g = np.exp(-0.5 * (t / sigma) ** 2)
  return (g / g.sum()).astype(np.float32)


def _conv_same(v, kernel):
  """Convolution of a 1-D v with an odd-length kernel, output the length of v (zero boundary;
  the kernel may be longer than v)."""
  r = (kernel.shape[0] - 1) // 2
  return jnp.convolve(v, kernel, mode="full")[r:r + v.shape[0]]


def _smooth_1d(n, kernel):
  """'same' convolution of each column of n (L, C) with a 1-D kernel (zero boundary)."""
  return jax.vmap(lambda col: _conv_same(col, kernel), in_axes=1, out_axes=1)(n)


def _smooth_2d(n, kernel):
  """Separable 'same' Gaussian smoothing of an (H, W) field."""
  n = jax.vmap(lambda r: _conv_same(r, kernel))(n)
  return jax.vmap(lambda c: _conv_same(c, kernel), in_axes=1, out_axes=1)(n)


def _shift_1d(x, k, wrap: bool):
  L = x.shape[0]
  src = jnp.arange(L) - k
  out = x[jnp.mod(src, L)]
  if wrap:
    return out
  valid = (src >= 0) & (src < L)
  return jnp.where(valid[:, None], out, 0.0)


def _interp_1d(x, pos):
  """Linear interpolation of x (L, C) at fractional positions pos (L,), zero outside [0, L-1]."""
  L = x.shape[0]
  lo = jnp.floor(pos)
  w = (pos - lo)[:, None]
  lo_i = jnp.clip(lo.astype(jnp.int32), 0, L - 1)
  hi_i = jnp.clip(lo_i + 1, 0, L - 1)
  out = (1 - w) * x[lo_i] + w * x[hi_i]
  valid = (pos >= 0) & (pos <= L - 1)
  return jnp.where(valid[:, None], out, 0.0)


def _warp_2d(x, rows, cols):
  """Bilinear resampling of x (H, W, C) at coordinates (rows, cols) (H, W); zero outside."""
  from jax.scipy.ndimage import map_coordinates
  return jnp.stack([map_coordinates(x[..., c], [rows, cols], order=1, mode="constant",
                                    cval=0.0) for c in range(x.shape[-1])], axis=-1)


def _op(name: str, p: dict, shape: tuple) -> Callable:
  """One augmentation op as fn(key, x) -> x for examples of `shape`."""
  if name in ("circular_shift", "pad_shift"):
    m = int(p["max_shift"])
    return lambda key, x: _shift_1d(x, jax.random.randint(key, (), -m, m + 1),
                                    wrap=name == "circular_shift")
  if name == "scale":
    s = float(p["scale"])
    return lambda key, x: x * (1.0 + s * (jax.random.uniform(key) - 0.5))
  if name == "shear":
    s = float(p["shear"])
    ramp = jnp.linspace(-0.5, 0.5, shape[0])[:, None]
    return lambda key, x: x - s * (jax.random.uniform(key) - 0.5) * ramp
  if name == "stretch":
    s = float(p["stretch"])
    L = shape[0]
    c = (L - 1) / 2.0

    def stretch(key, x):
      a = 1.0 + s * (jax.random.uniform(key) - 0.5)
      return _interp_1d(x, c + (jnp.arange(L) - c) / a)
    return stretch
  if name == "corr_noise":
    s = float(p["corr_noise"])
    kern = jnp.asarray(_gaussian_kernel(2.0))
    return lambda key, x: x + s * _smooth_1d(jax.random.normal(key, x.shape), kern)
  if name == "iid_noise":
    s = float(p["iid_noise"])
    return lambda key, x: x + s * jax.random.normal(key, x.shape)
  if name == "shift":
    m = int(p["max_shift"])
    H, W, C = shape

    def shift(key, x):
      k1, k2 = jax.random.split(key)
      xp = jnp.pad(x, ((m, m), (m, m), (0, 0)))
      dy = jax.random.randint(k1, (), 0, 2 * m + 1)
      dx = jax.random.randint(k2, (), 0, 2 * m + 1)
      return jax.lax.dynamic_slice(xp, (dy, dx, 0), (H, W, C))
    return shift
  if name == "rotate":
    deg = float(p["max_degrees"])
    H, W = shape[:2]
    r0, c0 = (H - 1) / 2.0, (W - 1) / 2.0
    rr, cc = jnp.meshgrid(jnp.arange(H, dtype=jnp.float32) - r0,
                          jnp.arange(W, dtype=jnp.float32) - c0, indexing="ij")

    def rotate(key, x):
      th = jnp.deg2rad(jax.random.uniform(key, minval=-deg, maxval=deg))
      cs, sn = jnp.cos(th), jnp.sin(th)
      return _warp_2d(x, r0 + cs * rr - sn * cc, c0 + sn * rr + cs * cc)
    return rotate
  if name == "elastic":
    alpha, sigma = float(p["elastic_alpha"]), float(p["elastic_sigma"])
    H, W = shape[:2]
    kern = jnp.asarray(_gaussian_kernel(sigma))
    rr, cc = jnp.meshgrid(jnp.arange(H, dtype=jnp.float32), jnp.arange(W, dtype=jnp.float32),
                          indexing="ij")

    def elastic(key, x):
      k1, k2 = jax.random.split(key)
      dr = _smooth_2d(jax.random.normal(k1, (H, W)), kern)
      dc = _smooth_2d(jax.random.normal(k2, (H, W)), kern)
      norm = jnp.sqrt(jnp.mean(dr ** 2 + dc ** 2) / 2) + 1e-6  # unit rms displacement
      return _warp_2d(x, rr + alpha * dr / norm, cc + alpha * dc / norm)
    return elastic
  raise AssertionError(name)


def _get(cfg, key, default=None):
  if cfg is None:
    return default
  v = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
  return default if v is None else v


def family(example_shape: Sequence[int]) -> str:
  """'signal' for (L, C) examples, 'image' for (H, W, C)."""
  if len(example_shape) == 2:
    return "signal"
  if len(example_shape) == 3:
    return "image"
  raise ValueError(f"augmentations need examples of shape (L, C) or (H, W, C), got "
                   f"{tuple(example_shape)}")


def resolve_ops(config, example_shape: Sequence[int]) -> tuple:
  """The validated op names of a pipeline (config.ops, or the family's default)."""
  fam = family(example_shape)
  allowed = SIGNAL_OPS if fam == "signal" else IMAGE_OPS
  ops = _get(config, "ops")
  if ops is None or (isinstance(ops, str) and ops == "default"):
    ops = DEFAULT_SIGNAL_OPS if fam == "signal" else DEFAULT_IMAGE_OPS
  if isinstance(ops, str):
    ops = tuple(o.strip() for o in ops.split(",") if o.strip())
  ops = tuple(ops)
  for o in ops:
    if o not in SIGNAL_OPS + IMAGE_OPS:
      raise ValueError(f"unknown augmentation {o!r}; for {fam}s choose from {allowed}")
    if o not in allowed:
      raise ValueError(f"augmentation {o!r} does not apply to {fam} examples of shape "
                       f"{tuple(example_shape)}; choose from {allowed}")
  return ops


def make_augment(config, example_shape: Sequence[int]) -> Callable:
  """fn(key, x) -> augmented x for one example of `example_shape` (see module docstring).

  `config`: dict / ConfigDict with ``ops`` (names, comma string, or 'default') and optional
  magnitudes (keys of `DEFAULTS`); an empty ``ops`` means the identity.
  """
  shape = tuple(int(s) for s in example_shape)
  ops = resolve_ops(config, shape)
  params = {k: float(_get(config, k, v)) for k, v in DEFAULTS.items()}
  for k, v in params.items():
    if not np.isfinite(v) or v < 0:
      raise ValueError(f"augmentation magnitude {k}={v} must be finite and >= 0")
  fns = [_op(o, params, shape) for o in ops]

  def augment(key, x):
    for j, f in enumerate(fns):
      x = f(jax.random.fold_in(key, j), x)
    return x

  return augment


def example_keys(seed, step, view: int, ids):
  """(n, 2) uint32 keys: key(seed, step, view, id) for each id (works under jit / pmap)."""
  base = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), step), view)
  return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(ids).astype(jnp.uint32))


def two_views(augment: Callable, seed, step, ids, x):
  """The two augmented views (each shaped like x) of a batch x with example ids `ids`."""
  v1 = jax.vmap(augment)(example_keys(seed, step, 0, ids), x)
  v2 = jax.vmap(augment)(example_keys(seed, step, 1, ids), x)
  return v1, v2
