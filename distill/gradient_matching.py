"""Dataset condensation by gradient matching: DC (Zhao, Mopuri, Bilen, ICLR 2021,
arXiv:2006.05929) and DSA (Zhao & Bilen, ICML 2021, arXiv:2102.08259).

Synthetic images S_c (ipc per class c) are learned so that a network's gradient
on them matches its gradient on real images of the same class, along the
network's training trajectory on S, over random initialisations:

  for iteration k = 1..K:                      theta_0 ~ p(theta) (fresh init per k)
    for t = 0..T_outer-1:
      D_t = sum_c D( grad L(A_w_c(B_c^real); theta_t), grad L(A_w_c(S_c); theta_t) )
      S  <- SGD_momentum(S, grad_S D_t)         (lr_img 0.1, momentum 0.5)
      theta_{t+1} <- inner_loop epochs of SGD on S (lr_net 0.01; batch_train; with DSA
                     augmentation drawn per example for DSA)   [skipped after the last t]

L is the cross-entropy, B_c^real a batch of `batch_real` real images of class c
(all of them if the class is smaller), A_w the Siamese augmentation
(distill.dsa; the identity for DC) with one w_c per class shared by the real and
synthetic batch. The distance is DC's layer-wise one: for every weight tensor
(biases and normalisation scales, 1-D, are skipped) reshaped to
(fan_in, out_channels), with columns a_j (real) and b_j (synthetic),

    D = sum_layers sum_j ( 1 - <a_j, b_j> / (|a_j| |b_j| + 1e-6) ).

Paper settings (their code, VICO-UoE/DatasetCondensation): K = 1000 iterations,
(T_outer, inner_loop) = (1, 1), (10, 50), (50, 10) for 1, 10, 50 images/class,
batch_real = batch_train = 256, ConvNet (width 128, depth 3, instance norm,
avg-pool), init from noise (real init 'performs similarly'). Our configs state
where they scale these down for a CPU.

Data parallel: the real batches are sharded over local devices (B axis) and
the per-class real gradients summed across devices (distill.synthetic.Devices);
S, theta and the optimiser states are replicated. Entry point:
`distill_gradient_matching(train, images_per_class, config, seed=..., dsa=...)`
with config sections `dc` / `dsa`.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import optax

from core.config import config_value as _get
from distill import dsa as dsa_lib
from distill import synthetic

CONFIG_KEYS = ("iterations", "outer_loop", "inner_loop", "lr_img", "momentum_img", "lr_net",
               "batch_real", "batch_train", "init", "strategy", "dsa_params", "model",
               "num_devices", "log_every", "checkpoint_every")


# ----------------------------------------------------------------------------
# The distance.


def _safe_norm(a):
  """Column norms with a zero (not NaN) gradient at an all-zero column (a dead unit)."""
  sq = jnp.sum(a * a, axis=0)
  pos = sq > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def layer_distance(g_real, g_syn, eps: float = 1e-6):
  """DC's distance: sum over weight tensors and output channels of 1 - cosine.

  Leaves with ndim < 2 (biases, norm scales) contribute 0, as in the paper's code.
  Flax kernels keep output channels last: (..., out) -> (prod(...), out).
  """
  total = 0.0
  for a, b in zip(jax.tree_util.tree_leaves(g_real), jax.tree_util.tree_leaves(g_syn)):
    if a.ndim < 2:
      continue
    a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    cos = jnp.sum(a2 * b2, 0) / (_safe_norm(a2) * _safe_norm(b2) + eps)
    total = total + jnp.sum(1.0 - cos)
  return total


def class_gradient(apply_fn, params, x, labels, weights):
  """grad_theta sum_i w_i CE(f(x_i), y_i)."""
  def loss(p):
    return jnp.sum(weights * synthetic.cross_entropy(apply_fn(p, x), labels))
  return jax.grad(loss)(params)


def matching_loss(apply_fn, params, x_real, w_real, x_syn, key, strategy: str,
                  dsa_params: dsa_lib.DSAParams = dsa_lib.DSAParams(),
                  reduce_real=lambda g: g):
  """sum_c D(g_real_c, g_syn_c) over classes.

  x_real (B, C, *ex) with weights (B, C) (rows of class c in column c, weights
  summing to 1 per class over all devices); x_syn (C, ipc, *ex); key: one PRNG
  key, split into one Siamese augmentation per class. `reduce_real` combines the
  real gradients across devices (psum inside pmap).
  """
  num_classes = x_syn.shape[0]
  keys = jax.random.split(key, num_classes)

  def one(xr, wr, xs, c, k):
    xr, xs = dsa_lib.siamese_augment(k, xr, xs, strategy, dsa_params)
    yr = jnp.full((xr.shape[0],), c, jnp.int32)
    ys = jnp.full((xs.shape[0],), c, jnp.int32)
    g_real = jax.lax.stop_gradient(reduce_real(class_gradient(apply_fn, params, xr, yr, wr)))
    g_syn = class_gradient(apply_fn, params, xs, ys,
                           jnp.full((xs.shape[0],), 1.0 / xs.shape[0], xs.dtype))
    return layer_distance(g_real, g_syn)

  d = jax.vmap(one, in_axes=(1, 1, 0, 0, 0))(x_real, w_real, x_syn,
                                            jnp.arange(num_classes), keys)
  return jnp.sum(d)


def train_epoch(apply_fn, params, opt_state, net_tx, x_syn, labels, key, batch_size: int,
                strategy: str = "", dsa_params: dsa_lib.DSAParams = dsa_lib.DSAParams()):
  """One epoch of minibatch SGD on the synthetic set (shuffled; DSA drawn per example).

  The inner loop calls this `inner_loop` times from the host: on XLA:CPU a
  `fori_loop` over epochs measured several times slower than separate calls.
  """
  n = x_syn.shape[0]
  b = min(int(batch_size), n)
  perm = jax.random.permutation(jax.random.fold_in(key, 0), n) if b < n else jnp.arange(n)
  for j, s in enumerate(range(0, n, b)):
    idx = perm[s:s + b]
    xb, yb = x_syn[idx], labels[idx]
    if strategy:
      xb = dsa_lib.augment(jax.random.fold_in(key, j + 1), xb, strategy, dsa_params)
    g = class_gradient(apply_fn, params, xb, yb, jnp.full((xb.shape[0],), 1.0 / xb.shape[0]))
    upd, opt_state = net_tx.update(g, opt_state, params)
    params = optax.apply_updates(params, upd)
  return params, opt_state


# ----------------------------------------------------------------------------
# Driver.


def make_distiller(train, images_per_class: int, mc, *, seed: int = 0, name: str = "dc",
                   strategy: str = "") -> synthetic.Distiller:
  ipc = synthetic.check_config(train, images_per_class, mc, name, CONFIG_KEYS)
  outer, inner = synthetic.loops_for(ipc, _get(mc, "outer_loop"), _get(mc, "inner_loop"))
  iterations = synthetic.read_iterations(mc, name, 1000)
  lr_img, lr_net = float(_get(mc, "lr_img", 0.1)), float(_get(mc, "lr_net", 0.01))
  if not (lr_img > 0 and lr_net > 0):
    raise ValueError(f"{name}: lr_img and lr_net must be > 0, got {lr_img}, {lr_net}")
  batch_train = int(_get(mc, "batch_train", 256))
  example_shape = tuple(train.example_shape)
  if strategy:
    dsa_lib.parse_strategy(strategy, len(example_shape) - 1)
  dp = dsa_lib.DSAParams.from_config(_get(mc, "dsa_params"))
  su = synthetic.setup(train, ipc, mc, name=name, seed=seed, batch_real=256)
  model, devs, num_classes = su.model, su.devs, su.num_classes
  labels_syn = jnp.asarray(su.support0.labels, jnp.int32)
  apply_fn = lambda p, x: model.apply({"params": p}, x, train=True)
  img_tx = optax.sgd(lr_img, momentum=float(_get(mc, "momentum_img", 0.5)))
  net_tx = optax.sgd(lr_net)
  state0 = {"x": su.x0, "opt_state": jax.device_get(img_tx.init(jnp.asarray(su.x0)))}

  def init_net(key):
    p = model.init(key, jnp.zeros((1,) + example_shape, jnp.float32), train=False)["params"]
    return p, net_tx.init(p)

  def match(state, params, xr, wr, key):
    x = state["x"]
    xs = x.reshape((num_classes, ipc) + example_shape)
    loss, g = jax.value_and_grad(lambda xs_: matching_loss(
        apply_fn, params, xr, wr, xs_, key, strategy, dp, devs.psum))(xs)
    upd, opt = img_tx.update(g.reshape(x.shape), state["opt_state"], x)
    return {"x": optax.apply_updates(x, upd), "opt_state": opt}, loss

  def inner_epoch(state, params, net_opt, key):
    return train_epoch(apply_fn, params, net_opt, net_tx, state["x"], labels_syn, key,
                       batch_train, strategy, dp)

  p_init = devs.pmap(init_net)
  p_match = devs.pmap(match)
  p_inner = devs.pmap(inner_epoch)
  base = jax.random.PRNGKey(int(seed))

  def step(state, it):
    k_it = jax.random.fold_in(base, it)
    params, net_opt = p_init(devs.replicate(jax.random.fold_in(k_it, 0)))
    total = 0.0
    for ol in range(outer):
      xr, wr = devs.shard(su.real_batch(it, ol))
      k = devs.replicate(jax.random.fold_in(k_it, 2 * ol + 1))
      state, loss = p_match(state, params, xr, wr, k)
      total = total + loss[0]
      if ol < outer - 1:
        k_in = jax.random.fold_in(k_it, 2 * ol + 2)
        for il in range(inner):
          params, net_opt = p_inner(state, params, net_opt,
                                    devs.replicate(jax.random.fold_in(k_in, il)))
    return state, {"match_loss": total / (num_classes * outer)}

  n_syn = len(su.x0)
  per_iter = outer * (2 * su.real_examples() + 3 * n_syn) + (outer - 1) * inner * 2 * n_syn
  return su.distiller(iterations, state0, step, per_iter, method=name, strategy=strategy,
                      outer_loop=outer, inner_loop=inner)


def distill_gradient_matching(train, images_per_class: int, config, *, seed: int = 0,
                              dsa: bool = False, workdir: Optional[str] = None,
                              progress: bool = True, stop_after: Optional[int] = None
                              ) -> synthetic.DistillResult:
  """DC (dsa=False; config section `dc`) or DSA (dsa=True; section `dsa`).

  DSA's strategy: `dsa.strategy` or the default for the input dimensionality
  (distill.dsa.default_strategy). Returns a DistillResult (support set in KIP's
  format, log rows, cost).
  """
  name = "dsa" if dsa else "dc"
  mc = synthetic.method_config(config, name)
  strategy = ""
  if dsa:
    strategy = str(_get(mc, "strategy", "") or dsa_lib.default_strategy(train.example_shape))
  d = make_distiller(train, images_per_class, mc, seed=seed, name=name, strategy=strategy)
  return synthetic.run_from_config(d, mc, workdir=workdir, progress=progress,
                                   stop_after=stop_after, log_every=10, checkpoint_every=50)


dc_support = synthetic.support_entry(distill_gradient_matching, "dc", dsa=False)
dsa_support = synthetic.support_entry(distill_gradient_matching, "dsa", dsa=True)
