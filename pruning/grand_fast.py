"""GraNd (Paul et al. 2021) at about the cost of one batched backward pass.

GraNd_i = ||d loss(f(x_i), y_i) / d theta||_2 over all parameters. For a layer z = a W + b
(Dense) the per-example gradient is  dW_i = sum_t a_{i,t}^T g_{i,t},  db_i = sum_t g_{i,t},
with a the layer input, g = d loss_i / d z the output gradient and t the non-batch positions
(none for a plain Dense: ||dW_i||_F^2 = ||a_i||^2 ||g_i||^2, Goodfellow 2015). A Conv is a Dense
on im2col patches: dW_i = P_i^T g_i with P_i (positions, k * c_in) the patches of a_i
(strided slices of the padded input, one per kernel offset). So one
forward pass records every Dense / Conv input a, one backward pass w.r.t. zero perturbations
added to every layer output gives all g (in eval mode example i's loss depends only on z_i,
so the gradient of the summed loss is each example's own), and the norms follow from a and g
without per-example gradients of the whole network (Conv layers form the (k * c_in, c_out)
per-example kernel gradient of that layer only, in one batched matmul).

Models with other parameters (BatchNorm, LayerNorm, embeddings), shared layers, grouped or
input-dilated convolutions fall back to the chunked vmap(grad) path
(`pruning.grand.grand_scores`) for the whole model, and `grand_scores_fast` says so through
`last_path()`.  Batches are read through `dataset.gather` (in memory or streamed record
files), padded to the device count and masked (`pruning.grand.score_all_rows`), pmapped over
devices (`core.parallel`).
Shapes: x (b, *example_shape), scores (n,) aligned with dataset rows.
"""
from __future__ import annotations

import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from core import parallel
from core.losses import dense_targets, per_example_loss
from pruning import grand

_LAST = {"path": None}
_CHECKED: dict = {}  # (model, variable shapes, example shape) -> None | why unsupported


class _Unsupported(Exception):
  pass


def last_path() -> Optional[str]:
  """'activations' or 'vmap_fallback: <why>' for the last grand_scores_fast call."""
  return _LAST["path"]


def _layers(model, variables, x):
  """{path: (kind, module attrs)} of every Dense / Conv call; raises _Unsupported."""
  found = {}

  def icpt(next_fun, args, kwargs, ctx):
    m = ctx.module
    if ctx.method_name == "__call__" and type(m) in (nn.Dense, nn.Conv):
      key = "/".join(m.path)
      if key in found:
        raise _Unsupported(f"layer {key} is called more than once")
      found[key] = type(m).__name__
      if isinstance(m, nn.Conv):
        _conv_geometry(m, args[0].shape[1:-1])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(icpt):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  for path, _ in flat:
    names = [getattr(p, "key", str(p)) for p in path]
    if "/".join(names[:-1]) not in found or names[-1] not in ("kernel", "bias"):
      raise _Unsupported(f"parameter {'/'.join(names)} is not a Dense / Conv kernel or bias")
  return found


def _conv_geometry(m, in_sp):
  """(pads, strides, kernel dilation) of a flax Conv on inputs of spatial shape in_sp."""
  nd = len(in_sp)
  if m.feature_group_count != 1 or (m.input_dilation not in (None, 1)
                                    and any(d != 1 for d in np.atleast_1d(m.input_dilation))):
    raise _Unsupported("grouped or input-dilated convolution")
  if getattr(m, "mask", None) is not None:
    raise _Unsupported("masked convolution")
  strides = m.strides if m.strides is not None else 1
  strides = (strides,) * nd if isinstance(strides, int) else tuple(strides)
  dil = m.kernel_dilation if m.kernel_dilation is not None else 1
  dil = (dil,) * nd if isinstance(dil, int) else tuple(dil)
  ks = tuple(m.kernel_size)
  pad = m.padding
  if isinstance(pad, str):
    if pad.upper() not in ("SAME", "VALID"):
      raise _Unsupported(f"padding {pad!r}")
    eff = tuple((k - 1) * d + 1 for k, d in zip(ks, dil))  # lax's pads, dilated kernel
    pad = jax.lax.padtype_to_pads(in_sp, eff, strides, pad.upper())
  elif isinstance(pad, int):
    pad = [(pad, pad)] * nd
  else:
    pad = [(p, p) if isinstance(p, int) else tuple(p) for p in pad]
  if len(pad) != nd or len(strides) != nd or len(dil) != nd or len(ks) != nd:
    raise _Unsupported(f"convolution geometry {pad}, {strides}, {dil}, {ks}")
  return pad, strides, dil


def _conv_patches(m, a):
  nd = a.ndim - 2
  ks = tuple(m.kernel_size)
  pad, strides, dil = _conv_geometry(m, a.shape[1:-1])
  a = jnp.pad(a, [(0, 0)] + [tuple(p) for p in pad] + [(0, 0)])
  out_sp = tuple((a.shape[1 + i] - (ks[i] - 1) * dil[i] - 1) // strides[i] + 1 for i in range(nd))
  # im2col by strided slices (one per kernel offset): (b, *out_sp, K, c_in).
  cols = []
  for off in np.ndindex(*ks):
    start = (0,) + tuple(o * d for o, d in zip(off, dil)) + (0,)
    limit = (a.shape[0],) + tuple(st + (n - 1) * s + 1 for st, n, s in
                                  zip(start[1:-1], out_sp, strides)) + (a.shape[-1],)
    cols.append(jax.lax.slice(a, start, limit, (1,) + strides + (1,)))
  return jnp.stack(cols, axis=-2)


def _layer_sq_norm(m, a, g):
  """Per-example squared norm of this layer's kernel (and bias) gradient."""
  b = a.shape[0]
  a = a.astype(jnp.float32)
  g = g.astype(jnp.float32)
  if isinstance(m, nn.Conv):
    p = _conv_patches(m, a)
    p = p.reshape(b, -1, p.shape[-2] * p.shape[-1])
  else:
    p = a.reshape(b, -1, a.shape[-1])
  gg = g.reshape(b, -1, g.shape[-1])
  npos, kk, cc = p.shape[1], p.shape[2], gg.shape[2]
  if npos == 1:  # ||a^T g||_F^2 = ||a||^2 ||g||^2
    k = jnp.sum(p[:, 0] ** 2, -1) * jnp.sum(gg[:, 0] ** 2, -1)
  elif npos * npos * max(kk, cc) <= 32768:
    # Gram form sum_{p,q} (a_p . a_q)(g_p . g_q) by broadcasting: fastest for few positions
    # (measured on CPU: tiny batched matmuls are slow there).
    k = jnp.sum(jnp.sum(p[:, :, None] * p[:, None], -1) * jnp.sum(gg[:, :, None] * gg[:, None], -1),
                axis=(1, 2))
  elif npos * (kk + cc) <= kk * cc:  # Gram form with matmuls: fewer flops than dW_i itself
    k = jnp.sum(jnp.einsum("bpk,bqk->bpq", p, p) * jnp.einsum("bpc,bqc->bpq", gg, gg),
                axis=(1, 2))
  else:  # the layer's own per-example gradient dW_i = P_i^T g_i (K, C)
    k = jnp.sum(jnp.einsum("bpk,bpc->bkc", p, gg) ** 2, axis=(1, 2))
  if m.use_bias:
    k = k + jnp.sum(jnp.sum(gg, axis=1) ** 2, -1)
  return k


@functools.lru_cache(maxsize=16)
def _p_fast(model, loss: str, centered: bool, devices: tuple):
  def fn(params, rest, init_variables, x, y, pos):
    variables = {"params": params, **rest}
    init_logits = (jax.lax.stop_gradient(model.apply(init_variables, x, train=False))
                   if centered else 0.0)

    def forward(eps, record):
      """Summed loss; records each Dense / Conv input (and, without eps, the module and its
      output shape); with eps adds eps[layer] to each layer output."""
      acts = {}

      def icpt(next_fun, args, kwargs, ctx):
        m = ctx.module
        out = next_fun(*args, **kwargs)
        if ctx.method_name == "__call__" and type(m) in (nn.Dense, nn.Conv):
          key = "/".join(m.path)
          acts[key] = args[0]
          if eps is None:
            record[key] = (m, jax.ShapeDtypeStruct(out.shape, out.dtype))
          else:
            out = out + eps[key]
        return out

      with nn.intercept_methods(icpt):
        logits = model.apply(variables, x, train=False)
      return jnp.sum(per_example_loss(logits - init_logits, y, loss)), acts

    modules = {}
    jax.eval_shape(lambda: forward(None, modules))
    eps0 = {k: jnp.zeros(v[1].shape, v[1].dtype) for k, v in modules.items()}
    g, acts = jax.grad(lambda e: forward(e, {}), has_aux=True)(eps0)
    sq = sum(_layer_sq_norm(modules[k][0], acts[k], g[k]) for k in sorted(g))
    return parallel.all_gather(jnp.sqrt(sq)), parallel.all_gather(pos)

  return parallel.pmap(fn, devices)


def grand_scores_fast(model, variables_or_state, dataset, *, batch_size: int = 256,
                      loss: str = "cross_entropy", num_devices: Optional[int] = None,
                      init_variables: Optional[dict] = None,
                      fallback_chunk_size: int = 64) -> np.ndarray:
  """Per-example ||d loss / d params||_2 (eval mode), aligned with dataset rows; equal to
  `pruning.grand.grand_scores` up to float rounding. `batch_size` is global."""
  variables, state_init = grand.variables_of(variables_or_state)
  init_variables = init_variables or state_init
  params, rest = grand.split_variables(variables)
  x0, _ = dataset.gather(np.zeros(1, np.int64))
  v = {"params": params, **rest}
  key = (model, jax.tree.structure(v), tuple(np.shape(l) for l in jax.tree.leaves(v)),
         x0.shape[1:], str(x0.dtype))
  if key not in _CHECKED:  # tracing the model costs ~0.1 s: once per model and shapes
    try:
      _layers(model, v, x0)
      _CHECKED[key] = None
    except _Unsupported as e:
      _CHECKED[key] = str(e)
  if _CHECKED[key] is not None:
    _LAST["path"] = f"vmap_fallback: {_CHECKED[key]}"
    return grand.grand_scores(model, variables_or_state, dataset, chunk_size=fallback_chunk_size,
                              loss=loss, num_devices=num_devices, init_variables=init_variables)
  _LAST["path"] = "activations"
  devices = parallel.local_devices(num_devices)
  bs = parallel.round_up_to_devices(max(int(batch_size), 1), devices)
  fn = _p_fast(model, loss, init_variables is not None, tuple(devices))
  rp, rr = parallel.replicate(params, devices), parallel.replicate(rest, devices)
  ri = parallel.replicate(init_variables or {}, devices)

  def score_chunk(xb, yb, pos):
    yb = dense_targets(yb, dataset.num_classes)
    return fn(rp, rr, ri, *parallel.shard((xb, yb, pos), devices))

  return grand.score_all_rows(dataset, bs, devices, score_chunk, "grand_scores_fast")
