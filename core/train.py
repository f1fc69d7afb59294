"""Data-parallel training and evaluation of classifiers on in-memory datasets: one loop.

Entry point: ``train_and_evaluate(config, workdir, data=..., train_ids=...)``. Device placement
and pmap are delegated to `core.parallel`; the data order to `core.sampler.IndexSampler` (a pure
function of (seed, step, ids)); losses, optimiser, state and evaluation live in `core.losses`,
`core.optim`, `core.state` and `core.predict`.

Config fields (see core/configs/*.py for complete examples)::

  seed                    int; model init, data order and augmentation
  dataset                 kwargs of core.data.load_dataset (name, normalization, ...)
  model                   name + kwargs of core.models.create_model
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
  eval_batch_size, eval_every_steps (0 = only at the end), log_every_steps (>= 1)
  checkpoint_every_steps  0 = only at the end; checkpoints need a workdir
  checkpoint              bool (default True): write / resume from checkpoints
  max_checkpoints         orbax max_to_keep (default 2, >= 1)
  stop_after_steps        stop as if killed after this many steps (tests resume)
  resume                  'auto' (default): resume only under the same config | 'force'
  progress_bar            bool (default True; always off on processes != 0)

Files written by process 0 to the workdir: config.json (resolved config), manifest.json and
.lock (core/workdir.py: resume refused under a changed config; one run per workdir),
metrics.jsonl (one JSON object per log / eval line: train loss and accuracy, lr,
l2_grads / l2_params / l2_updates, steps_per_s, examples_per_s; test metrics),
checkpoints/ (orbax). Nothing is pickled.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm.auto import tqdm

from core import parallel
from core.config import config_value as _get
from core.data import BUNDLED, DatasetSplits, load_dataset
from core.augment import augment_batch
from core.losses import check_loss, dense_targets, margin, per_example_loss
from core.models import create_model
from core.optim import make_optimizer
from core.predict import evaluate
from core.sampler import IndexSampler, num_train_steps
from core.workdir import check_resume, workdir_lock
from core.state import TrainState, apply_model, centered, create_train_state


class NonFiniteLossError(ValueError):
  """Training loss became NaN / inf."""


@dataclasses.dataclass
class TrainResult:
  state: TrainState            # unreplicated (host numpy arrays)
  model: Any                   # the flax module (eval-mode semantics)
  metrics: dict                # final metrics: test_accuracy, test_loss, train_loss, steps, ...
  history: list                # metric dicts as written to metrics.jsonl


# ----------------------------------------------------------------------------
# Batch sources: which training examples each step sees.


@dataclasses.dataclass
class BatchContext:
  """What a batch source may use: the sampler over the training ids and the current model's
  eval-mode per-example losses on any positions (collective: every process calls it)."""
  sampler: IndexSampler
  ids: np.ndarray              # training ids; positions index this array
  batch_size: int              # examples per gradient step
  eval_losses: Callable[[np.ndarray], np.ndarray]

  def positions_of(self, ids: np.ndarray) -> np.ndarray:
    """Positions of the given training ids (raises on ids not in the training set)."""
    order = np.argsort(self.ids, kind="stable")
    k = np.clip(np.searchsorted(self.ids[order], ids), 0, len(self.ids) - 1)
    if (self.ids[order][k] != ids).any():
      raise ValueError("batch source returned ids not in the training set")
    return order[k]


class SamplerSource:
  """The default: the sampler's batch at each step, every example weighted 1."""

  def batch(self, step: int, ctx: BatchContext):
    return ctx.sampler.positions(step), None


# ----------------------------------------------------------------------------
# The train step (pmapped body) and its compile cache.


def _make_train_step(model, tx, loss_name: str, crop_padding: int, flip: bool,
                     per_example: bool = False):
  """One SGD step on a (weighted) global batch.  With ``per_example`` it also returns,
  gathered over all devices, each example's id and its loss, correctness and margin in the
  training forward pass (before the update): forgetting, AUM and InfoBatch use these."""
  def train_step(state: TrainState, batch):
    x, y, ids, w = batch["x"], batch["y"], batch["id"], batch["weight"]
    x = augment_batch(x, ids, jax.random.fold_in(state.rng, state.step), crop_padding, flip)

    def loss_fn(params):
      logits, new_bs = apply_model(model, params, state.batch_stats, x, train=True)
      logits = centered(model, state.init_params, state.init_batch_stats, logits, x)
      losses = per_example_loss(logits, y, loss_name)
      return jnp.mean(w * losses), (logits, losses, new_bs)

    (_, (logits, losses, new_bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    grads = parallel.pmean(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    correct = jnp.argmax(logits, -1) == jnp.argmax(y, -1)
    metrics = {"loss": parallel.pmean(jnp.mean(losses)),
               "accuracy": parallel.pmean(jnp.mean(correct)),
               "l2_grads": _l2(grads), "l2_params": _l2(params), "l2_updates": _l2(updates)}
    if per_example:
      metrics.update(correct=parallel.all_gather(correct), id=parallel.all_gather(ids),
                     example_loss=parallel.all_gather(losses),
                     margin=parallel.all_gather(margin(logits, jnp.argmax(y, -1))))
    return state.replace(step=state.step + 1, params=params, batch_stats=new_bs,
                         opt_state=opt_state), metrics

  return train_step


def _l2(tree):
  """Global L2 norm of a pytree (big_vision's l2_grads / l2_params / l2_updates)."""
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


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


@functools.lru_cache(maxsize=32)
def _compiled_eval_loss(model, loss_name: str, devices: tuple):
  """Pmapped per-example eval-mode loss of the current state, gathered over all devices."""
  def fn(state: TrainState, batch):
    logits, _ = apply_model(model, state.params, state.batch_stats, batch["x"], train=False)
    logits = centered(model, state.init_params, state.init_batch_stats, logits, batch["x"])
    l = per_example_loss(logits, batch["y"], loss_name)
    return parallel.all_gather(l), parallel.all_gather(batch["id"])
  return parallel.pmap(fn, devices)


# ----------------------------------------------------------------------------
# Helpers of the loop.


def _validate(config, n_total_devices: int):
  bs = int(_get(config, "batch_size", 0))
  if bs < 1:
    raise ValueError(f"config.batch_size must be >= 1, got {bs}")
  if bs % n_total_devices:
    raise ValueError(f"config.batch_size={bs} is not divisible by the total device count "
                     f"{n_total_devices}")
  check_loss(_get(config, "loss", "cross_entropy"))
  for key, low in (("log_every_steps", 1), ("max_checkpoints", 1), ("eval_batch_size", 1),
                   ("eval_every_steps", 0), ("checkpoint_every_steps", 0)):
    v = config.get(key) if hasattr(config, "get") else None
    if v is not None and int(v) < low:
      raise ValueError(f"config.{key} must be >= {low}, got {v}")


def load_data(config) -> DatasetSplits:
  """The dataset of `config.dataset` (load_dataset kwargs)."""
  ds = dict(_get(config, "dataset", {}))
  name = ds.get("name")
  if name not in BUNDLED and not ds.get("data_dir") and ds.get("source", "auto") != "tfds":
    raise ValueError(f"unknown dataset {name!r}: bundled datasets are {BUNDLED}; a TFDS "
                     f"dataset needs config.dataset.data_dir")
  return load_dataset(**ds)


def _write_json_lines(path: str, records: list, mode: str = "a"):
  with open(path, mode) as f:
    for r in records:
      f.write(json.dumps(r) + "\n")


def _read_history(path: str, upto_step: int) -> list:
  """Records of metrics.jsonl up to `upto_step`; a partial last line (a kill mid-write) is
  dropped, a corrupt earlier line raises naming the file."""
  with open(path) as f:
    lines = f.read().split("\n")
  out = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      r = json.loads(line)
    except json.JSONDecodeError:
      if i >= len(lines) - 2:  # the last line, cut by a kill: rewritten below
        break
      raise ValueError(f"{path}: line {i + 1} is not JSON; delete the file to restart the "
                       f"metrics log (checkpoints are kept)")
    if r.get("step", 0) <= upto_step and not r.get("final"):
      out.append(r)
  return out


# ----------------------------------------------------------------------------
# The loop.


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: Optional[str] = None,
                       **kwargs) -> TrainResult:
  """Trains `config.model` on `data.train`; the arguments are `_train_and_evaluate`'s."""
  # Process 0 holds <workdir>/.lock for the whole run: a second run stops at once, naming it.
  with workdir_lock(workdir if parallel.process_index() == 0 else None):
    return _train_and_evaluate(config, workdir, **kwargs)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: Optional[str] = None, *,
                       data: Optional[DatasetSplits] = None, train_ids=None,
                       epoch_callback: Optional[Callable[[int, TrainState], Any]] = None,
                       step_callback: Optional[Callable[[int, np.ndarray, dict], Any]] = None,
                       batch_source=None, stop_after_epoch: Optional[int] = None
                       ) -> TrainResult:
  """Trains `config.model` on `data.train` (or its subset `train_ids`); evaluates on data.test.

  epoch_callback(epoch, state): called after each completed epoch (epoch = 1, 2,
    ...; an epoch is ceil(n_train / sampled batch) steps) with the unreplicated
    state, on every process.
  step_callback(step, ids, per_example): for every step this call runs, in order, the global
    batch's example ids and a dict of per-example arrays from the training forward pass
    (train mode, augmented, before the update): 'correct', 'loss', 'margin'; on every process.
    Delivered in bunches when metrics are fetched (every log_every_steps, epoch end, eval),
    so it adds no per-step device sync.
  batch_source: chooses each step's examples (default `SamplerSource`): an object with
    ``batch(step, ctx: BatchContext) -> (positions, weights or None)`` ((None, None) ends
    training before total_steps, with the schedule of total_steps: InfoBatch), optionally
    ``sampled_batch_size`` (the sampler's batch, e.g. RHO-LOSS's candidates) and
    ``total_steps(default) -> int``. RHO-LOSS and InfoBatch plug in here.
  stop_after_epoch: stop (no final evaluation or checkpoint) once this epoch's callback ran;
    scoring at an early epoch uses it.
  """
  t0 = time.time()
  # ---- Devices and config ----
  devices = parallel.local_devices(_get(config, "num_devices"))
  n_total = parallel.total_device_count(devices)
  _validate(config, n_total)
  is_main = parallel.process_index() == 0
  seed = int(_get(config, "seed", 0))
  loss_name = _get(config, "loss", "cross_entropy")
  batch_size = int(config.batch_size)

  # ---- Data ----
  if data is None:
    data = load_data(config)
  train_ds = data.train
  if train_ids is not None:
    train_ids = np.asarray(train_ids)
    if train_ids.size == 0:
      raise ValueError(f"empty train_ids: nothing to train on ({data.train.name})")
    train_ds = data.train.subset(train_ids)
  n_train = len(train_ds)
  source = batch_source if batch_source is not None else SamplerSource()
  sampled_bs = int(getattr(source, "sampled_batch_size", None) or batch_size)
  if sampled_bs % n_total:
    raise ValueError(f"the batch source samples {sampled_bs} examples per step, not divisible "
                     f"by the total device count {n_total}")
  sampler = IndexSampler(train_ds.ids, sampled_bs, seed)
  spe = sampler.steps_per_epoch
  total_steps = num_train_steps(config, n_train, sampled_bs)
  if hasattr(source, "total_steps"):
    total_steps = int(source.total_steps(total_steps))

  # ---- Model, optimiser, state ----
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

  ids_train = train_ds.ids

  def gather(lp):
    """(x, dense y) of this process's positions: in-memory rows or streamed records
    (core.data.records), so each host reads only its slice of the global batch."""
    x, y = train_ds.gather(lp)
    return x, dense_targets(y, train_ds.num_classes)

  # ---- Files and checkpoints ----
  history: list = []
  ckpt = None
  metrics_path = None
  if workdir:
    # Refuse to resume checkpoints of a run under another config (core/workdir.py).
    check_resume(workdir, config, {"train": train_ds.fingerprint(),
                                   "test": data.test.fingerprint()}, write=is_main)
    if is_main:
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2) if hasattr(config, "to_json_best_effort")
                else json.dumps(dict(config), indent=2, default=str))
      metrics_path = os.path.join(workdir, "metrics.jsonl")
    if _get(config, "checkpoint", True):
      from core.checkpoint import Checkpointer
      ckpt = Checkpointer(os.path.join(os.path.abspath(workdir), "checkpoints"),
                          max_to_keep=int(_get(config, "max_checkpoints", 2)))
      if ckpt.latest_step() is not None:
        state = ckpt.restore(state)
  start_step = int(state.step)
  if metrics_path:
    if start_step > 0 and os.path.exists(metrics_path):
      history = _read_history(metrics_path, start_step)
    _write_json_lines(metrics_path, history, mode="w")

  rstate = parallel.replicate(state, devices)

  def eval_losses(positions: np.ndarray) -> np.ndarray:
    """Eval-mode per-example losses on a global batch of positions, in the given order."""
    positions = np.asarray(positions)
    if len(positions) % n_total:
      raise ValueError(f"eval_losses: {len(positions)} positions, not divisible by the total "
                       f"device count {n_total}")
    lp = positions[parallel.process_slice(len(positions), devices)]
    xb, yb = gather(lp)
    batch = parallel.shard({"x": xb, "y": yb, "id": ids_train[lp].astype(np.int32)}, devices)
    losses, got_ids = parallel.fetch(
        _compiled_eval_loss(model, loss_name, tuple(devices))(rstate, batch))
    where = {int(i): k for k, i in enumerate(np.asarray(got_ids))}  # all_gather: device order
    return np.asarray(losses)[[where[int(i)] for i in ids_train[positions]]]

  ctx = BatchContext(sampler=sampler, ids=ids_train, batch_size=batch_size,
                     eval_losses=eval_losses)

  log_every = int(_get(config, "log_every_steps", 50))
  eval_every = int(_get(config, "eval_every_steps", 0))
  ckpt_every = int(_get(config, "checkpoint_every_steps", 0))
  stop_after = _get(config, "stop_after_steps")
  eval_bs = int(_get(config, "eval_batch_size", 1024))
  pending: list = []
  last_train = {}
  last_flush = [time.time(), start_step]

  def log(record):
    history.append(record)
    if metrics_path:
      _write_json_lines(metrics_path, [record])

  def flush(step):
    nonlocal pending, last_train
    if not pending:
      return
    fetched = list(zip([s for s, _ in pending], parallel.fetch([m for _, m in pending])))
    pending = []
    if step_callback is not None:
      for s, m in fetched:
        step_callback(s, np.asarray(m["id"]), {"correct": np.asarray(m["correct"]),
                                               "loss": np.asarray(m["example_loss"]),
                                               "margin": np.asarray(m["margin"])})
    for s, m in fetched:
      if not np.isfinite(m["loss"]):
        raise NonFiniteLossError(f"non-finite training loss {float(m['loss'])} at step {s} "
                                 f"(lr={float(sched(s - 1))}); lower optimizer.lr?")
    mean = lambda k: float(np.mean([m[k] for _, m in fetched]))
    last_train = {"train_loss": mean("loss"), "train_accuracy": mean("accuracy")}
    now = time.time()
    rate = (step - last_flush[1]) / max(now - last_flush[0], 1e-9)
    last_flush[:] = [now, step]
    log({"step": step, "epoch": step / spe, "lr": float(sched(step - 1)), **last_train,
         "l2_grads": mean("l2_grads"), "l2_params": mean("l2_params"),
         "l2_updates": mean("l2_updates"), "steps_per_s": rate,
         "examples_per_s": rate * batch_size})

  def run_eval(step, state_host, final=False):
    ev = evaluate(model, state_host, data.test, eval_bs, loss=loss_name,
                  num_devices=_get(config, "num_devices"))
    rec = {"step": step, "epoch": step / spe, "test_loss": ev["loss"],
           "test_accuracy": ev["accuracy"]}
    if final:
      rec["final"] = True
    log(rec)
    return rec

  pbar = tqdm(total=total_steps, initial=start_step, desc=f"train {data.name}",
              disable=not (is_main and _get(config, "progress_bar", True)), leave=False)

  # ---- Train ----
  sl_b = parallel.process_slice(batch_size, devices)
  step = start_step
  stopped = False
  while step < total_steps:
    pos, weights = source.batch(step, ctx)
    if pos is None:  # the batch source ends training early (InfoBatch after its last epoch)
      break
    pos = np.asarray(pos)
    if pos.shape != (batch_size,):
      raise ValueError(f"batch source returned {pos.shape} positions at step {step}; "
                       f"expected ({batch_size},)")
    w = np.ones(batch_size, np.float32) if weights is None else np.asarray(weights, np.float32)
    lp = pos[sl_b]
    xb, yb = gather(lp)
    batch = parallel.shard({"x": xb, "y": yb, "id": ids_train[lp].astype(np.int32),
                            "weight": w[sl_b]}, devices)
    rstate, m = p_train(rstate, batch)
    step += 1
    pending.append((step, m))
    pbar.update(1)
    if step % log_every == 0 or step == total_steps:
      flush(step)
      if last_train:
        pbar.set_postfix(loss=f"{last_train['train_loss']:.4f}")
    host_state = None
    if epoch_callback is not None and step % spe == 0:
      flush(step)
      host_state = parallel.unreplicate(rstate)
      epoch_callback(step // spe, host_state)
      if stop_after_epoch is not None and step // spe >= int(stop_after_epoch):
        stopped = True
        break
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
  pbar.close()

  # ---- Final evaluation ----
  final_state = parallel.unreplicate(rstate)
  if not last_train:  # resumed an already finished run: report the logged values
    prev = [r for r in history if "train_loss" in r]
    if prev:
      last_train = {k: prev[-1][k] for k in ("train_loss", "train_accuracy")}
  metrics = {"steps": step, "total_steps": total_steps, "epochs": step / spe,
             "steps_per_epoch": spe, "num_train_examples": n_train,
             "examples_seen": step * batch_size, **last_train}
  if stopped:
    metrics["stopped_at_step"] = step
  else:
    if ckpt is not None:
      ckpt.save(step, final_state)
    rec = run_eval(step, final_state, final=True)
    metrics.update(test_loss=rec["test_loss"], test_accuracy=rec["test_accuracy"])
  metrics["wall_time_s"] = time.time() - t0
  if ckpt is not None:
    ckpt.close()
  return TrainResult(state=final_state, model=model, metrics=metrics, history=history)
