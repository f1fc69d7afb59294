"""Dataset distillation by unrolled optimisation (DD; Wang, Zhu, Torralba, Efros 2018,
arXiv:1811.10959), random-initialisation variant.

Synthetic images x~ (ipc per class, hard labels y~) and the inner learning rates
eta~ are learned by differentiating the loss of a network after T gradient
steps on them, over random initialisations theta_0 ~ p(theta):

    theta_{t+1} = theta_t - eta_t grad_theta CE(f(x~; theta_t), y~),   t = 0..T-1
    L(x~, eta~) = sum_c (1/C) mean_{i in B_c} CE(f(x_real_ci; theta_T), c)
    (x~, log eta~) <- Adam((x~, log eta~), grad L)                (one theta_0 per iteration)

Every inner step uses the whole synthetic set (the paper cycles through
per-step image subsets; with <= 500 images one batch is the whole set); the
unroll length T = `unroll_steps` is stated in the config. eta_t = exp(log_eta_t)
keeps the learned step sizes positive (one per step, initialised to `lr_init`;
`learn_lr=False` freezes them). The backward pass through the unroll is
second-order (a gradient of gradients); `remat=True` wraps each inner step in
`jax.checkpoint` so memory is O(1) parameter copies per step instead of keeping
every step's activations (compute about x1.3).

Paper settings (MNIST, LeNet): 10 steps x 3 epochs, lr init 0.02, Adam lr 0.01,
batch of real images 1024. Ours: ConvNet or MLP from core.models, stated in
the configs.

Data parallel: the real batch is sharded over local devices; each device
unrolls the same inner trajectory (replicated) and the outer gradients of the
per-device partial losses are summed across devices. Entry point:
`distill_unrolled(train, images_per_class, config, seed=...)`, config section `dd`.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from core.config import config_value as _get
from distill import synthetic

CONFIG_KEYS = ("iterations", "unroll_steps", "lr_init", "learn_lr", "lr_img", "batch_real",
               "init", "model", "remat", "num_devices", "log_every", "checkpoint_every")


def unroll(apply_fn, params0, x_syn, y_syn, log_lr, remat: bool = False):
  """theta_T after len(log_lr) full-batch GD steps on (x_syn, y_syn) from params0."""
  def one(p, log_eta):
    g = jax.grad(lambda q: jnp.mean(synthetic.cross_entropy(apply_fn(q, x_syn), y_syn)))(p)
    return jax.tree.map(lambda a, b: a - jnp.exp(log_eta) * b, p, g), None

  if remat:
    one = jax.checkpoint(one)
  p, _ = jax.lax.scan(one, params0, log_lr)
  return p


def outer_loss(apply_fn, params0, x_syn, y_syn, log_lr, x_real, y_real, w_real,
               remat: bool = False):
  """sum_i w_i CE(f(x_real_i; theta_T(x_syn, log_lr)), y_i)."""
  p = unroll(apply_fn, params0, x_syn, y_syn, log_lr, remat)
  return jnp.sum(w_real * synthetic.cross_entropy(apply_fn(p, x_real), y_real))


def make_distiller(train, images_per_class: int, mc, *, seed: int = 0) -> synthetic.Distiller:
  ipc = synthetic.check_config(train, images_per_class, mc, "dd", CONFIG_KEYS)
  iterations = synthetic.read_iterations(mc, "dd", 400)
  steps = int(_get(mc, "unroll_steps", 10))
  if steps < 1:
    raise ValueError(f"dd.unroll_steps must be >= 1, got {steps}")
  lr_init, lr_img = float(_get(mc, "lr_init", 0.02)), float(_get(mc, "lr_img", 0.01))
  if not (lr_init > 0 and lr_img > 0):
    raise ValueError(f"dd: lr_init and lr_img must be > 0, got {lr_init}, {lr_img}")
  learn_lr, remat = bool(_get(mc, "learn_lr", True)), bool(_get(mc, "remat", True))
  su = synthetic.setup(train, ipc, mc, name="dd", seed=seed, batch_real=100)
  model, devs, num_classes, example_shape = su.model, su.devs, su.num_classes, su.example_shape
  y_syn = jnp.asarray(su.support0.labels, jnp.int32)
  apply_fn = lambda p, x: model.apply({"params": p}, x, train=True)
  tx = optax.adam(lr_img)
  params = {"x": su.x0, "log_lr": np.full((steps,), np.log(lr_init), np.float32)}
  state0 = {**params, "opt_state": jax.device_get(tx.init(jax.tree.map(jnp.asarray, params)))}

  def update(state, xr, yr, wr, key):
    p0 = model.init(key, jnp.zeros((1,) + example_shape, jnp.float32), train=False)["params"]
    xr = xr.reshape((-1,) + example_shape)
    yr, wr = yr.reshape(-1), wr.reshape(-1)
    learn = {"x": state["x"], "log_lr": state["log_lr"]}
    loss, g = jax.value_and_grad(lambda q: outer_loss(
        apply_fn, p0, q["x"], y_syn, q["log_lr"], xr, yr, wr, remat))(learn)
    loss, g = devs.psum((loss, g))
    if not learn_lr:
      g = {"x": g["x"], "log_lr": jnp.zeros_like(g["log_lr"])}
    upd, opt = tx.update(g, state["opt_state"], learn)
    new = optax.apply_updates(learn, upd)
    return {**new, "opt_state": opt}, loss

  p_update = devs.pmap(update)
  base = jax.random.PRNGKey(int(seed))

  def step(state, it):
    x_real, w = su.real_batch(it)
    w = w / num_classes  # class-balanced mean over the real batch
    yr = np.broadcast_to(np.arange(num_classes)[None, :], w.shape).astype(np.int32)
    xr, yr, wr = devs.shard((x_real, yr, w))
    state, loss = p_update(state, xr, yr, wr, devs.replicate(jax.random.fold_in(base, it)))
    return state, {"dd_loss": loss[0], "mean_lr": jnp.mean(jnp.exp(state["log_lr"][0]))}

  # unroll: T forward+backward passes on S; outer backward through them: ~2 more per step;
  # real batch: forward + backward.
  per_iter = steps * 4 * len(su.x0) + 2 * su.real_examples()
  return su.distiller(iterations, state0, step, per_iter, method="dd")


def distill_unrolled(train, images_per_class: int, config, *, seed: int = 0,
                     workdir: Optional[str] = None, progress: bool = True,
                     stop_after: Optional[int] = None) -> synthetic.DistillResult:
  """DD with config section `dd`; the result's `extra['log_lr']` has the learned step sizes."""
  mc = synthetic.method_config(config, "dd")
  return synthetic.run_from_config(make_distiller(train, images_per_class, mc, seed=seed), mc,
                                   workdir=workdir, progress=progress, stop_after=stop_after,
                                   log_every=10, checkpoint_every=50)


dd_support = synthetic.support_entry(distill_unrolled, "dd")
