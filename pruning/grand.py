"""GraNd (Paul et al. 2021): per-example ||d loss / d params||_2, chunked vmap(grad), pmapped.

`grand_scores` is the reference path of the ``grand`` score method: per-example gradients
from ``vmap(grad)`` on chunks of ``chunk_size`` examples per device, pmapped over devices
(`core.parallel`), so memory stays bounded. `pruning.grand_fast` computes the same norms from
layer inputs and output gradients and falls back to this path. `score_all_rows` is the
padded, masked chunk loop both use. Shapes: dataset rows (n, *example_shape), scores (n,).
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from core import parallel
from core.data import ArrayDataset
from core.losses import per_example_loss
from core.state import TrainState


def split_variables(variables: dict):
  """(params, the other non-empty collections) of a flax variables dict."""
  variables = dict(variables)
  params = variables.pop("params")
  rest = {k: v for k, v in variables.items() if v}
  return params, rest


def variables_of(variables_or_state):
  """(variables, init_variables or None) of a TrainState or a variables dict."""
  if isinstance(variables_or_state, TrainState):
    return variables_or_state.variables, variables_or_state.init_variables
  return dict(variables_or_state), None


def score_all_rows(dataset, step: int, devices, score_chunk: Callable, what: str) -> np.ndarray:
  """(n,) scores of every dataset row, computed on global chunks of `step` rows.

  The last chunk is padded with row 0 and masked: ``score_chunk(x, y, pos)`` gets this
  process's slice of the chunk (host arrays, pos = row index or -1 on padding) and returns
  (scores, pos) gathered over all devices, so every process gets every score. `what` names
  the caller in the error raised if a row is left unscored.
  """
  sl = parallel.process_slice(step, devices)
  n = len(dataset)
  out = np.full(n, np.nan)
  for start in range(0, n, step):
    idx = np.arange(start, start + step)
    valid = idx < n
    idx = np.where(valid, idx, 0)
    pos = np.where(valid, idx, -1).astype(np.int32)
    xb, yb = dataset.gather(idx[sl])  # in memory or streamed record files
    scores, gpos = parallel.fetch(score_chunk(xb, yb, pos[sl]))
    gpos = np.asarray(gpos)
    ok = gpos >= 0
    out[gpos[ok]] = np.asarray(scores)[ok]
  if np.isnan(out).any():
    raise RuntimeError(f"{what}: some examples were not scored")
  return out


def _example_loss_fn(model, loss: str, centered: bool):

  def loss_one(params, rest, init_variables, xi, yi):
    logits = model.apply({"params": params, **rest}, xi[None], train=False)
    if centered:
      logits = logits - model.apply(init_variables, xi[None], train=False)
    return per_example_loss(logits, yi[None], loss)[0]
  return loss_one


def _sq_norm(tree):
  return sum(jnp.sum(jnp.reshape(l, (l.shape[0], -1)).astype(jnp.float32) ** 2, axis=1)
             for l in jax.tree.leaves(tree))


@functools.lru_cache(maxsize=32)
def _p_grand(model, loss: str, centered: bool, devices: tuple):
  loss_one = _example_loss_fn(model, loss, centered)

  def fn(params, rest, init_variables, x, y, pos):
    g = jax.vmap(jax.grad(loss_one), in_axes=(None, None, None, 0, 0))(
        params, rest, init_variables, x, y)
    return parallel.all_gather(jnp.sqrt(_sq_norm(g))), parallel.all_gather(pos)

  return parallel.pmap(fn, devices)


def grand_scores(model, variables_or_state, dataset: ArrayDataset, *, chunk_size: int = 64,
                 loss: str = "cross_entropy", num_devices: Optional[int] = None,
                 init_variables: Optional[dict] = None) -> np.ndarray:
  """Per-example ||d loss / d params||_2 (eval mode), aligned with dataset rows.

  Each pmapped call handles `chunk_size` examples per device (padding the last
  chunk), so peak memory is that of chunk_size per-example gradients per
  device. With several processes every process calls this and gets all scores.
  """
  variables, state_init = variables_of(variables_or_state)
  init_variables = init_variables or state_init
  params, rest = split_variables(variables)
  devices = parallel.local_devices(num_devices)
  step = parallel.round_up_to_devices(int(chunk_size) * len(devices), devices)
  fn = _p_grand(model, loss, init_variables is not None, tuple(devices))
  rp = parallel.replicate(params, devices)
  rr = parallel.replicate(rest, devices)
  ri = parallel.replicate(init_variables or {}, devices)
  return score_all_rows(dataset, step, devices, lambda x, y, pos: fn(
      rp, rr, ri, *parallel.shard((x, y, pos), devices)), "grand_scores")


def grand_loop(model, variables, dataset: ArrayDataset, *, loss: str = "cross_entropy",
               init_variables: Optional[dict] = None) -> np.ndarray:
  """Reference: one jitted gradient per example, in a Python loop (slow)."""
  params, rest = split_variables(variables)
  loss_one = _example_loss_fn(model, loss, init_variables is not None)
  g = jax.jit(lambda *a: jnp.sqrt(sum(jnp.sum(l.astype(jnp.float32) ** 2)
                                      for l in jax.tree.leaves(jax.grad(loss_one)(*a)))))
  out = np.empty(len(dataset))
  for i in range(len(dataset)):
    out[i] = float(g(params, rest, init_variables or {}, jnp.asarray(dataset.x[i]),
                     jnp.asarray(dataset.y[i])))
  return out
