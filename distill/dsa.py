"""Differentiable Siamese Augmentation (DSA; Zhao & Bilen, ICML 2021, arXiv:2102.08259).

A transformation A_w(x) with parameters w is sampled once and applied, as a
differentiable function of the images, to a real batch and a synthetic batch:

    D( grad_theta L(A_w(x_real)), grad_theta L(A_w(x_syn)) )   (gradient matching)
    || mean phi(A_w(x_real)) - mean phi(A_w(x_syn)) ||^2         (distribution matching)

so that the gradient w.r.t. the synthetic images flows through A_w. "Siamese"
means one w for the pair: `siamese_augment(key, real, syn)` draws w from `key`
once (batch-wise: the same w for every image of both batches). Eval-time
augmentation (`augment`) draws w per example, as DSA's non-Siamese mode.

As in the paper's single-transformation mode, each call picks one family of
the strategy string (e.g. 'color_crop_cutout_scale_rotate') uniformly at
random and applies it. Families and parameter ranges (the DSA defaults):

  color   brightness x + (u - 0.5) * 1.0; saturation (x - mean_c) * 2u + mean_c
          (identity for one channel); contrast (x - mean) * (u + 0.5) + mean
  crop    integer translation by t in [-s, s] per spatial axis, s = round(0.125 * size),
          zero fill (1-D: a time shift; `shift` is an alias)
  cutout  a zeroed square (1-D: window) of side round(0.5 * size) at a random centre
  flip    mirror the last spatial axis with probability 0.5 (off for digits)
  scale   per-axis zoom s in [1/1.2, 1.2] about the centre, bilinear, zero padding
  rotate  angle in [-15, 15] degrees, bilinear, zero padding (2-D only)
  noise   x + 0.05 * N(0, 1)-noise (a 1-D analogue; the same pattern in Siamese mode)

Inputs are channels-last: (n, H, W, C) images or (n, L, C) signals. Default
strategies: `STRATEGY_2D` for digits (no flip: digits are not mirror-symmetric)
and `STRATEGY_1D` = 'shift_scale_noise' for MNIST-1D (shift, scale and noise
are the transformations its generator uses).

Parameters are a dict of arrays with static shapes for every family, so
sampling and application jit, vmap over classes and run under `lax.switch`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate", "noise")
ALIASES = {"shift": "crop"}
STRATEGY_2D = "color_crop_cutout_scale_rotate"
STRATEGY_1D = "shift_scale_noise"


@dataclasses.dataclass(frozen=True)
class DSAParams:
  """Ranges of the transformations (DSA's ParamDiffAug defaults)."""
  prob_flip: float = 0.5
  ratio_scale: float = 1.2
  ratio_rotate: float = 15.0
  ratio_crop_pad: float = 0.125
  ratio_cutout: float = 0.5
  ratio_noise: float = 0.05
  brightness: float = 1.0
  saturation: float = 2.0
  contrast: float = 0.5

  @classmethod
  def from_config(cls, cfg) -> "DSAParams":
    if cfg is None:
      return cls()
    names = {f.name for f in dataclasses.fields(cls)}
    cfg = dict(cfg)
    bad = sorted(set(cfg) - names)
    if bad:
      raise ValueError(f"unknown DSA parameters {bad}; known: {sorted(names)}")
    return cls(**cfg)


def parse_strategy(strategy: str, spatial_dims: int) -> tuple:
  """'color_crop' -> ('color', 'crop'); validates names and dimensionality."""
  if not strategy or str(strategy).lower() == "none":
    return ()
  out = []
  for name in str(strategy).split("_"):
    name = ALIASES.get(name, name)
    if name not in FAMILIES:
      raise ValueError(f"unknown DSA transformation {name!r} in strategy {strategy!r}; "
                       f"choose from {FAMILIES + tuple(ALIASES)}")
    if name == "rotate" and spatial_dims != 2:
      raise ValueError(f"DSA 'rotate' needs 2-D images; inputs have {spatial_dims} spatial "
                       f"dimension(s) (use e.g. {STRATEGY_1D!r})")
    out.append(name)
  return tuple(out)


def default_strategy(example_shape: Sequence[int]) -> str:
  return STRATEGY_2D if len(example_shape) == 3 else STRATEGY_1D


# ----------------------------------------------------------------------------
# Sampling.


def sample_params(key, strategy: str, n: int, example_shape: Sequence[int],
                  cfg: DSAParams = DSAParams()) -> dict:
  """Parameters of one call: the chosen family and per-example values of every family.

  `n` = 1 gives batch-wise (Siamese) parameters that broadcast over any batch.
  """
  example_shape = tuple(int(s) for s in example_shape)
  spatial = example_shape[:-1]
  nd = len(spatial)
  fams = parse_strategy(strategy, nd)
  if not fams:
    raise ValueError("sample_params needs a non-empty strategy")
  k = jax.random.split(key, 9)
  shifts = jnp.asarray([int(s * cfg.ratio_crop_pad + 0.5) for s in spatial], jnp.int32)
  cut = [int(s * cfg.ratio_cutout + 0.5) for s in spatial]
  cut_hi = jnp.asarray([s + (1 - c % 2) for s, c in zip(spatial, cut)], jnp.int32)
  u = lambda kk, shape=(n,): jax.random.uniform(kk, shape)
  return {
      "choice": jax.random.randint(k[0], (), 0, len(fams)),
      "color": u(k[1], (n, 3)),
      "crop": jnp.floor(u(k[2], (n, nd)) * (2 * shifts + 1)).astype(jnp.int32) - shifts,
      "cutout": jnp.floor(u(k[3], (n, nd)) * cut_hi).astype(jnp.int32),
      "flip": u(k[4]) < cfg.prob_flip,
      "scale": u(k[5], (n, nd)) * (cfg.ratio_scale - 1.0 / cfg.ratio_scale) + 1.0 / cfg.ratio_scale,
      "rotate": (u(k[6]) - 0.5) * 2.0 * cfg.ratio_rotate / 180.0 * math.pi,
      "noise": jax.random.normal(k[7], (n,) + example_shape),
  }


# ----------------------------------------------------------------------------
# The transformations: differentiable in x.


def _bcast(p, n):
  return jnp.broadcast_to(p, (n,) + p.shape[1:])


def _color(x, p, cfg: DSAParams):
  u = _bcast(p["color"], x.shape[0])
  shape = (x.shape[0],) + (1,) * (x.ndim - 1)
  b, s, c = (u[:, i].reshape(shape) for i in range(3))
  x = x + (b - 0.5) * cfg.brightness
  m = jnp.mean(x, axis=-1, keepdims=True)
  x = (x - m) * (s * cfg.saturation) + m
  m = jnp.mean(x, axis=tuple(range(1, x.ndim)), keepdims=True)
  return (x - m) * (c + cfg.contrast) + m


def _translate_one(img, t):
  """Shift `img` (*spatial, C) by integer t (nd,) with zero fill: out[i] = img[i - t]."""
  spatial = img.shape[:-1]
  pads = [(s, s) for s in spatial] + [(0, 0)]
  big = jnp.pad(img, pads)
  start = [jnp.asarray(s, jnp.int32) - t[i] for i, s in enumerate(spatial)] + [jnp.int32(0)]
  return jax.lax.dynamic_slice(big, start, img.shape)


def _crop(x, p, cfg):
  return jax.vmap(_translate_one)(x, _bcast(p["crop"], x.shape[0]))


def _cutout(x, p, cfg: DSAParams):
  spatial = x.shape[1:-1]
  off = _bcast(p["cutout"], x.shape[0])
  mask = jnp.ones((x.shape[0],) + spatial, x.dtype)
  for d, s in enumerate(spatial):
    size = int(s * cfg.ratio_cutout + 0.5)
    idx = jnp.arange(s)
    lo = off[:, d] - size // 2
    inside = (idx[None, :] >= lo[:, None]) & (idx[None, :] < lo[:, None] + size)
    shape = [x.shape[0]] + [1] * len(spatial)
    shape[1 + d] = s
    mask = mask * (1.0 - inside.reshape(shape).astype(x.dtype))
  return x * mask[..., None]


def _flip(x, p, cfg):
  f = _bcast(p["flip"], x.shape[0]).reshape((x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(f, jnp.flip(x, axis=x.ndim - 2), x)


def _grid(size):
  """Normalised pixel centres in (-1, 1) (align_corners=False)."""
  return (2.0 * jnp.arange(size) + 1.0) / size - 1.0


def _sample_bilinear_one(img, coords):
  """Bilinear sample of img (*spatial, C) at normalised coords (nd, *spatial); zeros outside."""
  spatial = img.shape[:-1]
  nd = len(spatial)
  pix = [((coords[d] + 1.0) * spatial[d] - 1.0) / 2.0 for d in range(nd)]
  lo = [jnp.floor(q) for q in pix]
  frac = [q - l for q, l in zip(pix, lo)]
  out = 0.0
  for corner in range(2 ** nd):
    idx, w = [], 1.0
    valid = True
    for d in range(nd):
      bit = (corner >> d) & 1
      i = lo[d].astype(jnp.int32) + bit
      w = w * (frac[d] if bit else 1.0 - frac[d])
      valid = valid & (i >= 0) & (i < spatial[d])
      idx.append(jnp.clip(i, 0, spatial[d] - 1))
    vals = img[tuple(idx)]  # (*spatial, C)
    out = out + (w * valid)[..., None] * vals
  return out


def _affine(x, mats):
  """Warp each example by a (nd, nd) matrix: input coord = M @ output coord (centred)."""
  spatial = x.shape[1:-1]
  nd = len(spatial)
  # Axis order of torch's affine_grid: coordinate 0 is the last spatial axis (width).
  axes = jnp.meshgrid(*[_grid(s) for s in spatial], indexing="ij")  # per array axis
  xy = jnp.stack(axes[::-1])  # (nd, *spatial): (width, height) order

  def one(img, m):
    src = jnp.tensordot(m, xy, axes=1)  # (nd, *spatial) in (width, height) order
    return _sample_bilinear_one(img, src[::-1])

  return jax.vmap(one)(x, mats)


def _scale(x, p, cfg):
  s = _bcast(p["scale"], x.shape[0])  # (n, nd), axis order of the array
  mats = jax.vmap(jnp.diag)(s[:, ::-1])
  return _affine(x, mats)


def _rotate(x, p, cfg):
  th = _bcast(p["rotate"], x.shape[0])
  c, s = jnp.cos(th), jnp.sin(th)
  mats = jnp.stack([jnp.stack([c, -s], -1), jnp.stack([s, c], -1)], 1)
  return _affine(x, mats)


def _noise(x, p, cfg: DSAParams):
  return x + cfg.ratio_noise * _bcast(p["noise"], x.shape[0]).astype(x.dtype)


_FNS = {"color": _color, "crop": _crop, "cutout": _cutout, "flip": _flip, "scale": _scale,
        "rotate": _rotate, "noise": _noise}


def apply_family(name: str, params: dict, x, cfg: DSAParams = DSAParams()):
  """One named transformation with the given parameters."""
  return _FNS[ALIASES.get(name, name)](x, params, cfg)


def apply(params: dict, x, strategy: str, cfg: DSAParams = DSAParams()):
  """A_w(x): the family `params['choice']` of `strategy` with parameters `params`."""
  fams = parse_strategy(strategy, x.ndim - 2)
  if not fams:
    return x
  branches = [lambda xx, f=f: _FNS[f](xx, params, cfg) for f in fams]
  if len(branches) == 1:
    return branches[0](x)
  return jax.lax.switch(params["choice"], branches, x)


def siamese_augment(key, x_real, x_syn, strategy: str, cfg: DSAParams = DSAParams()):
  """One transformation, sampled once from `key`, applied to both batches."""
  if not parse_strategy(strategy, x_real.ndim - 2):
    return x_real, x_syn
  if x_real.shape[1:] != x_syn.shape[1:]:
    raise ValueError(f"siamese_augment: example shapes differ: {x_real.shape[1:]} vs "
                     f"{x_syn.shape[1:]}")
  params = sample_params(key, strategy, 1, x_real.shape[1:], cfg)
  return apply(params, x_real, strategy, cfg), apply(params, x_syn, strategy, cfg)


def augment(key, x, strategy: str, cfg: DSAParams = DSAParams()):
  """Eval-time DSA: one family per call, parameters drawn per example."""
  if not parse_strategy(strategy, x.ndim - 2):
    return x
  params = sample_params(key, strategy, x.shape[0], x.shape[1:], cfg)
  return apply(params, x, strategy, cfg)
