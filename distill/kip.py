"""Kernel Inducing Points (KIP; Nguyen, Chen, Lee 2021, arXiv:2011.00050).

A support set (X_s, Y_s), initialised with a class-balanced random sample of the
training set, is optimised with Adam so that kernel ridge regression on it
predicts a class-balanced target batch (X_t, Y_t) of the training set well:

    loss = 0.5 * mean((K_ts (K_ss + lambda I)^-1 Y_s - Y_t)^2),
    lambda = reg * trace(K_ss) / n_s,  Y = one_hot - 1/C (centred).

Target batches are a function of (seed, step) only, so a resumed run sees the
same batches as an uninterrupted one. With `workdir`, the support set and the
Adam state are checkpointed (npz, written atomically) and a rerun with the
same workdir resumes; metrics are appended to `kip_log.jsonl`.

Entry point: `distill_kip(train, images_per_class, config, seed=...)`.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from distill import kernels
from distill import krr
from distill.support import SupportSet, check_finite, check_images_per_class, init_support
from core.config import config_value as _get
from core.io import CorruptFileError, atomic_save_npz, atomic_write_text, is_writer, load_npz

CKPT_NAME = "kip_ckpt.npz"
LOG_NAME = "kip_log.jsonl"


@flax.struct.dataclass
class KIPState:
  """Optimisation state: step counter, support inputs/targets, Adam state."""
  step: Any
  x: Any
  y: Any
  opt_state: Any


@flax.struct.dataclass
class KIPResult:
  support: SupportSet
  history: list = flax.struct.field(pytree_node=False, default_factory=list)


def target_batch_positions(labels: np.ndarray, num_classes: int, per_class: int,
                           seed: int, step: int) -> np.ndarray:
  """Row positions of a class-balanced target batch; a function of (seed, step).

  `per_class` examples of every class without replacement (all of a class that
  is smaller), sorted.
  """
  if int(per_class) < 1:
    raise ValueError(f"target per_class must be >= 1, got {per_class}")
  rng = np.random.default_rng([int(seed), int(step), 0x4B1F])
  labels = np.asarray(labels)
  out = []
  for c in range(num_classes):
    members = np.flatnonzero(labels == c)
    out.append(rng.choice(members, size=min(int(per_class), len(members)), replace=False))
  return np.sort(np.concatenate(out))


# ----------------------------------------------------------------------------
# Loss and step.


def kip_loss(params: dict, x_t, y_t, labels_t, kernel_fn: Callable, reg: float):
  """KIP loss of support params {'x', 'y'} on targets; returns (loss, accuracy)."""
  x_s, y_s = params["x"], params["y"]
  k_ss = kernel_fn(x_s, x_s)
  k_ts = kernel_fn(x_t, x_s)
  pred = krr.krr_predict(k_ts, k_ss, y_s, reg)
  return krr.mse_loss(pred, y_t), krr.accuracy(pred, labels_t)


def make_optimizer(lr: float) -> optax.GradientTransformation:
  if not float(lr) > 0:
    raise ValueError(f"learning rate must be > 0, got {lr}")
  return optax.adam(float(lr))


def init_kip_state(support: SupportSet, optimizer) -> KIPState:
  params = {"x": jnp.asarray(support.x, jnp.float64), "y": jnp.asarray(support.y, jnp.float64)}
  return KIPState(step=jnp.asarray(0, jnp.int32), x=params["x"], y=params["y"],
                  opt_state=optimizer.init(params))


def make_kip_step(kernel_fn: Callable, optimizer, reg: float, learn_labels: bool = False):
  """Jitted `kip_step(state, x_t, y_t, labels_t) -> (state, {'loss', 'accuracy'})`.

  One Adam step on the support images (and, with `learn_labels`, the support
  targets). Metrics are those of the state *before* the step. Call within
  `kernels.x64()`.
  """
  reg = krr.check_reg(reg)

  @jax.jit
  def kip_step(state: KIPState, x_t, y_t, labels_t):
    params = {"x": state.x, "y": state.y}
    (loss, acc), grads = jax.value_and_grad(kip_loss, has_aux=True)(
        params, x_t, y_t, labels_t, kernel_fn, reg)
    if not learn_labels:
      grads = {"x": grads["x"], "y": jnp.zeros_like(grads["y"])}
    updates, opt_state = optimizer.update(grads, state.opt_state, params)
    params = optax.apply_updates(params, updates)
    new = state.replace(step=state.step + 1, x=params["x"], y=params["y"], opt_state=opt_state)
    return new, {"loss": loss, "accuracy": acc}

  return kip_step


# ----------------------------------------------------------------------------
# Checkpoints and logs.


def save_checkpoint(path: str, state: KIPState, support: SupportSet, meta: dict) -> None:
  """Support set + Adam state as npz, written to a temp file then os.replace'd."""
  leaves = jax.tree_util.tree_leaves(state.opt_state)
  atomic_save_npz(path, x=np.asarray(state.x), y=np.asarray(state.y),
                  step=np.asarray(state.step), labels=np.asarray(support.labels),
                  init_ids=np.asarray(support.init_ids), meta=np.asarray(json.dumps(meta, sort_keys=True)),
                  **{f"opt_{i}": np.asarray(l) for i, l in enumerate(leaves)})


def load_checkpoint(path: str, template: KIPState, meta: dict) -> KIPState:
  """The KIP state saved at `path` (read through core.io.load_npz: a truncated or corrupt
  file raises CorruptFileError naming it; deleting it restarts the run from step 0)."""
  leaves, treedef = jax.tree_util.tree_flatten(template.opt_state)
  keys = ("x", "y", "step", "meta") + tuple(f"opt_{i}" for i in range(len(leaves)))
  f = load_npz(path, keys, what="KIP checkpoint")
  try:
    saved_meta = json.loads(str(f["meta"]))
  except json.JSONDecodeError as e:
    raise CorruptFileError(f"KIP checkpoint {path} has unreadable metadata ({e}); delete it "
                           f"and rerun (the run restarts from step 0)") from None
  if saved_meta != json.loads(json.dumps(meta, sort_keys=True)):
    diff = {k: (saved_meta.get(k), meta.get(k)) for k in set(saved_meta) | set(meta)
            if saved_meta.get(k) != meta.get(k)}
    raise ValueError(f"{path} is a checkpoint of a different KIP run (saved vs now: {diff}); "
                     "use another workdir")
  new_leaves = [jnp.asarray(f[f"opt_{i}"], dtype=jnp.asarray(l).dtype) for i, l in enumerate(leaves)]
  return KIPState(step=jnp.asarray(int(f["step"]), jnp.int32), x=jnp.asarray(f["x"]),
                  y=jnp.asarray(f["y"]), opt_state=jax.tree_util.tree_unflatten(treedef, new_leaves))


def _read_log(path: str, upto_step: int) -> list:
  """Log rows of the iterations a checkpoint at `upto_step` covers (steps < upto_step; the
  resumed run logs its first step again). A partial last line (a kill while appending) is
  dropped; an unreadable line before it raises CorruptFileError naming the file."""
  if not os.path.exists(path):
    return []
  with open(path) as fh:
    lines = [l.strip() for l in fh]
  while lines and not lines[-1]:
    lines.pop()
  rows = []
  for i, line in enumerate(lines):
    if not line:
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      if i == len(lines) - 1:
        break  # partial last line of a killed run
      raise CorruptFileError(f"KIP log {path} line {i + 1} is not JSON ({e}); delete it and "
                             f"rerun (the log restarts with the checkpoint's step)") from None
    if row["step"] < upto_step:
      rows.append(row)
  return rows


# ----------------------------------------------------------------------------
# Driver.


def distill_kip(train, images_per_class: int, config, *, seed: int = 0,
                workdir: Optional[str] = None, test=None, progress: bool = True) -> KIPResult:
  """Runs KIP on `train` (core.data.ArrayDataset) and returns the support set.

  Args:
    train: training split; targets are its labels as centred one-hot vectors.
    images_per_class: support images per class (<= smallest class size).
    config: ConfigDict/dict with `kernel` (fields of `kernels.KernelSpec`) and
      `kip` (steps, lr, reg, learn_labels, target_per_class, log_every,
      eval_every, checkpoint_every, kernel_batch_size).
    seed: seeds the initial sample and the target batches.
    workdir: if given, checkpoints/logs go here and an existing checkpoint of
      the same run is resumed.
    test: optional ArrayDataset; KRR test accuracy/MSE is logged every
      `eval_every` steps.
  Returns:
    KIPResult(support=SupportSet (numpy, float64), history=[log rows]).
  """
  kc = config["kip"]
  reg = krr.check_reg(kc["reg"])
  steps = int(kc["steps"])
  if steps < 0:
    raise ValueError(f"kip.steps must be >= 0, got {steps}")
  spec = kernels.KernelSpec.from_config(dict(config["kernel"], num_classes=train.num_classes))
  kernel_fn = kernels.make_kernel_fn(spec, train.example_shape)
  support = init_support(train, images_per_class, seed)
  labels = np.asarray(train.labels)
  x_train = np.asarray(train.x, np.float64)
  y_train = krr.centered_one_hot(labels, train.num_classes)
  per_class = int(_get(kc, "target_per_class", 50))
  log_every = max(1, int(_get(kc, "log_every", 50)))
  eval_every = int(_get(kc, "eval_every", 0) or 0)
  ckpt_every = max(1, int(_get(kc, "checkpoint_every", 200)))
  kbs = int(_get(kc, "kernel_batch_size", 256))
  learn_labels = bool(_get(kc, "learn_labels", False))
  optimizer = make_optimizer(kc["lr"])
  meta = {"images_per_class": int(images_per_class), "seed": int(seed), "lr": float(kc["lr"]),
          "reg": reg, "learn_labels": learn_labels, "target_per_class": per_class,
          "kernel": str(spec), "train": train.fingerprint()}

  history = []
  with kernels.x64():
    state = init_kip_state(support, optimizer)
    ckpt = log_path = None
    if workdir:
      os.makedirs(workdir, exist_ok=True)
      ckpt, log_path = os.path.join(workdir, CKPT_NAME), os.path.join(workdir, LOG_NAME)
      if os.path.exists(ckpt):
        state = load_checkpoint(ckpt, state, meta)
        history = _read_log(log_path, int(state.step))
      # The log holds exactly the rows of the steps run so far (none without a checkpoint).
      atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in history))
    kip_step = make_kip_step(kernel_fn, optimizer, reg, learn_labels)

    def evaluate(st) -> dict:
      if test is None:
        return {}
      m = krr.krr_evaluate(kernel_fn, np.asarray(st.x), np.asarray(st.y), test.x, test.labels,
                           reg, kbs)
      return {"test_accuracy": m["accuracy"], "test_mse": m["mse"]}

    def log(row):
      history.append(row)
      if log_path and is_writer():
        with open(log_path, "a") as fh:
          fh.write(json.dumps(row) + "\n")

    start = int(state.step)
    bar = None
    if progress:
      from tqdm import tqdm
      bar = tqdm(total=steps, initial=start, desc=f"KIP ipc={images_per_class} seed={seed}",
                 leave=False, dynamic_ncols=True)
    for step in range(start, steps):
      pos = target_batch_positions(labels, train.num_classes, per_class, seed, step)
      state, m = kip_step(state, jnp.asarray(x_train[pos]), jnp.asarray(y_train[pos]),
                          jnp.asarray(labels[pos]))
      done = step + 1
      if done % log_every == 0 or done == steps or step == start:
        loss, acc = float(m["loss"]), float(m["accuracy"])
        if not np.isfinite(loss) or not np.isfinite(np.asarray(state.x)).all():
          raise ValueError(f"KIP diverged: loss={loss} / non-finite support at step {step} "
                           f"(lr={kc['lr']}, reg={reg}); lower kip.lr or raise kip.reg")
        row = {"step": step, "loss": loss, "batch_accuracy": acc}
        if eval_every and (done % eval_every == 0 or done == steps):
          row.update(evaluate(state))
        log(row)
        if bar is not None:
          bar.set_postfix(loss=f"{loss:.4g}", acc=f"{acc:.3f}")
      if bar is not None:
        bar.update(1)
      if ckpt and (done % ckpt_every == 0 or done == steps):
        save_checkpoint(ckpt, state, support, meta)
    if bar is not None:
      bar.close()
    out = SupportSet(x=np.asarray(state.x), y=np.asarray(state.y), labels=support.labels,
                     init_ids=support.init_ids)
  check_finite(out.x, "KIP support images")
  check_finite(out.y, "KIP support targets")
  return KIPResult(support=out, history=history)
