"""Optimiser and learning-rate schedule from `config.optimizer` (optax).

Durations arrive here already converted to steps (`core.sampler.num_train_steps`); only
`warmup_epochs` needs the steps per epoch.
"""
from __future__ import annotations

import optax

from core.config import config_value as _get

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


def make_schedule(opt_cfg, total_steps: int, steps_per_epoch: int = 1) -> optax.Schedule:
  lr = float(_get(opt_cfg, "lr", 0.1))
  if not lr > 0:
    raise ValueError(f"optimizer.lr must be > 0, got {lr}")
  kind = _get(opt_cfg, "schedule", "constant")
  warmup = int(_get(opt_cfg, "warmup_steps", 0) or round(
      float(_get(opt_cfg, "warmup_epochs", 0)) * steps_per_epoch))
  warmup = min(warmup, max(total_steps - 1, 0))
  rest = max(total_steps - warmup, 1)
  if kind == "constant":
    main = optax.constant_schedule(lr)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(lr, rest)
  elif kind == "step":
    bounds = _get(opt_cfg, "boundaries", (0.3, 0.6, 0.8))
    factor = float(_get(opt_cfg, "decay_factor", 0.2))
    main = optax.piecewise_constant_schedule(
        lr, {max(int(round(b * total_steps)) - warmup, 1): factor for b in bounds})
  else:
    raise ValueError(f"unknown optimizer.schedule {kind!r}; choose from {SCHEDULES}")
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(opt_cfg, total_steps: int, steps_per_epoch: int = 1):
  """(optax transformation, lr schedule) from config.optimizer."""
  name = _get(opt_cfg, "name", "sgd")
  sched = make_schedule(opt_cfg, total_steps, steps_per_epoch)
  wd = float(_get(opt_cfg, "weight_decay", 0.0))
  b1, b2 = float(_get(opt_cfg, "b1", 0.9)), float(_get(opt_cfg, "b2", 0.999))
  eps = float(_get(opt_cfg, "eps", 1e-8))
  if name == "sgd":
    mom = float(_get(opt_cfg, "momentum", 0.9))
    tx = optax.sgd(sched, momentum=mom or None, nesterov=bool(_get(opt_cfg, "nesterov", False)))
    if wd:  # coupled L2 as in PyTorch SGD(weight_decay=...)
      tx = optax.chain(optax.add_decayed_weights(wd), tx)
  elif name == "adam":
    tx = optax.adam(sched, b1=b1, b2=b2, eps=eps)
    if wd:
      tx = optax.chain(optax.add_decayed_weights(wd), tx)
  elif name == "adamw":
    tx = optax.adamw(sched, b1=b1, b2=b2, eps=eps, weight_decay=wd)
  else:
    raise ValueError(f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")
  return tx, sched
