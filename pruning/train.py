"""Data-parallel training and evaluation of classifiers on in-memory datasets.

Entry point: ``train_and_evaluate(config, workdir, data=..., train_ids=...)``.
Device placement / pmap is delegated to `pruning.parallel`; the data order to
`pruning.sampler.IndexSampler` (a pure function of (seed, step, ids)).

Config fields (see pruning/configs/*.py for complete examples)::

  seed                    int; model init, data order and augmentation
  dataset                 kwargs of pruning.data.load_dataset (name, normalization, ...)
  model                   name + kwargs of pruning.models.create_model
  batch_size              global batch (all devices, all processes)
  num_steps | num_epochs | num_examples   exactly one (> 0); see sampler.num_train_steps
  optimizer.name          'sgd' | 'adam' | 'adamw'
  optimizer.lr, momentum, nesterov, weight_decay, b1, b2, eps
  optimizer.schedule      'constant' | 'cosine' | 'step'
  optimizer.warmup_steps / warmup_epochs
  optimizer.boundaries    'step' schedule: fractions of training (default 0.3, 0.6, 0.8)
  optimizer.decay_factor  'step' schedule multiplier (default 0.2)
  loss                    'cross_entropy' | 'mse' (on one-hot labels or soft targets)
  augment.crop_padding    int (0 = off): random crop with zero padding (images)
  augment.flip            bool: random horizontal flip (images)
  center_at_init          bool: network output f(x) - f_init(x) (frozen init params)
  num_devices             None = all local devices; k = the first k (one process only)
  eval_batch_size, eval_every_steps (0 = only at the end), log_every_steps
  checkpoint_every_steps  0 = only at the end; checkpoints need a workdir
  checkpoint              bool (default True): write / resume from checkpoints
  max_checkpoints         orbax max_to_keep (default 2)
  stop_after_steps        stop as if killed after this many steps (tests resume)
  progress_bar            bool (default True; always off on processes != 0)
  selection.candidate_batch_size   n_B for online batch selection (with batch_selector)

Files written by process 0 to the workdir: config.json (resolved config),
metrics.jsonl (one JSON object per log / eval line), checkpoints/ (orbax).
Nothing is pickled.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct

from pruning import parallel
from pruning.configs import config_value as _get
from pruning.data import ArrayDataset, DatasetSplits, load_dataset
from pruning.models import create_model
from pruning.sampler import IndexSampler, num_train_steps

LOSSES = ("cross_entropy", "mse")


class NonFiniteLossError(ValueError):
  """Training loss became NaN / inf."""


# ----------------------------------------------------------------------------
# State.


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
    return _variables(self.params, self.batch_stats)

  @property
  def init_variables(self) -> Optional[dict]:
    if self.init_params is None:
      return None
    return _variables(self.init_params, self.init_batch_stats)


@dataclasses.dataclass
class TrainResult:
  state: TrainState            # unreplicated (host numpy arrays)
  model: Any                   # the flax module (eval-mode semantics)
  metrics: dict                # final metrics: test_accuracy, test_loss, train_loss, steps, ...
  history: list                # metric dicts as written to metrics.jsonl


def _variables(params, batch_stats) -> dict:
  v = {"params": params}
  if batch_stats:
    v["batch_stats"] = batch_stats
  return v


# ----------------------------------------------------------------------------
# Losses.


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


def _targets(ds: ArrayDataset) -> np.ndarray:
  """Float (n, C) targets: one-hot for int labels, soft targets as given."""
  if ds.y.ndim == 1:
    return np.eye(ds.num_classes, dtype=np.float32)[ds.y]
  return ds.y.astype(np.float32)


# ----------------------------------------------------------------------------
# Optimiser.


def make_schedule(opt_cfg, total_steps: int, steps_per_epoch_: int = 1) -> optax.Schedule:
  lr = float(_get(opt_cfg, "lr", 0.1))
  kind = _get(opt_cfg, "schedule", "constant")
  warmup = int(_get(opt_cfg, "warmup_steps", 0) or round(
      float(_get(opt_cfg, "warmup_epochs", 0)) * steps_per_epoch_))
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
    raise ValueError(f"unknown optimizer.schedule {kind!r}; choose constant/cosine/step")
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(opt_cfg, total_steps: int, steps_per_epoch_: int = 1):
  """(optax transformation, lr schedule) from config.optimizer."""
  name = _get(opt_cfg, "name", "sgd")
  sched = make_schedule(opt_cfg, total_steps, steps_per_epoch_)
  wd = float(_get(opt_cfg, "weight_decay", 0.0))
  if name == "sgd":
    mom = float(_get(opt_cfg, "momentum", 0.9))
    tx = optax.sgd(sched, momentum=mom or None, nesterov=bool(_get(opt_cfg, "nesterov", False)))
    if wd:  # coupled L2 as in PyTorch SGD(weight_decay=...)
      tx = optax.chain(optax.add_decayed_weights(wd), tx)
  elif name == "adam":
    tx = optax.adam(sched, b1=float(_get(opt_cfg, "b1", 0.9)), b2=float(_get(opt_cfg, "b2", 0.999)),
                    eps=float(_get(opt_cfg, "eps", 1e-8)))
    if wd:
      tx = optax.chain(optax.add_decayed_weights(wd), tx)
  elif name == "adamw":
    tx = optax.adamw(sched, b1=float(_get(opt_cfg, "b1", 0.9)), b2=float(_get(opt_cfg, "b2", 0.999)),
                     eps=float(_get(opt_cfg, "eps", 1e-8)), weight_decay=wd)
  else:
    raise ValueError(f"unknown optimizer {name!r}; choose sgd/adam/adamw")
  return tx, sched


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


# ----------------------------------------------------------------------------
# Forward passes.


def _apply(model, params, batch_stats, x, *, train: bool, return_embedding: bool = False):
  """Returns (output, new_batch_stats)."""
  variables = _variables(params, batch_stats)
  if train and batch_stats:
    out, upd = model.apply(variables, x, train=True, return_embedding=return_embedding,
                           mutable=["batch_stats"])
    return out, upd["batch_stats"]
  return model.apply(variables, x, train=train, return_embedding=return_embedding), batch_stats


def _centered(model, init_params, init_batch_stats, logits, x):
  if init_params is None:
    return logits
  f0, _ = _apply(model, init_params, init_batch_stats, x, train=False)
  return logits - jax.lax.stop_gradient(f0)


def _augment(x, ids, rng, crop_padding: int, flip: bool):
  """Per-example random crop (zero padding) and horizontal flip; rng per example id."""
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


@functools.lru_cache(maxsize=64)
def _p_predict(model, return_embedding: bool, centered: bool, devices: tuple):
  def fn(variables, init_variables, x, ids, mask):
    out = model.apply(variables, x, train=False, return_embedding=return_embedding)
    logits, emb = out if return_embedding else (out, None)
    if centered:
      logits = logits - model.apply(init_variables, x, train=False)
    res = {"logits": logits, "ids": ids, "mask": mask}
    if return_embedding:
      res["embeddings"] = emb
    return jax.tree.map(parallel.all_gather, res)

  return parallel.pmap(fn, devices)


def predict(model, variables_or_state, dataset: ArrayDataset, batch_size: int, *,
            return_embedding: bool = False, num_devices: Optional[int] = None,
            init_variables: Optional[dict] = None) -> dict:
  """Outputs on every example of `dataset`, exactly once, aligned with dataset.ids.

  `variables_or_state`: a TrainState (unreplicated; its init_params give the
  centring when center_at_init was on) or a flax variables dict
  ({'params': ..., ['batch_stats': ...]}; pass `init_variables` to centre).
  Batches are padded to a multiple of the (total) device count and masked.
  With several processes every process must call this; each computes its slice
  of every batch and all get the full result.
  Returns dict(ids (n,), logits (n, C)[, embeddings (n, d)]) as numpy arrays.
  """
  if isinstance(variables_or_state, TrainState):
    variables = variables_or_state.variables
    init_variables = init_variables or variables_or_state.init_variables
  else:
    variables = dict(variables_or_state)
    if not variables.get("batch_stats"):
      variables.pop("batch_stats", None)
  n = len(dataset)
  if n == 0:
    raise ValueError(f"predict: empty dataset {dataset.name!r}")
  devices = parallel.local_devices(num_devices)
  total = parallel.total_device_count(devices)
  bs = max(int(batch_size), 1)
  bs = int(math.ceil(bs / total) * total)
  fn = _p_predict(model, bool(return_embedding), init_variables is not None, tuple(devices))
  rvars = parallel.replicate(variables, devices)
  rinit = parallel.replicate(init_variables if init_variables is not None else {}, devices)
  sl = parallel.process_slice(bs, devices)
  outs = {"logits": [], "ids": []}
  if return_embedding:
    outs["embeddings"] = []
  for start in range(0, n, bs):
    idx = np.arange(start, start + bs)
    mask = idx < n
    idx = np.where(mask, idx, 0)[sl]
    batch = parallel.shard((dataset.x[idx], dataset.ids[idx].astype(np.int32),
                            mask[sl].astype(np.float32)), devices)
    res = jax.device_get(jax.tree.map(lambda a: a[0], fn(rvars, rinit, *batch)))
    keep = res["mask"] > 0
    for k in outs:
      outs[k].append(np.asarray(res[k])[keep])
  out = {k: np.concatenate(v) for k, v in outs.items()}
  # all_gather concatenates in pmap device order; restore dataset order by id.
  order = np.argsort(out["ids"], kind="stable")
  want = np.argsort(np.argsort(dataset.ids.astype(np.int32), kind="stable"), kind="stable")
  out = {k: v[order][want] for k, v in out.items()}
  out["ids"] = dataset.ids.copy()
  return out


def evaluate(model, variables_or_state, dataset: ArrayDataset, batch_size: int, *,
             loss: str = "cross_entropy", num_devices: Optional[int] = None,
             init_variables: Optional[dict] = None) -> dict:
  """{'loss', 'accuracy'} of the model on `dataset` (targets: labels or soft)."""
  out = predict(model, variables_or_state, dataset, batch_size, num_devices=num_devices,
                init_variables=init_variables)
  logits = out["logits"]
  l = np.asarray(per_example_loss(jnp.asarray(logits), jnp.asarray(dataset.y), loss))
  acc = float(np.mean(np.argmax(logits, -1) == dataset.labels))
  return {"loss": float(np.mean(l)), "accuracy": acc}


# ----------------------------------------------------------------------------
# Training.


def _validate(config, n_total_devices: int):
  bs = int(_get(config, "batch_size", 0))
  if bs < 1:
    raise ValueError(f"config.batch_size must be >= 1, got {bs}")
  if bs % n_total_devices:
    raise ValueError(f"config.batch_size={bs} is not divisible by the total device count "
                     f"{n_total_devices}")
  loss = _get(config, "loss", "cross_entropy")
  if loss not in LOSSES:
    raise ValueError(f"unknown loss {loss!r}; choose from {LOSSES}")


def _load(config) -> DatasetSplits:
  from pruning.data import BUNDLED
  ds = dict(_get(config, "dataset", {}))
  name = ds.get("name")
  if name not in BUNDLED and not ds.get("data_dir") and ds.get("source", "auto") != "tfds":
    raise ValueError(f"unknown dataset {name!r}: bundled datasets are {BUNDLED}; a TFDS "
                     f"dataset needs config.dataset.data_dir")
  return load_dataset(**ds)


def _make_train_step(model, tx, loss_name: str, crop_padding: int, flip: bool,
                     per_example: bool = False):
  """pmapped-body train step.  With ``per_example`` it also returns, gathered over all
  devices, each example's id and whether the training forward pass (before the update)
  classified it correctly: forgetting events are counted on these (Toneva et al.)."""
  def train_step(state: TrainState, batch):
    x, y, ids = batch["x"], batch["y"], batch["id"]
    x = _augment(x, ids, jax.random.fold_in(state.rng, state.step), crop_padding, flip)

    def loss_fn(params):
      logits, new_bs = _apply(model, params, state.batch_stats, x, train=True)
      logits = _centered(model, state.init_params, state.init_batch_stats, logits, x)
      return per_example_loss(logits, y, loss_name).mean(), (logits, new_bs)

    (l, (logits, new_bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = parallel.pmean(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    correct = jnp.argmax(logits, -1) == jnp.argmax(y, -1)
    metrics = {"loss": parallel.pmean(l), "accuracy": parallel.pmean(jnp.mean(correct))}
    if per_example:
      metrics.update(correct=parallel.all_gather(correct), id=parallel.all_gather(ids))
    return state.replace(step=state.step + 1, params=params, batch_stats=new_bs,
                         opt_state=opt_state), metrics

  return train_step


def _freeze(cfg) -> str:
  """Hashable key of a (nested) config for the compile cache."""
  d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg or {})
  return json.dumps(d, sort_keys=True, default=str)


@functools.lru_cache(maxsize=32)
def _compiled_train_step(model, opt_key: str, total_steps: int, spe: int, loss_name: str,
                         crop_padding: int, flip: bool, devices: tuple, per_example: bool = False):
  """(tx, lr schedule, pmapped train step), cached so that repeated runs with the same model,
  optimiser, length and devices (sweep cells) reuse one compilation."""
  tx, sched = make_optimizer(ml_collections.ConfigDict(json.loads(opt_key)), total_steps, spe)
  step = _make_train_step(model, tx, loss_name, crop_padding, flip, per_example)
  return tx, sched, parallel.pmap(step, devices, donate_argnums=(0,))


def _make_loss_fn(model, loss_name: str):
  """Pmapped per-example eval-mode loss on candidates, gathered over all devices."""
  def fn(state: TrainState, batch):
    logits, _ = _apply(model, state.params, state.batch_stats, batch["x"], train=False)
    logits = _centered(model, state.init_params, state.init_batch_stats, logits, batch["x"])
    l = per_example_loss(logits, batch["y"], loss_name)
    return parallel.all_gather(l), parallel.all_gather(batch["id"])
  return fn


def _write_json_lines(path: str, records: list, mode: str = "a"):
  with open(path, mode) as f:
    for r in records:
      f.write(json.dumps(r) + "\n")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: Optional[str] = None, *,
                       data: Optional[DatasetSplits] = None, train_ids=None,
                       epoch_callback: Optional[Callable[[int, TrainState], Any]] = None,
                       batch_selector: Optional[Callable] = None,
                       step_callback: Optional[Callable[[int, np.ndarray, np.ndarray], Any]] = None
                       ) -> TrainResult:
  """Trains `config.model` on `data.train` (or its subset `train_ids`); evaluates on data.test.

  epoch_callback(epoch, state): called after each completed epoch (epoch = 1, 2,
    ...; an epoch is ceil(n_train / sampled batch) steps) with the unreplicated
    state, on every process.
  batch_selector(step, candidate_ids, candidate_losses, n_b) -> selected ids:
    with config.selection.candidate_batch_size = n_B > batch_size = n_b, each
    step draws n_B candidate ids, computes their per-example eval-mode loss
    under the current model, and trains on the n_b ids the selector returns.
  step_callback(step, ids, correct): for every step this call runs, in order, the global
    batch's example ids and whether the training forward pass (train mode, augmented,
    before the update) classified each correctly; on every process.  Delivered in
    bunches when metrics are fetched (every log_every_steps, epoch end, eval), so it
    adds no per-step device sync.
  """
  t0 = time.time()
  devices = parallel.local_devices(_get(config, "num_devices"))
  n_total = parallel.total_device_count(devices)
  _validate(config, n_total)
  is_main = parallel.process_index() == 0
  seed = int(_get(config, "seed", 0))
  loss_name = _get(config, "loss", "cross_entropy")
  batch_size = int(config.batch_size)

  if data is None:
    data = _load(config)
  train_ds = data.train
  if train_ids is not None:
    train_ids = np.asarray(train_ids)
    if train_ids.size == 0:
      raise ValueError(f"empty train_ids: nothing to train on ({data.train.name})")
    train_ds = data.train.subset(train_ids)
  n_train = len(train_ds)

  selection = None
  sel_cfg = _get(config, "selection")
  if batch_selector is not None:
    n_cand = int(_get(sel_cfg, "candidate_batch_size", 0))
    if n_cand <= batch_size:
      raise ValueError(f"batch_selector needs config.selection.candidate_batch_size > "
                       f"batch_size={batch_size}, got {n_cand}")
    if n_cand % n_total:
      raise ValueError(f"selection.candidate_batch_size={n_cand} is not divisible by the "
                       f"total device count {n_total}")
    selection = n_cand
  sampled_bs = selection or batch_size
  sampler = IndexSampler(train_ds.ids, sampled_bs, seed)
  spe = sampler.steps_per_epoch
  total_steps = num_train_steps(config, n_train, sampled_bs)

  model = create_model(config.model, num_classes=data.num_classes)
  train_model = model.clone(bn_axis_name=parallel.AXIS) if hasattr(model, "bn_axis_name") else model
  aug = _get(config, "augment")
  opt_cfg = _get(config, "optimizer")
  # Steps per epoch only enter the schedule through warmup_epochs; keep them out
  # of the compile-cache key otherwise, so subsets of any size share a compile.
  spe_key = spe if float(_get(opt_cfg, "warmup_epochs", 0) or 0) else 1
  tx, sched, p_train = _compiled_train_step(
      train_model, _freeze(opt_cfg), total_steps, spe_key, loss_name,
      int(_get(aug, "crop_padding", 0)), bool(_get(aug, "flip", False)), tuple(devices),
      step_callback is not None)
  state = create_train_state(config, model, train_ds.example_shape, seed, tx=tx)

  x_train = train_ds.x
  y_train = _targets(train_ds)
  ids_train = train_ds.ids
  sort_order = np.argsort(ids_train, kind="stable")
  sorted_ids = ids_train[sort_order]

  # Files and checkpoints.
  history: list = []
  ckpt = None
  metrics_path = None
  if workdir:
    if is_main:
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2) if hasattr(config, "to_json_best_effort")
                else json.dumps(dict(config), indent=2, default=str))
      metrics_path = os.path.join(workdir, "metrics.jsonl")
    if _get(config, "checkpoint", True):
      from pruning.checkpoint import Checkpointer
      ckpt = Checkpointer(os.path.join(os.path.abspath(workdir), "checkpoints"),
                          max_to_keep=int(_get(config, "max_checkpoints", 2)))
      if ckpt.latest_step() is not None:
        state = ckpt.restore(state)
  start_step = int(state.step)
  if metrics_path:
    if start_step > 0 and os.path.exists(metrics_path):
      with open(metrics_path) as f:
        history = [r for r in map(json.loads, filter(str.strip, f)) if r.get("step", 0) <= start_step]
    _write_json_lines(metrics_path, history, mode="w")

  p_loss = parallel.pmap(_make_loss_fn(model, loss_name), devices) if selection else None
  rstate = parallel.replicate(state, devices)

  log_every = int(_get(config, "log_every_steps", 50))
  eval_every = int(_get(config, "eval_every_steps", 0))
  ckpt_every = int(_get(config, "checkpoint_every_steps", 0))
  stop_after = _get(config, "stop_after_steps")
  eval_bs = int(_get(config, "eval_batch_size", 1024))
  pending: list = []
  last_train = {}

  def log(record):
    history.append(record)
    if metrics_path:
      _write_json_lines(metrics_path, [record])

  def flush(step):
    nonlocal pending, last_train
    if not pending:
      return
    fetched = jax.device_get([(s, jax.tree.map(lambda a: a[0], m)) for s, m in pending])
    pending = []
    if step_callback is not None:
      for s, m in fetched:
        step_callback(s, np.asarray(m["id"]), np.asarray(m["correct"]))
    vals = [(s, m["loss"], m["accuracy"]) for s, m in fetched]
    for s, l, _ in vals:
      if not np.isfinite(l):
        raise NonFiniteLossError(f"non-finite training loss {float(l)} at step {s} "
                                 f"(lr={float(sched(s - 1))}); lower optimizer.lr?")
    last_train = {"train_loss": float(np.mean([v[1] for v in vals])),
                  "train_accuracy": float(np.mean([v[2] for v in vals]))}
    log({"step": step, "epoch": step / spe, "lr": float(sched(step - 1)), **last_train})

  def run_eval(step, state_host):
    ev = evaluate(model, state_host, data.test, eval_bs, loss=loss_name,
                  num_devices=_get(config, "num_devices"))
    rec = {"step": step, "epoch": step / spe, "test_loss": ev["loss"], "test_accuracy": ev["accuracy"]}
    log(rec)
    return rec

  try:
    from tqdm.auto import tqdm
    pbar = tqdm(total=total_steps, initial=start_step, desc=f"train {data.name}",
                disable=not (is_main and _get(config, "progress_bar", True)), leave=False)
  except ImportError:  # pragma: no cover
    pbar = None

  sl_b = parallel.process_slice(batch_size, devices)
  step = start_step
  stopped = False
  while step < total_steps:
    pos = sampler.positions(step)
    if selection:
      sl_c = parallel.process_slice(selection, devices)
      lp = pos[sl_c]
      cand = parallel.shard({"x": x_train[lp], "y": y_train[lp],
                             "id": ids_train[lp].astype(np.int32)}, devices)
      closs, cids = jax.device_get(jax.tree.map(lambda a: a[0], p_loss(rstate, cand)))
      # restore the global candidate order (all_gather is in device order)
      cand_ids = ids_train[pos]
      where = {int(i): k for k, i in enumerate(np.asarray(cids))}
      closs = np.asarray(closs)[[where[int(i)] for i in cand_ids]]
      chosen = np.asarray(batch_selector(step, cand_ids.copy(), closs.copy(), batch_size))
      if chosen.shape != (batch_size,):
        raise ValueError(f"batch_selector returned {chosen.shape} ids at step {step}; "
                         f"expected ({batch_size},)")
      k = np.clip(np.searchsorted(sorted_ids, chosen), 0, n_train - 1)
      if (sorted_ids[k] != chosen).any():
        raise ValueError(f"batch_selector returned ids not in the training set at step {step}")
      pos = sort_order[k]
    lp = pos[sl_b]
    batch = parallel.shard({"x": x_train[lp], "y": y_train[lp],
                            "id": ids_train[lp].astype(np.int32)}, devices)
    rstate, m = p_train(rstate, batch)
    step += 1
    pending.append((step, m))
    if pbar is not None:
      pbar.update(1)
    if step % log_every == 0 or step == total_steps:
      flush(step)
      if pbar is not None and last_train:
        pbar.set_postfix(loss=f"{last_train['train_loss']:.4f}")
    host_state = None
    if epoch_callback is not None and step % spe == 0:
      flush(step)
      host_state = parallel.unreplicate(rstate)
      epoch_callback(step // spe, host_state)
    if eval_every and step % eval_every == 0 and step != total_steps:
      flush(step)
      run_eval(step, host_state or parallel.unreplicate(rstate))
    if ckpt is not None and ckpt_every and step % ckpt_every == 0 and step != total_steps:
      flush(step)
      ckpt.save(step, host_state or parallel.unreplicate(rstate))
    if stop_after is not None and step >= int(stop_after) and step < total_steps:
      stopped = True  # as if killed: no final checkpoint, no evaluation
      break
  flush(step)
  if pbar is not None:
    pbar.close()

  final_state = parallel.unreplicate(rstate)
  if not last_train:  # resumed an already finished run: report the logged values
    prev = [r for r in history if "train_loss" in r]
    if prev:
      last_train = {k: prev[-1][k] for k in ("train_loss", "train_accuracy")}
  metrics = {"steps": step, "total_steps": total_steps, "epochs": step / spe,
             "steps_per_epoch": spe, "num_train_examples": n_train, **last_train}
  if stopped:
    metrics["stopped_at_step"] = step
  else:
    if ckpt is not None:
      ckpt.save(step, final_state)
    rec = run_eval(step, final_state)
    metrics.update(test_loss=rec["test_loss"], test_accuracy=rec["test_accuracy"])
  metrics["wall_time_s"] = time.time() - t0
  if ckpt is not None:
    ckpt.close()
  return TrainResult(state=final_state, model=model, metrics=metrics, history=history)
