"""Dataset condensation by distribution matching (DM; Zhao & Bilen, WACV 2023,
arXiv:2110.04181).

Synthetic images S_c are learned so that, under randomly initialised networks,
their mean embedding matches that of real images of the same class, with
Siamese augmentation (distill.dsa) shared per class by the real and synthetic
batch:

  for iteration k = 1..K:               psi ~ p(psi) (a fresh random network, never trained)
    L = sum_c || mean_i phi_psi(A_w_c(x_real_{c,i})) - mean_j phi_psi(A_w_c(s_{c,j})) ||^2
    S <- SGD_momentum(S, grad_S L)      (lr_img 1.0, momentum 0.5)

phi_psi is the network's penultimate embedding (core.models, return_embedding=True;
for the ConvNet the flattened features before the classifier). Paper settings
(VICO-UoE/DatasetCondensation main_DM.py): K = 20000, batch_real = 256 per class,
init from real images, ConvNet (width 128, depth 3, instance norm), DSA strategy
'color_crop_cutout_flip_scale_rotate'. Our configs state where they scale down.

Data parallel: the real batch is sharded over local devices along B and the
per-class weighted embedding sums are summed across devices, so the mean is
exact for any device count. Entry point:
`distill_distribution_matching(train, images_per_class, config, seed=...)`, config
section `dm`.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import optax

from core.config import config_value as _get
from distill import dsa as dsa_lib
from distill import synthetic

CONFIG_KEYS = ("iterations", "lr_img", "momentum_img", "batch_real", "init", "strategy",
               "dsa_params", "model", "num_devices", "log_every", "checkpoint_every")


def dm_loss(embed_fn, params, x_real, w_real, x_syn, key, strategy: str,
            dsa_params: dsa_lib.DSAParams = dsa_lib.DSAParams(), reduce_real=lambda m: m):
  """sum_c || sum_i w_ic phi(A(x_real_ic)) - mean_j phi(A(s_cj)) ||^2.

  x_real (B, C, *ex) with weights (B, C) summing to 1 per class (over all
  devices; `reduce_real` sums the partial means across devices); x_syn
  (C, ipc, *ex); one Siamese augmentation per class from `key`.
  """
  num_classes = x_syn.shape[0]
  keys = jax.random.split(key, num_classes)

  def one(xr, wr, xs, k):
    xr, xs = dsa_lib.siamese_augment(k, xr, xs, strategy, dsa_params)
    m_real = jax.lax.stop_gradient(reduce_real(jnp.einsum("b,bd->d", wr, embed_fn(params, xr))))
    m_syn = jnp.mean(embed_fn(params, xs), axis=0)
    return jnp.sum((m_real - m_syn) ** 2)

  return jnp.sum(jax.vmap(one, in_axes=(1, 1, 0, 0))(x_real, w_real, x_syn, keys))


def make_distiller(train, images_per_class: int, mc, *, seed: int = 0) -> synthetic.Distiller:
  ipc = synthetic.check_config(train, images_per_class, mc, "dm", CONFIG_KEYS)
  iterations = synthetic.read_iterations(mc, "dm", 20000)
  lr_img = float(_get(mc, "lr_img", 1.0))
  if not lr_img > 0:
    raise ValueError(f"dm.lr_img must be > 0, got {lr_img}")
  example_shape = tuple(train.example_shape)
  strategy = str(_get(mc, "strategy", "") or dsa_lib.default_strategy(example_shape))
  dsa_lib.parse_strategy(strategy, len(example_shape) - 1)
  dp = dsa_lib.DSAParams.from_config(_get(mc, "dsa_params"))
  su = synthetic.setup(train, ipc, mc, name="dm", seed=seed, batch_real=256)
  model, devs, num_classes = su.model, su.devs, su.num_classes
  embed_fn = lambda p, x: model.apply({"params": p}, x, train=True, return_embedding=True)[1]
  tx = optax.sgd(lr_img, momentum=float(_get(mc, "momentum_img", 0.5)))
  state0 = {"x": su.x0, "opt_state": jax.device_get(tx.init(jnp.asarray(su.x0)))}

  def update(state, xr, wr, key):
    k_net, k_aug = jax.random.split(key)
    params = model.init(k_net, jnp.zeros((1,) + example_shape, jnp.float32), train=False)["params"]
    x = state["x"]
    xs = x.reshape((num_classes, ipc) + example_shape)
    loss, g = jax.value_and_grad(lambda xs_: dm_loss(embed_fn, params, xr, wr, xs_, k_aug,
                                                     strategy, dp, devs.psum))(xs)
    upd, opt = tx.update(g.reshape(x.shape), state["opt_state"], x)
    return {"x": optax.apply_updates(x, upd), "opt_state": opt}, loss

  p_update = devs.pmap(update)
  base = jax.random.PRNGKey(int(seed))

  def step(state, it):
    xr, wr = devs.shard(su.real_batch(it))
    state, loss = p_update(state, xr, wr, devs.replicate(jax.random.fold_in(base, it)))
    return state, {"dm_loss": loss[0] / num_classes}

  per_iter = su.real_examples() + 2 * len(su.x0)  # real: forward; synthetic: forward + backward
  return su.distiller(iterations, state0, step, per_iter, method="dm", strategy=strategy)


def distill_distribution_matching(train, images_per_class: int, config, *, seed: int = 0,
                                  workdir: Optional[str] = None, progress: bool = True,
                                  stop_after: Optional[int] = None) -> synthetic.DistillResult:
  """DM with config section `dm`; returns a DistillResult (support set, log, cost)."""
  mc = synthetic.method_config(config, "dm")
  return synthetic.run_from_config(make_distiller(train, images_per_class, mc, seed=seed), mc,
                                   workdir=workdir, progress=progress, stop_after=stop_after,
                                   log_every=50, checkpoint_every=500)


dm_support = synthetic.support_entry(distill_distribution_matching, "dm")
