"""Shared machinery of the network-based distillation methods (DD, DC, DSA, DM).

Each method learns synthetic images S = (x_s, labels) of `images_per_class` per
class (sorted by class, shape (C * ipc, *example_shape)) by gradient steps
driven by random networks and class-balanced batches of real images.

  * `init_images`: the start, a class-balanced random real sample ('real', as
    KIP) or N(0, 1) noise ('noise', DC's default; init_ids = -1).
  * `class_batch`: real positions of a per-class batch as a (B, C) array
    (B = min(batch, largest class), padded to a multiple of the device count)
    with weights (B, C) = 1 / n_c on the n_c real rows of class c and 0 on
    padding, so a weighted sum over B is the class mean. Batches are a pure
    function of (seed, iteration, salt): a resumed run sees the same batches.
  * `Devices`: data parallelism over local devices (core.parallel): real
    batches are sharded along B; the synthetic set, the networks and the
    optimiser states are replicated; per-device partial sums over B are combined
    with `psum` (pmean x device count), so 1 and k devices give the same result.
  * `run_distiller`: the outer loop with tqdm, NaN checks, an npz checkpoint of
    the whole state (support + optimiser state + iteration + elapsed seconds,
    written atomically) every `checkpoint_every` iterations, resume from it,
    `<method>_log.jsonl`, and the cost (wall-clock seconds, example passes).
  * `check_config`, `read_iterations`, `setup` -> `Setup`: what every method
    builds from (budget, initial set, network, devices, class batches, the
    `Distiller` with its checkpoint identity); `run_from_config` and
    `support_entry`: the entry points. A method module keeps its loss, its
    per-iteration update and its cost per iteration.

Cost unit, `example_passes`: one example through one forward pass or one
backward pass of a network counts 1 (a forward+backward gradient is 2; the
extra backward through a gradient, as in DC's and DD's second-order terms,
adds 1 per example).

The support set has KIP's format (distill.support.SupportSet): y = one_hot - 1/C
(hard labels, centred), x float32.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from core import parallel
from core.config import config_value as _get
from core.io import atomic_save_npz, atomic_write_text, is_writer
from distill.support import SupportSet, check_finite, check_images_per_class, init_support

INITS = ("real", "noise")
DEFAULT_MODEL = {"name": "convnet", "width": 128, "depth": 3, "norm": "instance"}
# Method-config keys that do not change the result of an iteration (a checkpoint written
# with other values resumes): more iterations extend a run.
RUN_ONLY_KEYS = ("num_devices", "log_every", "checkpoint_every", "iterations", "progress")


# ----------------------------------------------------------------------------
# Validation, initialisation, batches.


def validate(train, images_per_class: int, method: str) -> int:
  """Budget <= smallest class and finite inputs, else ValueError naming the method."""
  try:
    ipc = check_images_per_class(train.labels, train.num_classes, images_per_class)
    check_finite(train.x, f"{getattr(train, 'name', 'train')} inputs")
  except ValueError as e:
    raise ValueError(f"{method}: {e}") from None
  return ipc


def init_images(train, images_per_class: int, seed: int, init: str = "real") -> SupportSet:
  """Initial synthetic set (float32), sorted by class, centred one-hot targets."""
  if init not in INITS:
    raise ValueError(f"unknown init {init!r}; choose from {INITS}")
  s = init_support(train, images_per_class, seed)
  x = np.asarray(s.x, np.float32)
  ids = s.init_ids
  if init == "noise":
    rng = np.random.default_rng([int(seed), 0x5EED])
    x = rng.standard_normal(x.shape).astype(np.float32)
    ids = np.full_like(ids, -1)
  return SupportSet(x=x, y=np.asarray(s.y, np.float32), labels=s.labels, init_ids=ids)


def class_positions(labels: np.ndarray, num_classes: int) -> list:
  labels = np.asarray(labels)
  return [np.flatnonzero(labels == c) for c in range(num_classes)]


def class_batch(members: list, batch_per_class: int, seed: int, step: int, salt: int = 0,
                multiple: int = 1):
  """(positions (B, C) int64, weights (B, C) float32): per class min(batch, n_c) real rows.

  Without replacement; weight 1/n_c on the drawn rows and 0 on padding rows (which
  repeat the class's first member). B = min(batch, largest class) rounded up to
  `multiple`.
  """
  if int(batch_per_class) < 1:
    raise ValueError(f"batch_real must be >= 1, got {batch_per_class}")
  rng = np.random.default_rng([int(seed), int(step), int(salt), 0xD15C])
  b = min(int(batch_per_class), max(len(m) for m in members))
  b = -(-b // multiple) * multiple
  pos = np.zeros((b, len(members)), np.int64)
  w = np.zeros((b, len(members)), np.float32)
  for c, m in enumerate(members):
    take = rng.choice(m, size=min(int(batch_per_class), len(m)), replace=False)
    pos[:, c] = m[0]
    pos[:len(take), c] = take
    w[:len(take), c] = 1.0 / len(take)
  return pos, w


def loops_for(images_per_class: int, outer_loop=None, inner_loop=None) -> tuple:
  """DC's (outer_loop, inner_loop) per images/class (their get_loops), or as given."""
  table = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}
  if outer_loop is not None and inner_loop is not None:
    out = (int(outer_loop), int(inner_loop))
  elif int(images_per_class) in table:
    o, i = table[int(images_per_class)]
    out = (int(outer_loop or o), int(inner_loop if inner_loop is not None else i))
  else:
    raise ValueError(f"no default outer/inner loop for images_per_class={images_per_class} "
                     f"(DC defines {sorted(table)}); set outer_loop and inner_loop")
  if out[0] < 1 or out[1] < 0:
    raise ValueError(f"outer_loop must be >= 1 and inner_loop >= 0, got {out}")
  return out


# ----------------------------------------------------------------------------
# Networks.


def make_network(model_cfg, num_classes: int, example_shape, key):
  """(module, params) of core.models; only models without batch statistics."""
  from core.models import create_model
  model = create_model(model_cfg, num_classes=num_classes)
  variables = model.init(key, jnp.zeros((1,) + tuple(example_shape), jnp.float32), train=False)
  extra = sorted(k for k in variables if k != "params")
  if extra:
    raise ValueError(f"model {dict(model_cfg)} has collections {extra} (batch statistics); "
                     "network-based distillation needs a model without them, e.g. "
                     "convnet with norm='instance' or 'none'")
  return model, variables["params"]


def cross_entropy(logits, labels):
  """Per-example cross-entropy with integer labels (float32 or wider)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)))
  return -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=1)[:, 0]


# ----------------------------------------------------------------------------
# Devices.


class Devices:
  """Local devices of a data-parallel run (one process; real batches sharded along B)."""

  def __init__(self, num_devices: Optional[int] = None):
    if jax.process_count() > 1:
      raise ValueError("network-based distillation runs on one process (its local devices)")
    self.devices = parallel.local_devices(num_devices)
    self.n = len(self.devices)

  def pmap(self, fn: Callable, **kw) -> Callable:
    return parallel.pmap(fn, self.devices, **kw)

  def replicate(self, tree):
    return parallel.replicate(tree, self.devices)

  def shard(self, tree):
    return parallel.shard(tree, self.devices)

  def fetch(self, tree):
    return parallel.unreplicate(tree)

  def psum(self, tree):
    """Inside `pmap`: sum over devices."""
    n = self.n
    return jax.tree.map(lambda v: parallel.pmean(v) * n, tree)


# ----------------------------------------------------------------------------
# The outer loop.


@dataclasses.dataclass
class Distiller:
  """One method's run: what `run_distiller` needs.

  state0: host pytree (dict) of numpy arrays, containing 'x' (synthetic images);
  step(dev_state, iteration) -> (dev_state, metrics dict of scalars); put/get move
  the state to/from devices; passes(iteration): example passes of one iteration.
  """
  name: str
  iterations: int
  state0: dict
  step: Callable
  put: Callable
  get: Callable
  passes: Callable
  meta: dict
  support0: SupportSet


@dataclasses.dataclass
class DistillResult:
  support: SupportSet
  history: list
  cost: dict
  extra: dict = dataclasses.field(default_factory=dict)


def _save(path: str, state: dict, it: int, seconds: float, passes: float, meta: dict) -> None:
  leaves = jax.tree_util.tree_leaves(state)
  atomic_save_npz(path, iteration=np.asarray(it), seconds=np.asarray(seconds),
                  passes=np.asarray(passes), meta=np.asarray(json.dumps(meta, sort_keys=True)),
                  **{f"leaf_{i}": np.asarray(l) for i, l in enumerate(leaves)})


def _load(path: str, template: dict, meta: dict):
  with np.load(path, allow_pickle=False) as f:
    saved = json.loads(str(f["meta"]))
    now = json.loads(json.dumps(meta, sort_keys=True))
    if saved != now:
      diff = {k: (saved.get(k), now.get(k)) for k in set(saved) | set(now)
              if saved.get(k) != now.get(k)}
      raise ValueError(f"{path} is a checkpoint of a different run (saved vs now: {diff}); "
                       "use another workdir")
    leaves, treedef = jax.tree_util.tree_flatten(template)
    new = [np.asarray(f[f"leaf_{i}"], dtype=np.asarray(l).dtype) for i, l in enumerate(leaves)]
    return (jax.tree_util.tree_unflatten(treedef, new), int(f["iteration"]),
            float(f["seconds"]), float(f["passes"]))


def _read_log(path: str, upto: int) -> list:
  if not os.path.exists(path):
    return []
  with open(path) as fh:
    rows = [json.loads(l) for l in fh if l.strip()]
  return [r for r in rows if r["iteration"] < upto]


def run_distiller(d: Distiller, *, workdir: Optional[str] = None, progress: bool = True,
                  log_every: int = 10, checkpoint_every: int = 50,
                  stop_after: Optional[int] = None) -> DistillResult:
  """Runs `d.iterations` iterations (resuming from `workdir`), returns the support set.

  `stop_after` stops (after checkpointing) as if killed after that many
  iterations; for resume tests.
  """
  log_every, checkpoint_every = max(1, int(log_every)), max(1, int(checkpoint_every))
  state, start, seconds, passes = d.state0, 0, 0.0, 0.0
  ckpt = log_path = None
  history: list = []
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    ckpt = os.path.join(workdir, f"{d.name}_ckpt.npz")
    log_path = os.path.join(workdir, f"{d.name}_log.jsonl")
    if os.path.exists(ckpt):
      state, start, seconds, passes = _load(ckpt, d.state0, d.meta)
      history = _read_log(log_path, start)
      if is_writer():
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in history))
  end = d.iterations if stop_after is None else min(d.iterations, int(stop_after))
  dev = d.put(state)
  bar = None
  if progress and end > start:
    from tqdm import tqdm
    bar = tqdm(total=d.iterations, initial=start, desc=d.name, leave=False, dynamic_ncols=True)
  t0 = time.time()
  for it in range(start, end):
    dev, metrics = d.step(dev, it)
    passes += float(d.passes(it))
    done = it + 1
    if done % log_every == 0 or done == end or it == start:
      m = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if not all(np.isfinite(v) for v in m.values()):
        raise ValueError(f"{d.name} diverged at iteration {it}: {m}; lower the image "
                         "learning rate")
      row = {"iteration": it, **m, "seconds": round(seconds + time.time() - t0, 3)}
      history.append(row)
      if log_path and is_writer():
        with open(log_path, "a") as fh:
          fh.write(json.dumps(row) + "\n")
      if bar is not None:
        bar.set_postfix({k: f"{v:.4g}" for k, v in m.items()})
    if bar is not None:
      bar.update(1)
    if ckpt and (done % checkpoint_every == 0 or done == end):
      host = d.get(dev)
      _save(ckpt, host, done, seconds + time.time() - t0, passes, d.meta)
  if bar is not None:
    bar.close()
  host = d.get(dev)
  seconds += time.time() - t0
  x = np.asarray(host["x"], np.float32)
  check_finite(x, f"{d.name} synthetic images")
  s0 = d.support0
  support = SupportSet(x=x, y=np.asarray(s0.y, np.float32), labels=s0.labels,
                       init_ids=s0.init_ids)
  cost = {"seconds": round(seconds, 3), "example_passes": float(passes),
          "iterations": int(end)}
  if workdir and is_writer():
    atomic_write_text(os.path.join(workdir, f"{d.name}_cost.json"), json.dumps(cost) + "\n")
  extra = {k: np.asarray(v) for k, v in host.items() if k not in ("x", "opt_state")}
  return DistillResult(support=support, history=history, cost=cost, extra=extra)


def common_meta(train, images_per_class: int, seed: int, mc) -> dict:
  """Checkpoint identity: the method config, budget, seed and data fingerprint."""
  d = mc.to_dict() if hasattr(mc, "to_dict") else dict(mc)
  d = {k: v for k, v in d.items() if k not in RUN_ONLY_KEYS}
  return {"images_per_class": int(images_per_class), "seed": int(seed),
          "train": train.fingerprint(), "config": json.loads(json.dumps(d, default=str))}


def method_config(config, name: str):
  mc = _get(config, name)
  if mc is None:
    raise ValueError(f"config has no '{name}' section")
  return mc


# ----------------------------------------------------------------------------
# What every method builds from, and its entry points.


def check_config(train, images_per_class: int, mc, name: str, known: tuple) -> int:
  """The budget (validated against `train`) or ValueError; unknown keys of `mc` also raise."""
  ipc = validate(train, images_per_class, name.upper())
  unknown = sorted(set(dict(mc)) - set(known))
  if unknown:
    raise ValueError(f"{name}: unknown config keys {unknown}; known: {known}")
  return ipc


def read_iterations(mc, name: str, default: int) -> int:
  iterations = int(_get(mc, "iterations", default))
  if iterations < 0:
    raise ValueError(f"{name}.iterations must be >= 0, got {iterations}")
  return iterations


@dataclasses.dataclass
class Setup:
  """The pieces every method builds from (train, budget, method config, seed).

  support0: the initial synthetic set, C * ipc rows sorted by class; model: the
  core.models module (no batch statistics); x_train (N, *example_shape) float32;
  members: per class, its positions in x_train; batch_real: real rows per class.
  """
  name: str
  train: Any
  mc: Any
  ipc: int
  seed: int
  batch_real: int
  num_classes: int
  example_shape: tuple
  support0: SupportSet
  model: Any
  devs: Devices
  x_train: np.ndarray
  members: list

  @property
  def x0(self) -> np.ndarray:
    """The initial synthetic images (C * ipc, *example_shape) float32."""
    return np.asarray(self.support0.x, np.float32)

  def real_batch(self, iteration: int, salt: int = 0):
    """Host (x_real (B, C, *example_shape), weights (B, C)): see `class_batch`."""
    pos, w = class_batch(self.members, self.batch_real, self.seed, iteration, salt, self.devs.n)
    return self.x_train[pos], w

  def real_examples(self) -> int:
    """Real rows in one class batch (without padding), for the cost."""
    return sum(min(self.batch_real, len(m)) for m in self.members)

  def distiller(self, iterations: int, state0: dict, step: Callable, passes_per_iteration: float,
                **meta) -> Distiller:
    """The run: state on all devices (replicated); checkpoint identity = common_meta + meta."""
    identity = common_meta(self.train, self.ipc, self.seed, self.mc)
    identity.update(meta)
    return Distiller(name=self.name, iterations=iterations, state0=state0, step=step,
                     put=self.devs.replicate, get=self.devs.fetch,
                     passes=lambda it: passes_per_iteration, meta=identity,
                     support0=self.support0)


def setup(train, ipc: int, mc, *, name: str, seed: int, batch_real: int) -> Setup:
  """Initial set (`mc.init`, default 'real'), network (`mc.model`, default DEFAULT_MODEL),
  devices (`mc.num_devices`) and real data for a method; `batch_real` is the method's
  default for `mc.batch_real`."""
  example_shape = tuple(train.example_shape)
  support0 = init_images(train, ipc, seed, _get(mc, "init", "real"))
  model_cfg = dict(_get(mc, "model", DEFAULT_MODEL))
  model, _ = make_network(model_cfg, train.num_classes, example_shape, jax.random.PRNGKey(0))
  return Setup(name=name, train=train, mc=mc, ipc=int(ipc), seed=int(seed),
               batch_real=int(_get(mc, "batch_real", batch_real)),
               num_classes=train.num_classes, example_shape=example_shape, support0=support0,
               model=model, devs=Devices(_get(mc, "num_devices")),
               x_train=np.asarray(train.x, np.float32),
               members=class_positions(train.labels, train.num_classes))


def run_from_config(d: Distiller, mc, *, workdir: Optional[str] = None, progress: bool = True,
                    stop_after: Optional[int] = None, log_every: int = 10,
                    checkpoint_every: int = 50) -> DistillResult:
  """`run_distiller` with `mc.log_every` / `mc.checkpoint_every` (defaults: the method's)."""
  return run_distiller(d, workdir=workdir, progress=progress,
                       log_every=int(_get(mc, "log_every", log_every)),
                       checkpoint_every=int(_get(mc, "checkpoint_every", checkpoint_every)),
                       stop_after=stop_after)


def support_entry(distill_fn: Callable, name: str, **fixed) -> Callable:
  """distill.evaluate's registry entry `name`: (train, ipc, config, *, seed, workdir, test,
  progress) -> SupportSet, running `distill_fn(..., **fixed)`."""
  def support(train, images_per_class: int, config, *, seed: int = 0,
              workdir: Optional[str] = None, test=None, progress: bool = False) -> SupportSet:
    del test
    return distill_fn(train, images_per_class, config, seed=seed, workdir=workdir,
                      progress=progress, **fixed).support

  support.__name__ = support.__qualname__ = f"{name}_support"
  support.__module__ = distill_fn.__module__
  support.__doc__ = f"distill.evaluate registry entry {name!r} -> SupportSet."
  return support
