"""KRR, Label Solve and KIP: exactness, monotonicity, checkpoints, errors."""
import json
import os

import numpy as np
import pytest

import jax.numpy as jnp

from distill import kernels, kip, krr, label_solve
from core.data import load_dataset

CFG = {"kernel": {"architecture": "fc", "depth": 2, "kernel_type": "ntk"},
       "kip": {"steps": 6, "lr": 0.01, "reg": 1e-6, "target_per_class": 10, "log_every": 2,
               "eval_every": 0, "checkpoint_every": 3, "learn_labels": True}}


@pytest.fixture(scope="module")
def digits():
  return load_dataset("digits")


@pytest.fixture(scope="module")
def small(digits):
  """300 digits training examples (30 per class)."""
  from core.data import class_balanced_ids
  return digits.train.subset(class_balanced_ids(digits.train, 30, seed=0))


def _kf(example_shape, depth=2):
  return kernels.make_kernel_fn(kernels.KernelSpec(depth=depth), example_shape)


def test_krr_full_training_set_equals_direct_solve(small, digits):
  kf = _kf(small.example_shape)
  y = krr.centered_one_hot(small.labels, 10)
  reg = 1e-4
  with kernels.x64():
    k_ss = kernels.kernel_matrix(kf, small.x, small.x, 128)
    k_ts = kernels.kernel_matrix(kf, digits.test.x, small.x, 128)
    pred = np.asarray(krr.krr_predict(jnp.asarray(k_ts), jnp.asarray(k_ss), jnp.asarray(y), reg))
  lam = reg * np.trace(k_ss) / len(k_ss)
  direct = k_ts @ np.linalg.solve(k_ss + lam * np.eye(len(k_ss)), y)
  np.testing.assert_allclose(pred, direct, rtol=1e-8, atol=1e-10)
  m = krr.krr_evaluate(kf, small.x, y, digits.test.x, digits.test.labels, reg)
  assert m["accuracy"] == pytest.approx(np.mean(direct.argmax(1) == digits.test.labels))
  assert m["mse"] == pytest.approx(np.mean((direct - krr.centered_one_hot(digits.test.labels, 10)) ** 2))
  # Training set as its own target set: near-interpolation with tiny reg.
  with kernels.x64():
    fit = np.asarray(krr.krr_predict(jnp.asarray(k_ss), jnp.asarray(k_ss), jnp.asarray(y), 1e-10))
  np.testing.assert_allclose(fit, y, atol=1e-3)


def test_label_solve_reduces_target_loss(small):
  kf = _kf(small.example_shape)
  support = kip.init_support(small, 3, seed=1)
  y_t = krr.centered_one_hot(small.labels, 10)
  before = label_solve.target_loss(kf, support.x, support.y, small.x, y_t)
  y_s = label_solve.solve_labels(kf, support.x, small.x, y_t)
  after = label_solve.target_loss(kf, support.x, y_s, small.x, y_t)
  assert y_s.shape == (30, 10) and np.isfinite(y_s).all()
  assert after < 0.9 * before
  # Optimality: perturbing the solved labels never lowers the loss.
  rng = np.random.default_rng(0)
  for _ in range(3):
    assert label_solve.target_loss(kf, support.x, y_s + 1e-2 * rng.normal(size=y_s.shape),
                                   small.x, y_t) >= after
  ls = label_solve.label_solve_support(small, 3, CFG, seed=1)
  np.testing.assert_allclose(ls.y, y_s, rtol=1e-6, atol=1e-8)
  np.testing.assert_array_equal(ls.init_ids, support.init_ids)


def test_one_kip_step_decreases_loss_on_fixed_batch(small):
  kf = _kf(small.example_shape)
  support = kip.init_support(small, 2, seed=0)
  pos = kip.target_batch_positions(small.labels, 10, 10, seed=0, step=0)
  x_t, labels_t = small.x[pos], small.labels[pos]
  y_t = krr.centered_one_hot(labels_t, 10)
  opt = kip.make_optimizer(0.01)
  with kernels.x64():
    args = (jnp.asarray(x_t, jnp.float64), jnp.asarray(y_t), jnp.asarray(labels_t))
    for learn_labels in (False, True):
      state = kip.init_kip_state(support, opt)
      step = kip.make_kip_step(kf, opt, 1e-6, learn_labels)
      state1, m0 = step(state, *args)
      _, m1 = step(state1, *args)
      assert int(state1.step) == 1
      assert float(m1["loss"]) < float(m0["loss"])
      params0 = {"x": state.x, "y": state.y}
      assert float(kip.kip_loss(params0, *args, kf, 1e-6)[0]) == pytest.approx(float(m0["loss"]))
      assert np.array_equal(np.asarray(state1.y), support.y) != learn_labels


def test_support_shapes_class_balance_and_target_batches(digits):
  s = kip.init_support(digits.train, 5, seed=3)
  assert s.x.shape == (50, 8, 8, 1) and s.y.shape == (50, 10)
  np.testing.assert_array_equal(np.bincount(s.labels, minlength=10), 5)
  np.testing.assert_allclose(s.y, np.eye(10)[s.labels] - 0.1)
  np.testing.assert_array_equal(s.x, digits.train.subset(s.init_ids).x)
  a = kip.target_batch_positions(digits.train.labels, 10, 20, seed=1, step=7)
  b = kip.target_batch_positions(digits.train.labels, 10, 20, seed=1, step=7)
  c = kip.target_batch_positions(digits.train.labels, 10, 20, seed=1, step=8)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  np.testing.assert_array_equal(np.bincount(digits.train.labels[a], minlength=10), 20)
  assert len(np.unique(a)) == 200


def test_clear_errors(small):
  kf = _kf(small.example_shape)
  with pytest.raises(ValueError, match="images_per_class=31 exceeds the size of class"):
    kip.init_support(small, 31, seed=0)
  with pytest.raises(ValueError, match="images_per_class must be >= 1"):
    kip.init_support(small, 0, seed=0)
  for bad in (0.0, -1e-3, float("nan")):
    with pytest.raises(ValueError, match="reg must be"):
      krr.check_reg(bad)
    with pytest.raises(ValueError, match="reg must be"):
      kip.distill_kip(small, 1, {**CFG, "kip": {**CFG["kip"], "reg": bad}}, progress=False)
  with pytest.raises(ValueError, match="do not match"):
    krr.krr_solve(jnp.eye(3), jnp.ones((4, 10)), 1e-6)
  with pytest.raises(ValueError, match="columns"):
    krr.krr_predict(jnp.ones((5, 4)), jnp.eye(3), jnp.ones((3, 10)), 1e-6)
  with pytest.raises(ValueError, match="target_y"):
    label_solve.solve_labels(kf, small.x[:5], small.x[:20], np.ones((19, 10)))
  x_nan = small.x.copy()
  x_nan[3, 0, 0, 0] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    kip.init_support(small.__class__(x_nan, small.y, small.ids, 10, "nan"), 2, seed=0)
  with pytest.raises(ValueError, match="NaN"):
    label_solve.solve_labels(kf, x_nan[:5], small.x, krr.centered_one_hot(small.labels, 10))
  with pytest.raises(ValueError, match="learning rate"):
    kip.make_optimizer(0.0)


def test_kip_checkpoint_resume_matches_uninterrupted(small, tmp_path):
  full = kip.distill_kip(small, 1, CFG, seed=2, workdir=str(tmp_path / "a"), progress=False)
  half = {**CFG, "kip": {**CFG["kip"], "steps": 3}}
  kip.distill_kip(small, 1, half, seed=2, workdir=str(tmp_path / "b"), progress=False)
  assert os.path.exists(tmp_path / "b" / kip.CKPT_NAME)
  resumed = kip.distill_kip(small, 1, CFG, seed=2, workdir=str(tmp_path / "b"), progress=False)
  np.testing.assert_allclose(resumed.support.x, full.support.x, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(resumed.support.y, full.support.y, rtol=1e-12, atol=1e-12)
  rows = [json.loads(l) for l in open(tmp_path / "b" / kip.LOG_NAME)]
  steps = [r["step"] for r in rows]
  assert steps == sorted(set(steps)) and steps[-1] == full.history[-1]["step"] == 5
  assert rows[-1]["loss"] == pytest.approx(full.history[-1]["loss"], rel=1e-10)
  assert not [p for p in os.listdir(tmp_path / "b") if p.endswith(".tmp")]
  with pytest.raises(ValueError, match="different KIP run"):
    kip.distill_kip(small, 1, CFG, seed=3, workdir=str(tmp_path / "b"), progress=False)


def test_kip_beats_label_solve_beats_random_on_digits(digits):
  """FC kernel, 10 images/class, seed 0: KRR test accuracy ordering (short run)."""
  cfg = {"kernel": {"architecture": "fc", "depth": 1, "kernel_type": "ntk"},
         "kip": {"steps": 150, "lr": 0.01, "reg": 1e-6, "target_per_class": 50,
                 "log_every": 50, "eval_every": 0}}
  kf = _kf(digits.example_shape, depth=1)
  ev = lambda s: krr.krr_evaluate(kf, s.x, s.y, digits.test.x, digits.test.labels)["accuracy"]
  rand = ev(kip.init_support(digits.train, 10, seed=0))
  ls = ev(label_solve.label_solve_support(digits.train, 10, cfg, seed=0))
  res = kip.distill_kip(digits.train, 10, cfg, seed=0, progress=False)
  k = ev(res.support)
  assert res.history[-1]["loss"] < res.history[0]["loss"]
  assert k > rand + 0.03, (rand, ls, k)
  assert rand < ls < k + 0.005, (rand, ls, k)
