"""DD / DC / DSA / DM (distill.unrolled, gradient_matching, distribution_matching, dsa).

Checked against direct computations: DC's layer-wise distance and matching loss
against numpy on a tiny network; DSA's Siamese pairing (the same transformation
on the real and the synthetic batch); DM's loss against numpy means; DD's
unrolled gradient against central finite differences in float64. Runs:
checkpoint + resume == uninterrupted, 1 device == 8 devices, and clear errors
for budgets larger than a class and NaN inputs.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from core.data import ArrayDataset
from distill import distribution_matching as dm
from distill import dsa
from distill import gradient_matching as gm
from distill import synthetic
from distill import unrolled as dd

TINY_MLP = {"name": "mlp", "hidden": (8,)}
TINY_CONV = {"name": "convnet", "width": 3, "depth": 1, "norm": "instance"}


def x64():
  try:
    from core.precision import x64 as ctx
  except ImportError:  # before the platform move
    from distill.kernels import x64 as ctx
  return ctx()


def _net(model_cfg, shape=(4, 4, 1), classes=3, seed=0):
  model, params = synthetic.make_network(model_cfg, classes, shape, jax.random.PRNGKey(seed))
  return model, params, (lambda p, x: model.apply({"params": p}, x, train=True))


def _dataset(n_per_class=12, classes=3, shape=(4, 4, 1), seed=0):
  """Small labelled inputs (synthetic data: these tests check computations, not accuracy)."""
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(classes), n_per_class)
  x = rng.normal(size=(len(y),) + shape).astype(np.float32) + y.reshape((-1,) + (1,) * len(shape))
  return ArrayDataset(x, y.astype(np.int64), np.arange(len(y), dtype=np.int64), classes, "toy")


def _direct_distance(ga, gb):
  """DC's distance written out with numpy loops over layers and output channels."""
  total = 0.0
  for a, b in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim == 1:
      continue
    out = a.shape[-1]
    for j in range(out):
      u, v = a[..., j].ravel(), b[..., j].ravel()
      total += 1 - u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-6)
  return total


# ----------------------------------------------------------------------------
# Gradient matching.


@pytest.mark.parametrize("model_cfg", [TINY_MLP, TINY_CONV])
def test_matching_distance_equals_direct_computation(model_cfg):
  model, params, apply_fn = _net(model_cfg)
  rng = np.random.default_rng(1)
  x_real = jnp.asarray(rng.normal(size=(6, 3, 4, 4, 1)), jnp.float32)  # (B, C, ...)
  w_real = jnp.full((6, 3), 1 / 6, jnp.float32)
  x_syn = jnp.asarray(rng.normal(size=(3, 2, 4, 4, 1)), jnp.float32)  # (C, ipc, ...)
  loss = float(jax.jit(lambda k: gm.matching_loss(apply_fn, params, x_real, w_real, x_syn, k,
                                                  ""))(jax.random.PRNGKey(0)))
  direct = 0.0

  @jax.jit
  def grad_mean_ce(p, x, c):
    return jax.grad(lambda q: -jnp.mean(jax.nn.log_softmax(apply_fn(q, x))[:, c]))(p)

  for c in range(3):
    g_real = grad_mean_ce(params, x_real[:, c], c)
    g_syn = grad_mean_ce(params, x_syn[c], c)
    d = _direct_distance(g_real, g_syn)
    assert float(gm.layer_distance(g_real, g_syn)) == pytest.approx(d, rel=1e-5, abs=1e-5)
    direct += d
  assert loss == pytest.approx(direct, rel=1e-5, abs=1e-5)
  assert direct > 0.1  # not trivially zero


def test_layer_distance_ignores_biases_and_is_zero_for_parallel_gradients():
  g = {"a": {"kernel": jnp.arange(12.0).reshape(3, 4) + 1, "bias": jnp.ones(4)}}
  h = {"a": {"kernel": 2.5 * g["a"]["kernel"], "bias": -jnp.ones(4)}}
  assert float(gm.layer_distance(g, h)) == pytest.approx(0.0, abs=1e-5)
  h2 = {"a": {"kernel": -g["a"]["kernel"], "bias": jnp.ones(4)}}
  assert float(gm.layer_distance(g, h2)) == pytest.approx(2.0 * 4, rel=1e-5)  # cos = -1 per column


# ----------------------------------------------------------------------------
# DSA.


@pytest.mark.parametrize("shape,strategy", [((8, 8, 1), dsa.STRATEGY_2D + "_flip"),
                                            ((40, 1), dsa.STRATEGY_1D + "_cutout_color")])
def test_siamese_augmentation_applies_one_transformation_to_both_batches(shape, strategy):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(5,) + shape), jnp.float32)
  pair = jax.jit(lambda k: dsa.siamese_augment(k, x, x[:2], strategy))
  changed = 0
  for i in range(12):
    real, syn = pair(jax.random.PRNGKey(i))
    np.testing.assert_array_equal(np.asarray(real[:2]), np.asarray(syn))
    changed += float(jnp.abs(real - x).max()) > 1e-3
  assert changed >= 8  # the transformations are not the identity


def test_dsa_identity_parameters_and_known_transformations():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 8, 8, 1)), jnp.float32)
  p = dsa.sample_params(jax.random.PRNGKey(0), dsa.STRATEGY_2D, 3, (8, 8, 1))
  ident = dict(p, scale=jnp.ones_like(p["scale"]), rotate=jnp.zeros_like(p["rotate"]),
               crop=jnp.zeros_like(p["crop"]))
  for f in ("scale", "rotate", "crop"):
    np.testing.assert_allclose(dsa.apply_family(f, ident, x), x, atol=1e-6)
  quarter = dict(p, rotate=jnp.full((3,), np.pi / 2))
  rot = np.asarray(dsa.apply_family("rotate", quarter, x))
  assert min(np.abs(rot - np.rot90(np.asarray(x), k, axes=(1, 2))).max() for k in (1, 3)) < 1e-5
  shift = dict(p, crop=jnp.asarray([[1, -1]] * 3, jnp.int32))
  out = np.asarray(dsa.apply_family("crop", shift, x))
  np.testing.assert_array_equal(out[:, 1:, :-1], np.asarray(x)[:, :-1, 1:])
  assert np.all(out[:, 0] == 0) and np.all(out[:, :, -1] == 0)
  with pytest.raises(ValueError, match="rotate.*2-D"):
    dsa.parse_strategy("shift_rotate", 1)
  with pytest.raises(ValueError, match="unknown DSA transformation 'blur'"):
    dsa.parse_strategy("color_blur", 2)


def test_matching_and_dm_losses_vanish_only_with_shared_augmentation():
  """Real batch == synthetic batch: with one shared transformation the gradients (and
  mean embeddings) coincide, so both losses are ~0. Unshared draws make them large."""
  model, params, apply_fn = _net(TINY_CONV, shape=(8, 8, 1))
  embed = lambda p, x: model.apply({"params": p}, x, train=True, return_embedding=True)[1]
  x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4, 8, 8, 1)), jnp.float32)  # (C, n)
  x_real, w = jnp.swapaxes(x, 0, 1), jnp.full((4, 3), 0.25, jnp.float32)
  gm_loss = jax.jit(lambda k: gm.matching_loss(apply_fn, params, x_real, w, x, k, dsa.STRATEGY_2D))
  dm_loss = jax.jit(lambda k: dm.dm_loss(embed, params, x_real, w, x, k, dsa.STRATEGY_2D))
  for i in range(4):
    key = jax.random.PRNGKey(i)
    assert float(gm_loss(key)) < 1e-3
    assert float(dm_loss(key)) < 1e-8
  # The same computation with independently drawn transformations for the two batches.
  aug = jax.jit(lambda k: dsa.apply(dsa.sample_params(k, dsa.STRATEGY_2D, 1, (8, 8, 1)), x[0],
                                    dsa.STRATEGY_2D))
  unshared = []
  for i in range(4):
    k1, k2 = jax.random.split(jax.random.PRNGKey(i))
    unshared.append(float(jnp.abs(aug(k1) - aug(k2)).max()))
  assert max(unshared) > 0.1


# ----------------------------------------------------------------------------
# DM.


def test_dm_loss_equals_direct_computation():
  model, params, _ = _net(TINY_CONV, shape=(8, 8, 1))
  embed = lambda p, x: model.apply({"params": p}, x, train=True, return_embedding=True)[1]
  rng = np.random.default_rng(3)
  x_real = jnp.asarray(rng.normal(size=(5, 3, 8, 8, 1)), jnp.float32)
  w = np.zeros((5, 3), np.float32)
  w[:5, 0], w[:3, 1], w[:4, 2] = 1 / 5, 1 / 3, 1 / 4  # ragged classes, zero-weight padding
  x_syn = jnp.asarray(rng.normal(size=(3, 2, 8, 8, 1)), jnp.float32)
  emb = jax.jit(embed)
  for strategy in ("", dsa.STRATEGY_2D):
    key = jax.random.PRNGKey(7)
    got = float(jax.jit(lambda k: dm.dm_loss(embed, params, x_real, jnp.asarray(w), x_syn, k,
                                             strategy))(key))
    direct = 0.0
    keys = jax.random.split(key, 3)
    pair = jax.jit(lambda k, xr, xs: [dsa.apply(dsa.sample_params(k, strategy, 1, (8, 8, 1)), v,
                                                strategy) for v in (xr, xs)])
    for c, n in enumerate((5, 3, 4)):
      xr, xs = x_real[:n, c], x_syn[c]
      if strategy:
        xr, xs = pair(keys[c], xr, xs)
      er, es = np.asarray(emb(params, xr), np.float64), np.asarray(emb(params, xs), np.float64)
      direct += np.sum((er.mean(0) - es.mean(0)) ** 2)
    assert got == pytest.approx(direct, rel=1e-4)
    assert direct > 1e-3


# ----------------------------------------------------------------------------
# DD.


@pytest.mark.parametrize("remat", [False, True])
def test_unrolled_gradient_matches_finite_differences(remat):
  with x64():
    model, params, apply_fn = _net(TINY_MLP, shape=(3, 2, 1))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    rng = np.random.default_rng(4)
    x_syn = jnp.asarray(rng.normal(size=(3, 3, 2, 1)))
    y_syn = jnp.asarray([0, 1, 2], jnp.int32)
    x_real = jnp.asarray(rng.normal(size=(9, 3, 2, 1)))
    y_real = jnp.asarray(np.arange(9) % 3, jnp.int32)
    w = jnp.full((9,), 1 / 9)
    log_lr = jnp.log(jnp.asarray([0.3, 0.2, 0.5]))
    f = jax.jit(lambda xs, ll: dd.outer_loss(apply_fn, params, xs, y_syn, ll, x_real, y_real, w,
                                             remat))
    gx, gl = jax.jit(jax.grad(f, argnums=(0, 1)))(x_syn, log_lr)
    eps = 1e-5
    for i in range(3):
      v = jnp.asarray(rng.normal(size=x_syn.shape))
      fd = (f(x_syn + eps * v, log_lr) - f(x_syn - eps * v, log_lr)) / (2 * eps)
      assert float(jnp.vdot(gx, v)) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)
    for t in range(3):
      e = jnp.zeros(3).at[t].set(eps)
      fd = (f(x_syn, log_lr + e) - f(x_syn, log_lr - e)) / (2 * eps)
      assert float(gl[t]) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)
    assert float(jnp.abs(gx).max()) > 1e-4


# ----------------------------------------------------------------------------
# Runs: resume, devices, bad input.


def _cfg(num_devices=None, iterations=4):
  common = dict(iterations=iterations, model=TINY_MLP, batch_real=8, num_devices=num_devices,
                log_every=1, checkpoint_every=2)
  return {"dsa": dict(common, outer_loop=2, inner_loop=2, batch_train=4),
          "dc": dict(common, outer_loop=2, inner_loop=1),
          "dm": dict(common),
          "dd": dict(common, unroll_steps=2)}


RUNNERS = {
    "dc": lambda tr, ipc, cfg, **kw: gm.distill_gradient_matching(tr, ipc, cfg, dsa=False, **kw),
    "dsa": lambda tr, ipc, cfg, **kw: gm.distill_gradient_matching(tr, ipc, cfg, dsa=True, **kw),
    "dm": dm.distill_distribution_matching,
    "dd": dd.distill_unrolled,
}


@pytest.mark.slow  # compile-bound: ~40-220 s each on the shared 2-core machine
@pytest.mark.parametrize("method", ["dsa", "dm", "dd"])
def test_checkpoint_and_resume_give_the_same_support_set(method, tmp_path):
  train = _dataset(shape=(6, 6, 1))
  run = RUNNERS[method]
  full = run(train, 2, _cfg(1), seed=3, progress=False)
  wd = str(tmp_path / method)
  part = run(train, 2, _cfg(1), seed=3, progress=False, workdir=wd, stop_after=2)
  assert part.cost["iterations"] == 2
  assert not np.allclose(part.support.x, full.support.x)
  resumed = run(train, 2, _cfg(1), seed=3, progress=False, workdir=wd)
  np.testing.assert_allclose(resumed.support.x, full.support.x, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(resumed.support.labels, full.support.labels)
  np.testing.assert_array_equal(resumed.support.init_ids, full.support.init_ids)
  assert resumed.cost["iterations"] == 4 and resumed.cost["example_passes"] == full.cost[
      "example_passes"]
  assert [r["iteration"] for r in resumed.history] == [0, 1, 2, 3]
  assert not np.allclose(full.support.x, synthetic.init_images(train, 2, 3).x)  # it learned
  other = dict(_cfg(1), **{method: dict(_cfg(1)[method], lr_img=0.123)})
  with pytest.raises(ValueError, match="different run"):
    run(train, 2, other, seed=3, progress=False, workdir=wd)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dsa", "dm", "dd"])
def test_one_device_and_all_devices_agree(method, n_devices):
  if n_devices < 2:
    pytest.skip("needs several devices")
  train = _dataset(shape=(6, 6, 1))
  one = RUNNERS[method](train, 2, _cfg(1, 2), seed=0, progress=False)
  many = RUNNERS[method](train, 2, _cfg(None, 2), seed=0, progress=False)
  np.testing.assert_allclose(many.support.x, one.support.x, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("method", ["dc", "dsa", "dm", "dd"])
def test_budget_larger_than_a_class_and_nan_inputs_raise(method):
  train = _dataset(n_per_class=5, shape=(6, 6, 1))
  with pytest.raises(ValueError, match=rf"{method.upper()}: images_per_class=6 exceeds the "
                                       r"size of class \d \(5 training"):
    RUNNERS[method](train, 6, _cfg(1), progress=False)
  x = train.x.copy()
  x[3, 0, 0, 0] = np.nan
  bad = ArrayDataset(x, train.y, train.ids, train.num_classes, "toy")
  with pytest.raises(ValueError, match=rf"{method.upper()}: toy inputs: contains NaN"):
    RUNNERS[method](bad, 2, _cfg(1), progress=False)
  with pytest.raises(ValueError, match="unknown config keys"):
    RUNNERS[method](train, 2, {method: dict(_cfg(1)[method], itrations=3)}, progress=False)


def test_registry_entries_keep_their_signature_and_reach_their_method():
  import inspect
  want = ["train", "images_per_class", "config", "seed", "workdir", "test", "progress"]
  for entry in (dd.dd_support, gm.dc_support, gm.dsa_support, dm.dm_support):
    assert list(inspect.signature(entry).parameters) == want
  calls = []

  def fake(train, ipc, config, **kw):
    calls.append((train, ipc, config, kw))
    return synthetic.DistillResult(support="S", history=[], cost={})

  entry = synthetic.support_entry(fake, "x", dsa=True)
  assert entry.__name__ == "x_support" and entry("T", 2, "C", seed=5, test="unused") == "S"
  assert calls == [("T", 2, "C", {"seed": 5, "workdir": None, "progress": False, "dsa": True})]
  # Each entry reads its own config section (errors raised before anything compiles).
  train = _dataset(shape=(6, 6, 1))
  for method, entry in (("dc", gm.dc_support), ("dsa", gm.dsa_support), ("dm", dm.dm_support),
                        ("dd", dd.dd_support)):
    with pytest.raises(ValueError, match=rf"^{method}: unknown config keys \['bogus'\]"):
      entry(train, 2, {method: dict(_cfg(1)[method], bogus=1)})
  with pytest.raises(ValueError, match=r"dd.unroll_steps must be >= 1, got 0"):
    dd.distill_unrolled(train, 2, {"dd": dict(_cfg(1)["dd"], unroll_steps=0)}, progress=False)


# ----------------------------------------------------------------------------
# Controls and configs.


def test_controls_helpers():
  from distill import controls
  from distill.support import SupportSet
  x = np.random.default_rng(0).normal(size=(6, 8, 8, 1)).astype(np.float32)
  labels = np.repeat(np.arange(3), 2)
  s = SupportSet(x=x, y=controls.hard_targets(labels, 3), labels=labels,
                 init_ids=np.arange(6))
  np.testing.assert_allclose(s.y.sum(1), 1 - 3 / 3, atol=1e-6)  # one_hot - 1/C sums to 0
  assert not controls.own_differs(s)
  assert controls.own_differs(controls.with_targets(s, s.y * 0.5))
  big = controls.augmented_copies(s, 3, dsa.STRATEGY_2D, seed=0)
  assert big.x.shape == (18, 8, 8, 1)
  np.testing.assert_array_equal(big.labels, np.tile(labels, 3))
  assert not np.allclose(big.x[:6], big.x[6:12])  # fresh transformations per copy
  tc = ml_collections.ConfigDict(dict(num_steps=500, batch_size=100))
  assert controls.num_copies(6, tc, cap=10 ** 6) == 500  # ceil(steps * min(bs, n) / n)
  assert controls.num_copies(6, tc, cap=60) == 10


def test_matching_configs_load_and_merge_per_budget_settings():
  from distill import controls
  from distill.configs import digits_matching, mnist1d_matching
  for mod in (digits_matching, mnist1d_matching):
    full, quick = mod.get_config(), mod.get_config("quick")
    assert set(full.methods) <= set(controls.METHODS)
    assert quick.dm.iterations < full.dm.iterations
    with pytest.raises(ValueError, match="unknown config arg"):
      mod.get_config("huge")
  c = digits_matching.get_config()
  c10 = controls.config_for(c, "dc", 10)
  assert (c10.dc.iterations, c10.dc.outer_loop, c10.dc.lr_img) == (15, 10, c.dc.lr_img)
  k10 = controls.config_for(c, "kip_conv", 10)
  assert k10.kip_conv.kip.steps == 10 and k10.kip_conv.kip.lr == c.kip_conv.kip.lr
  assert controls.cell_fingerprint(c, "dc", 10) != controls.cell_fingerprint(c, "dc", 1)
  assert controls.cell_fingerprint(c, "dm", 1) == controls.cell_fingerprint(
      digits_matching.get_config(), "dm", 1)
