"""Self-supervised encoders for the label-free prototype pruning metric (Sorscher et al. 2022).

Sorscher, Geirhos, Shekhar, Ganguli & Morcos (NeurIPS 2022) score each example by its
distance to the nearest k-means centroid in the embedding of a self-supervised network
(SwAV on ImageNet). This module trains such an encoder in JAX on the *training inputs only*:
`train_encoder(config, x, ids)` receives inputs and stable example ids, never labels.

Network (`SSLNet`): a backbone from `core.models.create_model` called with
``return_embedding=True`` (its penultimate features h, (n, d_h)), then a projection head
z = W2 relu(W1 h) (n, d_z), and for SwAV K prototypes C (K, d_z). Embeddings used for
pruning are h (``embed_layer='backbone'``, the default, as in SimCLR / SwAV evaluation) or z.

Objectives (``config.objective``); z-hat = z / ||z||, two augmented views a, b of N examples
(the global batch over all devices and hosts):

  * ``simclr``  NT-Xent (Chen et al. 2020). With u = [z-hat_a; z-hat_b] (2N, d_z) and
                s_ij = u_i . u_j / tau,
                    L = (1/2N) sum_i -log( exp(s_{i,p(i)}) / sum_{j != i} exp(s_ij) ),
                p(i) the other view of example i. Each device computes the terms of its
                own anchors against the keys all-gathered over every device
                (`core.parallel.all_gather`); the gradient of the gather is a reduce-scatter,
                so pmean of the per-device gradients is the gradient of the global L.
  * ``swav``    swapped assignment (Caron et al. 2020). Scores s = z-hat C-hat^T (C-hat = C
                with unit rows), codes q = Sinkhorn-Knopp(s), stop-gradient:
                    Q = exp(s / eps);  repeat n_iters: rows of Q^T (prototypes) sum to 1/K,
                    columns (examples) sum to 1/B;  q = B Q,
                computed on the scores of the whole global batch (all-gathered), optionally
                preceded by a queue of the last ``queue_length`` global embeddings (the
                queue is the same on every device). Loss
                    L = -(1/2N) sum_n [ q_a(n) . log softmax(s_b(n) / tau)
                                       + q_b(n) . log softmax(s_a(n) / tau) ].
                Prototype gradients are zeroed for the first ``freeze_prototypes_steps``.

Both losses are means over the global batch, so the loss and the gradients do not depend on
how a global batch is split over devices (tested 1 vs 8 devices). Views come from
`pruning.ssl_augment` (pure functions of (seed, step, view, example id)); data order from
`core.sampler.IndexSampler`; optimiser from `core.optim.make_optimizer`; orbax checkpoints
(`core.checkpoint`) in ``workdir/checkpoints`` make a killed run resume to the same result.

`embed(encoder, x)` -> (n, d) embeddings (a padded, masked pmapped pass);
`probe(train_emb, y_train, test_emb, y_test)` -> linear-probe (scikit-learn logistic
regression on standardised frozen embeddings) and k-NN (cosine) test accuracy: this is the
only place labels meet the encoder, after it was trained.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct

from core import parallel
from core.config import config_value as _get
from core.models import create_model
from core.sampler import IndexSampler, num_train_steps
from pruning import ssl_augment

OBJECTIVES = ("simclr", "swav")
EMBED_LAYERS = ("backbone", "projection")


# ----------------------------------------------------------------------------
# Losses (pure; `axis_name=None` = one device holds the whole batch).


def _normalize(z, eps: float = 1e-12):
  return z / jnp.sqrt(jnp.sum(z * z, axis=-1, keepdims=True) + eps)


def _gather(x, axis_name):
  return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def _offset(n_local: int, axis_name):
  return 0 if axis_name is None else jax.lax.axis_index(axis_name) * n_local


def nt_xent_loss(z1, z2, temperature: float, axis_name: Optional[str] = None):
  """NT-Xent of the local anchors (mean over 2 n_local terms) against all 2N keys.

  z1, z2: (n_local, d) projections of the two views of this device's examples. Under pmap
  the mean over devices of this value is the global NT-Xent (module docstring).
  """
  z1, z2 = _normalize(z1.astype(jnp.float32)), _normalize(z2.astype(jnp.float32))
  n = z1.shape[0]
  k1, k2 = _gather(z1, axis_name), _gather(z2, axis_name)
  N = k1.shape[0]
  keys = jnp.concatenate([k1, k2], axis=0)                      # (2N, d)
  g = _offset(n, axis_name) + jnp.arange(n)                     # global example indices
  anchors = jnp.concatenate([z1, z2], axis=0)                   # (2n, d)
  self_idx = jnp.concatenate([g, N + g])
  pos_idx = jnp.concatenate([N + g, g])
  logits = anchors @ keys.T / temperature                        # (2n, 2N)
  logits = jnp.where(jax.nn.one_hot(self_idx, 2 * N, dtype=bool), -jnp.inf, logits)
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, pos_idx[:, None], axis=1))


def sinkhorn(scores, epsilon: float = 0.05, n_iters: int = 3, mask=None):
  """Sinkhorn-Knopp codes of SwAV: (B, K) scores -> (B, K) soft assignments, rows sum to 1.

  Each prototype receives total mass B/K, each (valid) example mass 1. `mask` (B,) marks
  valid rows (e.g. a partly filled queue); masked rows get zero codes.
  """
  s = scores.astype(jnp.float32) / epsilon
  B, K = s.shape
  w = jnp.ones((B,), jnp.float32) if mask is None else mask.astype(jnp.float32)
  s = s - jnp.max(jnp.where(w[:, None] > 0, s, -jnp.inf))
  q = jnp.exp(s) * w[:, None]
  q = q / jnp.sum(q)
  b = jnp.sum(w)
  for _ in range(int(n_iters)):
    q = q / jnp.sum(q, axis=0, keepdims=True) / K
    rs = jnp.sum(q, axis=1, keepdims=True)
    q = jnp.where(rs > 0, q / jnp.where(rs > 0, rs, 1.0), 0.0) / b
  return q * b


def swav_loss(z1, z2, prototypes, *, temperature: float = 0.1, epsilon: float = 0.05,
              sinkhorn_iters: int = 3, queue=None, queue_mask=None,
              axis_name: Optional[str] = None):
  """SwAV swapped-prediction loss of the local examples (mean over 2 n_local terms).

  z1, z2: (n_local, d) projections; prototypes: (K, d) (rows are normalised here);
  queue: optional (2, Q, d) past normalised embeddings of view 1 / view 2 (the same on
  every device), queue_mask (Q,) which queue rows are filled. Codes come from Sinkhorn on
  [queue; global batch] scores, stop-gradient. Returns (loss, (z1_hat, z2_hat)).
  """
  z1, z2 = _normalize(z1.astype(jnp.float32)), _normalize(z2.astype(jnp.float32))
  c = _normalize(prototypes.astype(jnp.float32))
  s1, s2 = z1 @ c.T, z2 @ c.T
  n = z1.shape[0]
  off = _offset(n, axis_name)

  def codes(s_local, view):
    s_all = jax.lax.stop_gradient(_gather(s_local, axis_name))
    mask = None
    q_rows = 0
    if queue is not None:
      qs = jax.lax.stop_gradient(queue[view] @ c.T)
      q_rows = qs.shape[0]
      s_all = jnp.concatenate([qs, s_all], axis=0)
      mask = jnp.concatenate([queue_mask.astype(jnp.float32),
                              jnp.ones((s_all.shape[0] - q_rows,), jnp.float32)])
    q = sinkhorn(s_all, epsilon, sinkhorn_iters, mask)
    return jax.lax.stop_gradient(jax.lax.dynamic_slice_in_dim(q, q_rows + off, n, axis=0))

  q1, q2 = codes(s1, 0), codes(s2, 1)
  lp1 = jax.nn.log_softmax(s1 / temperature, axis=-1)
  lp2 = jax.nn.log_softmax(s2 / temperature, axis=-1)
  loss = -0.5 * (jnp.mean(jnp.sum(q1 * lp2, axis=-1)) + jnp.mean(jnp.sum(q2 * lp1, axis=-1)))
  return loss, (z1, z2)


# ----------------------------------------------------------------------------
# Network.


class SSLNet(nn.Module):
  """Backbone (penultimate features) + projection head [+ SwAV prototypes]."""
  backbone: nn.Module
  head_hidden: int = 128
  head_dim: int = 64
  num_prototypes: int = 0

  @nn.compact
  def __call__(self, x, train: bool = False):
    _, h = self.backbone(x, train=train, return_embedding=True)
    h = h.reshape((h.shape[0], -1))
    z = nn.Dense(self.head_dim, name="proj_out")(
        nn.relu(nn.Dense(self.head_hidden, name="proj_hidden")(h)))
    protos = None
    if self.num_prototypes:
      protos = self.param("prototypes", nn.initializers.normal(1.0),
                          (self.num_prototypes, self.head_dim))
    return h, z, protos


def objective_of(config) -> str:
  obj = _get(config, "objective", "simclr")
  if obj not in OBJECTIVES:
    raise ValueError(f"unknown self-supervised objective {obj!r}; choose from {OBJECTIVES}")
  return obj


def build_model(config) -> SSLNet:
  obj = objective_of(config)
  head = _get(config, "head", {})
  # The backbone's own classifier layer is unused (its width does not matter).
  backbone = create_model(_get(config, "model"), num_classes=1)
  k = int(_get(_get(config, "swav", {}), "num_prototypes", 30)) if obj == "swav" else 0
  return SSLNet(backbone=backbone, head_hidden=int(_get(head, "hidden", 128)),
                head_dim=int(_get(head, "dim", 64)), num_prototypes=k)


# ----------------------------------------------------------------------------
# State and training step.


@struct.dataclass
class SSLState:
  step: Any
  params: Any
  batch_stats: Any
  opt_state: Any
  queue: Any          # (2, Q, d_z) float32 (one unused row without a queue)
  queue_filled: Any   # int32: filled queue rows


def _apply(model, params, batch_stats, x, train):
  v = {"params": params}
  if batch_stats:
    v["batch_stats"] = batch_stats
    if train:
      out, upd = model.apply(v, x, train=True, mutable=["batch_stats"])
      return out, upd["batch_stats"]
  return model.apply(v, x, train=train), batch_stats


def _loss_cfg(config) -> dict:
  obj = objective_of(config)
  if obj == "simclr":
    s = _get(config, "simclr", {})
    return dict(objective=obj, temperature=float(_get(s, "temperature", 0.2)))
  s = _get(config, "swav", {})
  return dict(objective=obj, temperature=float(_get(s, "temperature", 0.1)),
              epsilon=float(_get(s, "epsilon", 0.05)),
              sinkhorn_iters=int(_get(s, "sinkhorn_iters", 3)),
              queue_length=int(_get(s, "queue_length", 0)),
              freeze_prototypes_steps=int(_get(s, "freeze_prototypes_steps", 0)))


def ssl_loss(model, params, batch_stats, v1, v2, queue, queue_filled, lc: dict,
             axis_name: Optional[str], train: bool = True):
  """(loss, (new_batch_stats, z1_hat, z2_hat)) for views v1, v2 of the local examples."""
  n = v1.shape[0]
  (h, z, protos), new_bs = _apply(model, params, batch_stats,
                                  jnp.concatenate([v1, v2], axis=0), train)
  z1, z2 = z[:n], z[n:]
  if lc["objective"] == "simclr":
    loss = nt_xent_loss(z1, z2, lc["temperature"], axis_name)
    return loss, (new_bs, _normalize(z1), _normalize(z2))
  use_q = lc["queue_length"] > 0
  qmask = (jnp.arange(lc["queue_length"]) < queue_filled) if use_q else None
  loss, (zh1, zh2) = swav_loss(z1, z2, protos, temperature=lc["temperature"],
                               epsilon=lc["epsilon"], sinkhorn_iters=lc["sinkhorn_iters"],
                               queue=queue if use_q else None, queue_mask=qmask,
                               axis_name=axis_name)
  return loss, (new_bs, zh1, zh2)


def _make_step(model, tx, augment, lc: dict, seed: int):
  def step(state: SSLState, x, ids):
    v1, v2 = ssl_augment.two_views(augment, seed, state.step, ids, x)

    def loss_fn(params):
      return ssl_loss(model, params, state.batch_stats, v1, v2, state.queue,
                      state.queue_filled, lc, parallel.AXIS)

    (loss, (new_bs, zh1, zh2)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = parallel.pmean(grads)
    if lc["objective"] == "swav" and lc["freeze_prototypes_steps"] > 0:
      frozen = state.step < lc["freeze_prototypes_steps"]
      grads = dict(grads)
      grads["prototypes"] = jnp.where(frozen, 0.0, grads["prototypes"])
    if new_bs:
      new_bs = parallel.pmean(new_bs)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    queue, filled = state.queue, state.queue_filled
    if lc["objective"] == "swav" and lc["queue_length"] > 0:
      new = jnp.stack([parallel.all_gather(zh1), parallel.all_gather(zh2)])
      new = jax.lax.stop_gradient(new)
      queue = jnp.concatenate([new, queue], axis=1)[:, :lc["queue_length"]]
      filled = jnp.minimum(filled + new.shape[1], lc["queue_length"])
    metrics = {"loss": parallel.pmean(loss)}
    return state.replace(step=state.step + 1, params=params, batch_stats=new_bs,
                         opt_state=opt_state, queue=queue, queue_filled=filled), metrics
  return step


@functools.lru_cache(maxsize=16)
def _compiled_step(model, cfg_key: str, total_steps: int, spe: int, example_shape: tuple,
                   seed: int, devices: tuple):
  cfg = ml_collections.ConfigDict(json.loads(cfg_key))
  tx, sched = make_optimizer(_get(cfg, "optimizer"), total_steps, spe)
  augment = ssl_augment.make_augment(_get(cfg, "augment", {}), example_shape)
  step = _make_step(model, tx, augment, _loss_cfg(cfg), seed)
  return tx, sched, parallel.pmap(step, devices, donate_argnums=(0,))


def make_optimizer(opt_cfg, total_steps: int, steps_per_epoch: int = 1):
  from core.optim import make_optimizer as _make
  return _make(opt_cfg, total_steps, steps_per_epoch)


def init_state(config, model: SSLNet, example_shape, tx) -> SSLState:
  rng = jax.random.PRNGKey(int(_get(config, "seed", 0)))
  variables = jax.device_get(model.init(rng, jnp.zeros((2,) + tuple(example_shape),
                                                       jnp.float32), train=False))
  params = variables["params"]
  bs = variables.get("batch_stats", {})
  lc = _loss_cfg(config)
  ql = lc.get("queue_length", 0) if lc["objective"] == "swav" else 0
  return SSLState(step=np.asarray(0, np.int32), params=params, batch_stats=bs,
                  opt_state=jax.device_get(tx.init(params)),
                  queue=np.zeros((2, max(ql, 1), model.head_dim), np.float32),  # orbax: no 0-size
                  queue_filled=np.asarray(0, np.int32))


# ----------------------------------------------------------------------------
# Training.


@dataclasses.dataclass
class Encoder:
  """A trained encoder: model + variables (host numpy), its config and fingerprint."""
  model: SSLNet
  variables: dict
  config: ml_collections.ConfigDict
  fingerprint: str
  metrics: dict
  history: list


def _cfg_json(config) -> str:
  d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return json.dumps(d, sort_keys=True, default=str)


# Fields that do not change the trained encoder (excluded from its fingerprint).
_NON_RESULT_FIELDS = ("progress_bar", "num_devices", "log_every_steps", "checkpoint_every_steps",
                      "checkpoint", "max_checkpoints", "stop_after_steps", "dataset",
                      "embed_batch_size", "probe")


def encoder_fingerprint(config, x, ids) -> str:
  """Hash of the encoder config (result-relevant fields) and the training inputs and ids."""
  from core.io import fingerprint
  d = json.loads(_cfg_json(config))
  for k in _NON_RESULT_FIELDS:
    d.pop(k, None)
  return fingerprint({"ssl_encoder": d}, np.asarray(ids, np.int64),
                     np.ascontiguousarray(np.asarray(x, np.float32)))


def validate_config(config, example_shape) -> None:
  """Raises ValueError on an unknown objective / augmentation / embed layer or bad sizes."""
  objective_of(config)
  ssl_augment.make_augment(_get(config, "augment", {}), example_shape)
  layer = _get(config, "embed_layer", "backbone")
  if layer not in EMBED_LAYERS:
    raise ValueError(f"unknown embed_layer {layer!r}; choose from {EMBED_LAYERS}")
  lc = _loss_cfg(config)
  if not lc["temperature"] > 0:
    raise ValueError(f"{lc['objective']}.temperature must be > 0, got {lc['temperature']}")
  if lc["objective"] == "swav":
    k = int(_get(_get(config, "swav", {}), "num_prototypes", 30))
    if k < 2:
      raise ValueError(f"swav.num_prototypes must be >= 2, got {k}")
    if not lc["epsilon"] > 0 or lc["sinkhorn_iters"] < 1 or lc["queue_length"] < 0:
      raise ValueError(f"swav needs epsilon > 0, sinkhorn_iters >= 1, queue_length >= 0; got "
                       f"{lc['epsilon']}, {lc['sinkhorn_iters']}, {lc['queue_length']}")


def train_encoder(config, x, ids, workdir: Optional[str] = None, *,
                  log: Callable[[str], None] = lambda s: None) -> Encoder:
  """Trains the self-supervised encoder of `config` on inputs `x` with stable ids `ids`.

  Labels are never an argument. Config fields: seed, model (backbone), head.{hidden,dim},
  objective, simclr.{temperature}, swav.{num_prototypes, temperature, epsilon,
  sinkhorn_iters, queue_length, freeze_prototypes_steps}, augment (`ssl_augment`),
  batch_size (global), num_steps | num_epochs, optimizer, num_devices, log_every_steps,
  checkpoint_every_steps, progress_bar, embed_layer. With `workdir`: config.json,
  metrics.jsonl and orbax checkpoints (resumed on a rerun), written by process 0.
  """
  t0 = time.time()
  x = np.asarray(x, np.float32)
  ids = np.asarray(ids)
  if x.ndim < 2 or len(x) != len(ids) or len(x) == 0:
    raise ValueError(f"train_encoder needs x (n, ...) and ids (n,), got {x.shape}, {ids.shape}")
  if not np.isfinite(x).all():
    raise ValueError("train_encoder: inputs contain NaN or inf")
  example_shape = tuple(x.shape[1:])
  validate_config(config, example_shape)
  devices = parallel.local_devices(_get(config, "num_devices"))
  n_total = parallel.total_device_count(devices)
  bs = int(_get(config, "batch_size", 256))
  if bs < 2 or bs % n_total:
    raise ValueError(f"batch_size={bs} must be >= 2 and divisible by the total device count "
                     f"{n_total}")
  seed = int(_get(config, "seed", 0))
  sampler = IndexSampler(np.arange(len(x)), bs, seed)
  spe = sampler.steps_per_epoch
  total = num_train_steps(config, len(x))
  model = build_model(config)
  train_model = (model.clone(backbone=model.backbone.clone(bn_axis_name=parallel.AXIS))
                 if hasattr(model.backbone, "bn_axis_name") else model)
  tx, sched, p_step = _compiled_step(train_model, _cfg_json(config), total, spe, example_shape,
                                     seed, tuple(devices))
  state = init_state(config, model, example_shape, tx)
  fp = encoder_fingerprint(config, x, ids)
  is_main = parallel.process_index() == 0

  history: list = []
  ckpt = None
  metrics_path = None
  if workdir:
    from core.io import atomic_write_text
    atomic_write_text(os.path.join(workdir, "config.json"),
                      json.dumps(json.loads(_cfg_json(config)) | {"fingerprint": fp}, indent=2))
    if is_main:
      metrics_path = os.path.join(workdir, "metrics.jsonl")
    if _get(config, "checkpoint", True):
      from core.checkpoint import Checkpointer
      ckpt = Checkpointer(os.path.join(os.path.abspath(workdir), "checkpoints"),
                          max_to_keep=int(_get(config, "max_checkpoints", 2)))
      if ckpt.latest_step() is not None:
        state = ckpt.restore(state)
        log(f"resumed from step {int(state.step)}")
  start = int(state.step)
  if metrics_path:
    if start > 0 and os.path.exists(metrics_path):
      with open(metrics_path) as fh:
        history = [r for r in map(json.loads, filter(str.strip, fh)) if r["step"] <= start]
    with open(metrics_path, "w") as fh:
      fh.writelines(json.dumps(r) + "\n" for r in history)

  # training seconds before a resume (metrics.jsonl), so the cost covers the whole training
  prev_s = float(history[-1].get("time_s", 0.0)) if history else 0.0
  rstate = parallel.replicate(state, devices)
  sl = parallel.process_slice(bs, devices)
  log_every = int(_get(config, "log_every_steps", 50))
  ckpt_every = int(_get(config, "checkpoint_every_steps", 0))
  stop_after = _get(config, "stop_after_steps")
  pending = []
  from tqdm.auto import tqdm
  pbar = tqdm(total=total, initial=start, desc=f"ssl {objective_of(config)}", leave=False,
              disable=not (is_main and _get(config, "progress_bar", True)))

  def flush(step):
    nonlocal pending
    if not pending:
      return
    losses = [float(m["loss"]) for m in parallel.fetch(pending)]
    pending = []
    if not np.all(np.isfinite(losses)):
      raise FloatingPointError(f"non-finite self-supervised loss at step {step} "
                               f"(lr={float(sched(step - 1))}); lower optimizer.lr?")
    rec = {"step": step, "epoch": step / spe, "lr": float(sched(step - 1)),
           "loss": float(np.mean(losses)), "time_s": round(prev_s + time.time() - t0, 2)}
    history.append(rec)
    if metrics_path:
      with open(metrics_path, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    pbar.set_postfix(loss=f"{rec['loss']:.4f}")

  step = start
  stopped = False
  while step < total:
    pos = sampler.positions(step)[sl]
    batch = parallel.shard((x[pos], ids[pos].astype(np.int32)), devices)
    rstate, m = p_step(rstate, *batch)
    step += 1
    pending.append(m)
    pbar.update(1)
    if step % log_every == 0 or step == total:
      flush(step)
    if ckpt is not None and ckpt_every and step % ckpt_every == 0 and step != total:
      flush(step)
      ckpt.save(step, parallel.unreplicate(rstate))
    if stop_after is not None and step >= int(stop_after) and step < total:
      stopped = True
      break
  flush(step)
  pbar.close()
  final = parallel.unreplicate(rstate)
  if ckpt is not None:
    if not stopped:
      ckpt.save(step, final)
    ckpt.close()
  variables = {"params": final.params}
  if final.batch_stats:
    variables["batch_stats"] = final.batch_stats
  last = [r["loss"] for r in history[-3:]]
  metrics = {"steps": step, "total_steps": total, "epochs": step / spe,
             "final_loss": float(np.mean(last)) if last else float("nan"),
             "wall_time_s": round(prev_s + time.time() - t0, 2),
             "this_call_s": round(time.time() - t0, 2), "stopped": stopped}
  log(f"ssl encoder {fp}: {step} steps in {metrics['wall_time_s']:.1f}s, "
      f"loss {metrics['final_loss']:.4f}")
  return Encoder(model=model, variables=variables, config=ml_collections.ConfigDict(
      json.loads(_cfg_json(config))), fingerprint=fp, metrics=metrics, history=history)


def fit_encoder(config, dataset, workdir: Optional[str] = None, **kw) -> Encoder:
  """`train_encoder` on an ArrayDataset: passes only its inputs and ids (labels unread)."""
  return train_encoder(config, dataset.x, dataset.ids, workdir, **kw)


# ----------------------------------------------------------------------------
# Embedding and evaluation.


@functools.lru_cache(maxsize=16)
def _p_embed(model, layer: str, devices: tuple):
  def fn(variables, x, mask):
    h, z, _ = model.apply(variables, x, train=False)
    e = h if layer == "backbone" else _normalize(z)
    return parallel.all_gather(e), parallel.all_gather(mask)
  return parallel.pmap(fn, devices)


def embed(encoder: Encoder, data, batch_size: Optional[int] = None, *,
          layer: Optional[str] = None, num_devices: Optional[int] = None) -> np.ndarray:
  """(n, d) float32 embeddings of `data` (an ArrayDataset or an array (n, ...)), in order.

  Every example is embedded exactly once: batches are padded to a multiple of the total
  device count and the padding is masked out. All processes must call this and all get the
  full result.
  """
  x = np.asarray(getattr(data, "x", data), np.float32)
  layer = layer or _get(encoder.config, "embed_layer", "backbone")
  if layer not in EMBED_LAYERS:
    raise ValueError(f"unknown embed layer {layer!r}; choose from {EMBED_LAYERS}")
  devices = parallel.local_devices(num_devices if num_devices is not None
                                   else _get(encoder.config, "num_devices"))
  bs = parallel.round_up_to_devices(int(batch_size or _get(encoder.config, "embed_batch_size",
                                                          1024)), devices)
  fn = _p_embed(encoder.model, layer, tuple(devices))
  rv = parallel.replicate(encoder.variables, devices)
  sl = parallel.process_slice(bs, devices)
  out = []
  for start in range(0, len(x), bs):
    idx = np.arange(start, start + bs)
    mask = idx < len(x)
    idx = np.where(mask, idx, 0)
    e, m = parallel.fetch(fn(rv, *parallel.shard((x[idx[sl]], mask[sl].astype(np.float32)),
                                                 devices)))
    out.append(np.asarray(e)[np.asarray(m) > 0])
  return np.concatenate(out).astype(np.float32)


def random_feature_embedding(config, x, batch_size: int = 1024) -> np.ndarray:
  """Backbone features of the same architecture at its random init (label-free baseline)."""
  model = build_model(config)
  v = jax.device_get(model.init(jax.random.PRNGKey(int(_get(config, "seed", 0))),
                                jnp.zeros((2,) + tuple(np.shape(x)[1:]), jnp.float32)))
  enc = Encoder(model, dict(v), ml_collections.ConfigDict(json.loads(_cfg_json(config))),
                "random-init", {}, [])
  return embed(enc, x, batch_size, layer="backbone")


def probe(train_emb, y_train, test_emb, y_test, *, knn_k: int = 20, max_iter: int = 300,
          seed: int = 0) -> dict:
  """Linear-probe and k-NN test accuracy of frozen embeddings.

  Linear: StandardScaler + LogisticRegression (lbfgs, C=1) fitted on the training embeddings,
  at most `max_iter` iterations (bounds the CPU time of a 16k x 320 probe on a shared machine;
  sklearn may warn that it has not fully converged).
  k-NN: majority vote of the `knn_k` nearest training examples by cosine similarity.
  """
  from sklearn.linear_model import LogisticRegression
  from sklearn.neighbors import KNeighborsClassifier
  from sklearn.preprocessing import StandardScaler
  a = np.asarray(train_emb, np.float64).reshape(len(train_emb), -1)
  b = np.asarray(test_emb, np.float64).reshape(len(test_emb), -1)
  for name, e in (("train", a), ("test", b)):
    if not np.isfinite(e).all():
      raise ValueError(f"probe: {name} embeddings contain NaN or inf")
  sc = StandardScaler().fit(a)
  lr = LogisticRegression(max_iter=int(max_iter), random_state=seed).fit(sc.transform(a),
                                                                         y_train)
  lin = float(np.mean(lr.predict(sc.transform(b)) == np.asarray(y_test)))
  na = a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-12)
  nb = b / (np.linalg.norm(b, axis=1, keepdims=True) + 1e-12)
  knn = KNeighborsClassifier(n_neighbors=int(knn_k)).fit(na, y_train)
  return {"linear_probe": lin, "knn": float(np.mean(knn.predict(nb) == np.asarray(y_test)))}


# ----------------------------------------------------------------------------
# The encoder job (train -> embed -> probe against baselines), resumable and cached.


def _embedding_baselines(config, data, kinds) -> dict:
  """Probe accuracies of label-free baseline embeddings: pca, random_features, raw inputs."""
  from sklearn.decomposition import PCA
  tr, te = data.train, data.test
  xa, xb = tr.x.reshape(len(tr), -1), te.x.reshape(len(te), -1)
  out = {}
  for kind in kinds:
    t = time.time()
    if kind == "pca":
      dim = int(_get(_get(config, "probe", {}), "pca_dim", 32))
      p = PCA(n_components=min(dim, xa.shape[1]), random_state=0).fit(xa)
      a, b = p.transform(xa), p.transform(xb)
    elif kind == "random_features":
      a, b = random_feature_embedding(config, tr.x), random_feature_embedding(config, te.x)
    elif kind == "raw":
      a, b = xa, xb
    else:
      raise ValueError(f"unknown baseline embedding {kind!r}; choose pca, random_features, raw")
    out[kind] = probe(a, tr.labels, b, te.labels) | {"dim": int(a.shape[1]),
                                                     "wall_time_s": round(time.time() - t, 2)}
  return out


def run_encoder(config, workdir: Optional[str] = None, *, data=None,
                baselines=("pca", "random_features"),
                log: Callable[[str], None] = print) -> dict:
  """Trains the encoder of `config` on data.train's inputs, embeds train and test, probes.

  `data` defaults to `core.data.load_dataset(**config.dataset)`. With `workdir`
  (resumable: orbax checkpoints; a finished job is loaded, not recomputed) writes
  ``embeddings.npz`` (ids, train and test embeddings) and ``encoder.json`` (fingerprint,
  training metrics, probe accuracies of the encoder and of the baselines). Returns
  dict(fingerprint, train_embeddings, test_embeddings, info).
  """
  from core import io
  if data is None:
    from core.data import load_dataset
    data = load_dataset(**dict(_get(config, "dataset")))
  fp = encoder_fingerprint(config, data.train.x, data.train.ids)
  emb_path = os.path.join(workdir, "embeddings.npz") if workdir else None
  info_path = os.path.join(workdir, "encoder.json") if workdir else None
  if emb_path and os.path.exists(emb_path) and os.path.exists(info_path):
    with open(info_path) as fh:
      info = json.load(fh)
    with np.load(emb_path, allow_pickle=False) as z:
      if info.get("fingerprint") == fp and np.array_equal(z["ids"], data.train.ids):
        log(f"ssl encoder {fp}: loaded from {workdir}")
        return dict(fingerprint=fp, train_embeddings=z["train"], test_embeddings=z["test"],
                    info=info)
    log(f"{workdir} holds another encoder: retraining")
  enc = fit_encoder(config, data.train, workdir, log=log)
  t = time.time()
  a, b = embed(enc, data.train), embed(enc, data.test)
  embed_s = time.time() - t
  if not (np.isfinite(a).all() and np.isfinite(b).all()):
    raise FloatingPointError(f"ssl encoder {fp} produced non-finite embeddings")
  t = time.time()
  pr = probe(a, data.train.labels, b, data.test.labels)
  info = dict(fingerprint=fp, dataset=data.name, num_train=len(data.train),
              num_test=len(data.test), objective=objective_of(config),
              embed_layer=_get(config, "embed_layer", "backbone"), dim=int(a.shape[1]),
              train_metrics=enc.metrics, embed_time_s=round(embed_s, 2),
              probe=pr | {"wall_time_s": round(time.time() - t, 2)},
              baselines=_embedding_baselines(config, data, baselines),
              config=json.loads(_cfg_json(config)))
  log(f"ssl encoder {fp}: linear probe {pr['linear_probe']:.3f}, k-NN {pr['knn']:.3f}; " +
      ", ".join(f"{k} {v['linear_probe']:.3f}/{v['knn']:.3f}"
                for k, v in info["baselines"].items()))
  if workdir:
    io.atomic_save_npz(emb_path, ids=data.train.ids, train=a, test=b)
    io.atomic_write_text(info_path, json.dumps(info, indent=1, default=str))
  return dict(fingerprint=fp, train_embeddings=a, test_embeddings=b, info=info)


# ----------------------------------------------------------------------------
# Prototype scores on the learned embedding (the `ssl_prototype` score method).

CENTROIDS = ("kmeans", "kmeans_per_class", "class_mean")
_MEMO: dict = {}


def checked_prototype_scores(embeddings, labels=None, *, k: int = 10,
                             centroids: str = "kmeans", seed: int = 0,
                             n_init: int = 3) -> np.ndarray:
  """Distance to the nearest centroid on L2-normalised embeddings (large = hard).

  Euclidean distance between the unit-norm embedding and its nearest k-means (k-means++,
  scikit-learn) centroid, `pruning.prototypes.prototype_scores`; on unit vectors this orders
  examples like the cosine distance to the centroid direction. ``kmeans``: k centroids over
  all examples (label-free); ``kmeans_per_class``: k within each class; ``class_mean``: one
  centroid per class, its mean embedding (the paper's class-conditional variant). Raises on
  NaN/inf embeddings, k < 1, k larger than the number of (class) examples, unknown centroids.
  """
  from pruning.prototypes import prototype_scores
  e = np.asarray(embeddings, np.float64)
  if e.ndim != 2 or len(e) == 0:
    raise ValueError(f"embeddings must be (n, d) with n >= 1, got shape {e.shape}")
  bad = ~np.isfinite(e).all(axis=1)
  if bad.any():
    raise ValueError(f"embeddings contain NaN or inf in {int(bad.sum())} rows (e.g. row "
                     f"{int(np.flatnonzero(bad)[0])}); check the encoder training")
  if centroids not in CENTROIDS:
    raise ValueError(f"unknown prototype centroids {centroids!r}; choose from {CENTROIDS}")
  k = int(k)
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  if centroids == "kmeans" and k > len(e):
    raise ValueError(f"k={k} centroids for {len(e)} examples: choose k <= {len(e)}")
  if centroids != "kmeans":
    if labels is None:
      raise ValueError(f"centroids={centroids!r} needs labels")
    labels = np.asarray(labels)
    if len(labels) != len(e):
      raise ValueError(f"{len(labels)} labels for {len(e)} embeddings")
    counts = np.unique(labels, return_counts=True)[1]
    smallest = int(counts.min())
    if centroids == "kmeans_per_class" and k > smallest:
      raise ValueError(f"k={k} centroids per class but the smallest class has {smallest} "
                       f"examples: choose k <= {smallest}")
  return prototype_scores(e, labels, k=k, centroids=centroids, normalize=True, seed=int(seed),
                          n_init=int(n_init))


def encoder_for(data, sub, log: Callable[[str], None] = lambda s: None) -> dict:
  """`run_encoder` for a score config: memoised in-process by fingerprint, and on disk under
  ``sub.encoder_dir/<fingerprint>`` (resumable) when that is set. ``sub.baselines``: the
  baseline embeddings probed beside it (default pca and random_features; () for none)."""
  enc_cfg = _get(sub, "encoder")
  if enc_cfg is None:  # library code imports no config file: the experiment's config names it
    raise ValueError("ssl_prototype needs ssl_prototype.encoder, an encoder config such as "
                     "pruning/configs/mnist1d_ssl.py or digits_ssl.py (get_config())")
  enc_cfg = ml_collections.ConfigDict(enc_cfg.to_dict() if hasattr(enc_cfg, "to_dict")
                                      else dict(enc_cfg))
  enc_cfg.progress_bar = False
  fp = encoder_fingerprint(enc_cfg, data.train.x, data.train.ids)
  if fp not in _MEMO:
    root = _get(sub, "encoder_dir")
    _MEMO[fp] = run_encoder(enc_cfg, os.path.join(root, fp) if root else None, data=data,
                            baselines=tuple(_get(sub, "baselines", ("pca", "random_features"))),
                            log=log)
  return _MEMO[fp]


def ssl_prototype_scores(data, config, sub, log: Callable[[str], None] = lambda s: None):
  """The `ssl_prototype` scorer: prototypes on the self-supervised embedding.

  ``sub`` = config.ssl_prototype: encoder (an encoder config, required: e.g.
  pruning/configs/*_ssl.py), k, centroids, n_init, encoder_dir (cache of trained encoders).
  The scores' metadata carries the encoder fingerprint and probe accuracies.
  """
  from pruning import scoring_runs
  from pruning.score_io import ScoreResult
  t = time.time()
  enc = encoder_for(data, sub, log)
  encoder_s = enc["info"]["train_metrics"]["wall_time_s"] + enc["info"]["embed_time_s"]
  centroids = _get(sub, "centroids", "kmeans")
  t1 = time.time()
  s = checked_prototype_scores(enc["train_embeddings"],
                               data.train.labels if centroids != "kmeans" else None,
                               k=int(_get(sub, "k", 10)), centroids=centroids,
                               seed=int(_get(config, "seed", 0)),
                               n_init=int(_get(sub, "n_init", 3)))
  kmeans_s = time.time() - t1
  info = enc["info"]
  meta = scoring_runs.score_meta(
      "ssl_prototype", data, config, sub, uses_labels=centroids != "kmeans",
      encoder_fingerprint=enc["fingerprint"], objective=info["objective"],
      encoder_probe=info["probe"], embedding_dim=info["dim"],
      distance="euclidean on L2-normalised embeddings", encoder_time_s=round(encoder_s, 2),
      kmeans_time_s=round(kmeans_s, 2), wall_time_s=round(time.time() - t, 2))
  log(f"ssl_prototype: encoder {enc['fingerprint']} (linear probe "
      f"{info['probe']['linear_probe']:.3f}), k={_get(sub, 'k', 10)}, {centroids}")
  return ScoreResult(data.train.ids.copy(), s, meta)
