"""The trainer's state (params, batch statistics, optimiser state, rng) and the model forward pass.

With ``center_at_init`` the network output is f(x) - f_init(x) with frozen initial parameters
(kept in the state), as KIP-style finite-network evaluations use.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from core.config import config_value as _get
from core.optim import make_optimizer


@struct.dataclass
class TrainState:
  step: Any
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: Any
  init_params: Any = None       # frozen initial params (center_at_init), else None
  init_batch_stats: Any = None

  @property
  def variables(self) -> dict:
    return variables_of(self.params, self.batch_stats)

  @property
  def init_variables(self) -> Optional[dict]:
    if self.init_params is None:
      return None
    return variables_of(self.init_params, self.init_batch_stats)


def variables_of(params, batch_stats) -> dict:
  """The flax variables dict ({'params'[, 'batch_stats']})."""
  v = {"params": params}
  if batch_stats:
    v["batch_stats"] = batch_stats
  return v


def create_train_state(config, model, example_shape: Sequence[int], rng, *, tx=None) -> TrainState:
  """Initial (unreplicated) state for `model`; `rng` is an int seed or a PRNG key.

  `tx` defaults to the optimiser of `config.optimizer` (the opt_state structure
  does not depend on the schedule length).
  """
  if isinstance(rng, (int, np.integer)):
    rng = jax.random.PRNGKey(int(rng))
  if tx is None:
    tx, _ = make_optimizer(_get(config, "optimizer"), 1)
  init_rng, state_rng = jax.random.split(rng)
  variables = model.init(init_rng, jnp.zeros((1,) + tuple(example_shape), jnp.float32),
                         train=False)
  variables = jax.device_get(variables)
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  center = bool(_get(config, "center_at_init", False))
  return TrainState(
      step=np.asarray(0, np.int32), params=params, batch_stats=batch_stats,
      opt_state=jax.device_get(tx.init(params)), rng=np.asarray(jax.device_get(state_rng)),
      init_params=params if center else None,
      init_batch_stats=batch_stats if center else None)


def apply_model(model, params, batch_stats, x, *, train: bool, return_embedding: bool = False):
  """Returns (output, new_batch_stats); batch statistics update only in train mode."""
  variables = variables_of(params, batch_stats)
  if train and batch_stats:
    out, upd = model.apply(variables, x, train=True, return_embedding=return_embedding,
                           mutable=["batch_stats"])
    return out, upd["batch_stats"]
  return model.apply(variables, x, train=train, return_embedding=return_embedding), batch_stats


def centered(model, init_params, init_batch_stats, logits, x):
  """logits - f_init(x) when the state keeps initial params, else logits."""
  if init_params is None:
    return logits
  f0, _ = apply_model(model, init_params, init_batch_stats, x, train=False)
  return logits - jax.lax.stop_gradient(f0)
