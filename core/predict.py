"""Outputs of a model on every example of a dataset, exactly once, aligned with its ids.

Batches are padded to a multiple of the total device count and masked; every process computes
its slice of each global batch (`core.parallel`). Per-example reductions (a loss, EL2N, ...) run
on the device through `reduce_fn`, so only scalars per example are gathered, not full logits.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from core import parallel
from core.data import ArrayDataset
from core.losses import dense_targets, per_example_loss
from core.state import TrainState

# reduce_fn(logits (b, C), targets (b, C) float) -> dict of (b,) per-example arrays.
ReduceFn = Callable[[jnp.ndarray, jnp.ndarray], dict]


@functools.lru_cache(maxsize=64)
def _p_predict(model, return_embedding: bool, centered: bool, reduce_fn, devices: tuple):
  def fn(variables, init_variables, x, y, pos, mask):
    out = model.apply(variables, x, train=False, return_embedding=return_embedding)
    logits, emb = out if return_embedding else (out, None)
    if centered:
      logits = logits - model.apply(init_variables, x, train=False)
    res = {"pos": pos, "mask": mask}
    if reduce_fn is None:
      res["logits"] = logits
    else:
      res.update(reduce_fn(logits, y))
    if return_embedding:
      res["embeddings"] = emb
    return jax.tree.map(parallel.all_gather, res)

  return parallel.pmap(fn, devices)


def _variables(variables_or_state, init_variables):
  if isinstance(variables_or_state, TrainState):
    return (variables_or_state.variables,
            init_variables or variables_or_state.init_variables)
  variables = dict(variables_or_state)
  if not variables.get("batch_stats"):
    variables.pop("batch_stats", None)
  return variables, init_variables


def predict(model, variables_or_state, dataset: ArrayDataset, batch_size: int, *,
            return_embedding: bool = False, num_devices: Optional[int] = None,
            init_variables: Optional[dict] = None,
            reduce_fn: Optional[ReduceFn] = None) -> dict:
  """Outputs on every example of `dataset`, exactly once, in dataset order.

  `variables_or_state`: a TrainState (unreplicated; its init_params give the
  centring when center_at_init was on) or a flax variables dict
  ({'params': ..., ['batch_stats': ...]}; pass `init_variables` to centre).
  With several processes every process must call this; each computes its slice
  of every batch and all get the full result.
  Returns dict(ids (n,), logits (n, C) [or reduce_fn's arrays], [embeddings (n, d)]).
  """
  variables, init_variables = _variables(variables_or_state, init_variables)
  n = len(dataset)
  if n == 0:
    raise ValueError(f"predict: empty dataset {dataset.name!r}")
  devices = parallel.local_devices(num_devices)
  bs = parallel.round_up_to_devices(max(int(batch_size), 1), devices)
  fn = _p_predict(model, bool(return_embedding), init_variables is not None, reduce_fn,
                  tuple(devices))
  rvars = parallel.replicate(variables, devices)
  rinit = parallel.replicate(init_variables if init_variables is not None else {}, devices)
  sl = parallel.process_slice(bs, devices)
  if n >= 2 ** 31:
    raise ValueError(f"predict: {n} examples; positions are int32 on the device (< 2**31)")
  # Outputs are scattered by dataset position into arrays allocated once: beyond the outputs
  # themselves only a (n,) uint8 count is held, no per-batch lists or argsorts.
  out: dict = {}
  written = np.zeros(n, np.uint8)
  for start in range(0, n, bs):
    idx = np.arange(start, start + bs)
    mask = idx < n
    idx = np.where(mask, idx, 0)[sl]
    xb, yb = dataset.gather(idx)  # only this process's slice is read (streamed or in memory)
    batch = parallel.shard((xb, dense_targets(yb, dataset.num_classes), idx.astype(np.int32),
                            mask[sl].astype(np.float32)), devices)
    res = parallel.fetch(fn(rvars, rinit, *batch))
    keep = res.pop("mask") > 0
    pos = np.asarray(res.pop("pos"))[keep]  # all_gather: every process's slice, device order
    np.add.at(written, pos, 1)
    for k, v in res.items():
      v = np.asarray(v)
      if k not in out:
        out[k] = np.empty((n,) + v.shape[1:], v.dtype)
      out[k][pos] = v[keep]
  if not (written == 1).all():  # a bug in the batch layout, never bad input
    bad = np.nonzero(written != 1)[0]
    raise RuntimeError(f"predict: positions {bad[:10].tolist()} were scored "
                       f"{written[bad[:10]].tolist()} times, not once")
  out["ids"] = dataset.ids.copy()
  return out


def _ce_reduce(logits, y):
  return {"loss": per_example_loss(logits, y, "cross_entropy"),
          "correct": (jnp.argmax(logits, -1) == jnp.argmax(y, -1)).astype(jnp.float32)}


def _mse_reduce(logits, y):
  return {"loss": per_example_loss(logits, y, "mse"),
          "correct": (jnp.argmax(logits, -1) == jnp.argmax(y, -1)).astype(jnp.float32)}


_REDUCERS = {"cross_entropy": _ce_reduce, "mse": _mse_reduce}


def per_example_losses(model, variables_or_state, dataset: ArrayDataset, batch_size: int, *,
                       loss: str = "cross_entropy", num_devices: Optional[int] = None,
                       init_variables: Optional[dict] = None) -> dict:
  """{'ids', 'loss', 'correct'}: eval-mode per-example loss and correctness, reduced on device."""
  if loss not in _REDUCERS:
    raise ValueError(f"unknown loss {loss!r}; choose from {tuple(_REDUCERS)}")
  return predict(model, variables_or_state, dataset, batch_size, num_devices=num_devices,
                 init_variables=init_variables, reduce_fn=_REDUCERS[loss])


def evaluate(model, variables_or_state, dataset: ArrayDataset, batch_size: int, *,
             loss: str = "cross_entropy", num_devices: Optional[int] = None,
             init_variables: Optional[dict] = None) -> dict:
  """{'loss', 'accuracy'} of the model on `dataset` (targets: labels or soft)."""
  out = per_example_losses(model, variables_or_state, dataset, batch_size, loss=loss,
                           num_devices=num_devices, init_variables=init_variables)
  if not np.isfinite(out["loss"]).all():
    bad = dataset.ids[~np.isfinite(out["loss"])]
    raise ValueError(f"{dataset.name}: non-finite loss on ids {bad[:10].tolist()} (NaN/inf "
                     f"inputs or a diverged model); check the inputs with core.data.check_finite")
  return {"loss": float(np.mean(out["loss"])), "accuracy": float(np.mean(out["correct"]))}
