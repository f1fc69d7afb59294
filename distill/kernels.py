"""Infinite-width kernels (NTK / NNGP) from `neural_tangents.stax`.

Architectures
  * ``fc``   - Flatten -> [Dense -> ReLU] x depth -> Dense (the KIP notebook's
    `FullyConnectedNetwork`; W_std=sqrt(2), b_std=0.1, NTK parameterisation).
  * ``conv`` - the KIP / DC ConvNet: [Conv 3x3 -> ReLU -> AvgPool 2x2] x depth
    -> Flatten -> Dense. Inputs of shape (n, L, 1) (MNIST-1D) get the 1-D
    variant (Conv 3, AvgPool 2).

`kernel_matrix` evaluates a kernel between large sets in blocks with
`nt.batch` so memory stays bounded; `analytic_fc_kernel` is our own closed form
(arc-cosine kernel recursion) used to check the FC kernels.

Everything that uses float64 runs inside `x64()` (a context manager wrapping
`jax.experimental.enable_x64`), so the rest of the process keeps float32.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from distill import nt_compat  # noqa: F401  (first: neural-tangents 0.6.5 on current JAX)
import neural_tangents as nt
from neural_tangents import stax

ARCHITECTURES = ("fc", "conv")
KERNEL_TYPES = ("ntk", "nngp")


def x64():
  """Context manager: float64 JAX inside, the process default outside."""
  if hasattr(jax, "enable_x64"):  # newer JAX: jax.experimental.enable_x64 is gone (0.10)
    return jax.enable_x64(True)
  from jax.experimental import enable_x64
  return enable_x64()


@dataclasses.dataclass(frozen=True)
class KernelSpec:
  """Which infinite-width network gives the kernel."""
  architecture: str = "fc"
  depth: int = 3
  kernel_type: str = "ntk"
  W_std: float = math.sqrt(2.0)
  b_std: float = 0.1
  parameterization: str = "ntk"
  num_classes: int = 10
  width: int = 128  # only matters for finite-network `init_fn`/`apply_fn`

  def __post_init__(self):
    if self.architecture not in ARCHITECTURES:
      raise ValueError(f"unknown architecture {self.architecture!r}; choose from {ARCHITECTURES}")
    if self.kernel_type not in KERNEL_TYPES:
      raise ValueError(f"unknown kernel_type {self.kernel_type!r}; choose from {KERNEL_TYPES}")
    if int(self.depth) < 1:
      raise ValueError(f"depth must be >= 1, got {self.depth}")
    if self.parameterization not in ("ntk", "standard"):
      raise ValueError(f"unknown parameterization {self.parameterization!r}")

  @classmethod
  def from_config(cls, cfg) -> "KernelSpec":
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(cfg).items() if k in names})


def fc_network(depth: int, W_std: float, b_std: float, parameterization: str = "ntk",
               num_classes: int = 10, width: int = 128):
  """stax (init_fn, apply_fn, kernel_fn) of a ReLU MLP with `depth` hidden layers."""
  layers = [stax.Flatten()]
  for _ in range(depth):
    layers += [stax.Dense(width, W_std, b_std, parameterization=parameterization), stax.Relu()]
  layers += [stax.Dense(num_classes, W_std, b_std, parameterization=parameterization)]
  return stax.serial(*layers)


def conv_network(depth: int, W_std: float, b_std: float, parameterization: str = "ntk",
                 num_classes: int = 10, width: int = 128, spatial_dims: int = 2):
  """KIP/DC ConvNet: [Conv 3^d (SAME) -> ReLU -> AvgPool 2^d] x depth -> Dense."""
  if spatial_dims not in (1, 2):
    raise ValueError(f"conv kernels support 1-D or 2-D inputs, got spatial_dims={spatial_dims}")
  filt, pool = (3,) * spatial_dims, (2,) * spatial_dims
  dn = ("NWC", "WIO", "NWC") if spatial_dims == 1 else ("NHWC", "HWIO", "NHWC")
  layers = []
  for _ in range(depth):
    layers += [stax.Conv(width, filt, padding="SAME", W_std=W_std, b_std=b_std,
                         parameterization=parameterization, dimension_numbers=dn),
               stax.Relu(),
               stax.AvgPool(pool, strides=pool, padding="VALID")]
  layers += [stax.Flatten(),
             stax.Dense(num_classes, W_std, b_std, parameterization=parameterization)]
  return stax.serial(*layers)


def network(spec: KernelSpec, example_shape: Sequence[int]):
  """(init_fn, apply_fn, kernel_fn) for `spec` and inputs of `example_shape`."""
  if spec.architecture == "fc":
    return fc_network(spec.depth, spec.W_std, spec.b_std, spec.parameterization,
                      spec.num_classes, spec.width)
  spatial_dims = len(example_shape) - 1
  spatial = example_shape[:-1]
  if min(spatial) < 2 ** spec.depth:
    raise ValueError(f"conv depth {spec.depth} pools {2 ** spec.depth}x, too much for inputs "
                     f"of spatial shape {tuple(spatial)}")
  return conv_network(spec.depth, spec.W_std, spec.b_std, spec.parameterization,
                      spec.num_classes, spec.width, spatial_dims)


def make_kernel_fn(spec: KernelSpec, example_shape: Sequence[int]) -> Callable:
  """Jitted `k(x1, x2) -> (n1, n2)` array of the spec's kernel type."""
  if spec.architecture != "fc":
    nt_compat.check_conv_kernels_safe(f"the {spec.architecture} kernel")
  _, _, kernel_fn = network(spec, tuple(example_shape))
  get = spec.kernel_type

  @jax.jit
  def k(x1, x2):
    return kernel_fn(x1, x2, get)
  return k


def _pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
  r = (-len(x)) % multiple
  if r == 0:
    return x
  return np.concatenate([x, np.repeat(x[:1], r, axis=0)], axis=0)


def kernel_matrix(kernel_fn: Callable, x1, x2, batch_size: int = 256) -> np.ndarray:
  """K(x1, x2) as a numpy array, computed in blocks with `nt.batch`.

  `kernel_fn(x1, x2)` returns an array (see `make_kernel_fn`). Rows are padded to
  a common block size (nt.batch needs equal blocks) and cut off afterwards.
  Runs in float64; call it inside `x64()` (it enters the context itself too).
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  x1, x2 = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
  if x1.shape[1:] != x2.shape[1:]:
    raise ValueError(f"kernel inputs have different example shapes: {x1.shape[1:]} vs {x2.shape[1:]}")
  n1, n2 = len(x1), len(x2)
  b = max(1, min(batch_size, n1, n2))
  with x64():
    # store_on_device=False moves blocks to jax.devices('cpu')[0], which on a multi-process
    # run belongs to process 0 only; there, keep them on this process's default device.
    batched = nt.batch(kernel_fn, batch_size=b, device_count=0,
                       store_on_device=jax.process_count() > 1)
    k = batched(jnp.asarray(_pad_rows(x1, b)), jnp.asarray(_pad_rows(x2, b)))
    return np.asarray(k)[:n1, :n2]


# ----------------------------------------------------------------------------
# Closed form of the FC ReLU kernels (arc-cosine recursion, Cho & Saul 2009;
# NTK recursion of Jacot et al. 2018 / Arora et al. 2019) for checking NT.


def safe_arccos(c):
  """arccos with its argument clipped to [-1, 1] and a finite gradient at +-1.

  The double `where` keeps NaNs (0 * inf from d/dc arccos at c = +-1, i.e. on the
  diagonal of K(X, X)) out of the backward pass.
  """
  inside = jnp.abs(c) < 1.0
  c_in = jnp.where(inside, c, 0.0)
  return jnp.where(inside, jnp.arccos(c_in), jnp.where(c > 0, 0.0, jnp.pi))


def analytic_fc_kernel(x1, x2=None, depth: int = 3, W_std: float = math.sqrt(2.0),
                       b_std: float = 0.1):
  """(nngp, ntk) of `fc_network(depth, ...)` in NTK parameterisation, closed form.

  `x2=None` means K(x1, x1): the diagonal then comes from the same product as the
  off-diagonal entries, so c = 1 exactly there (theta = 0, no rounding noise of
  order sqrt(machine eps) that arccos(1 - eps) would give).

  With q = sigma_w^2, s = sigma_b^2 and d the input size:
    K^0(x, x')   = q <x, x'> / d + s,        Theta^0 = K^0
    c            = K^l(x, x') / sqrt(K^l(x, x) K^l(x', x')),  theta = arccos(c)
    K^{l+1}      = q sqrt(K^l(x,x) K^l(x',x')) (sin theta + (pi - theta) c) / (2 pi) + s
    Theta^{l+1}  = K^{l+1} + q (pi - theta) / (2 pi) Theta^l
  """
  same = x2 is None
  x1 = jnp.reshape(x1, (x1.shape[0], -1))
  x2 = x1 if same else jnp.reshape(x2, (x2.shape[0], -1))
  d = x1.shape[1]
  q, s = W_std ** 2, b_std ** 2
  k12 = q * x1 @ x2.T / d + s
  if same:
    k11 = k22 = jnp.diagonal(k12)
  else:
    k11 = q * jnp.sum(x1 * x1, axis=1) / d + s
    k22 = q * jnp.sum(x2 * x2, axis=1) / d + s
  ntk = k12
  for _ in range(depth):
    norm = jnp.sqrt(k11[:, None] * k22[None, :])
    c = k12 / norm
    theta = safe_arccos(c)
    dot = (jnp.pi - theta) / (2 * jnp.pi)
    k12 = q * norm * (jnp.sin(theta) + (jnp.pi - theta) * jnp.clip(c, -1.0, 1.0)) / (2 * jnp.pi) + s
    if same:
      k11 = k22 = jnp.diagonal(k12)
    else:
      k11 = q * k11 / 2 + s
      k22 = q * k22 / 2 + s
    ntk = k12 + q * dot * ntk
  return k12, ntk
