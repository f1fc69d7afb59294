"""Self-supervised encoder (pruning.ssl), its augmentations and the SSL prototype scores."""
from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from core import parallel
from pruning import ssl, ssl_augment


# ----------------------------------------------------------------------------
# numpy references


def np_nt_xent(z1, z2, tau):
  u = np.concatenate([z1, z2]).astype(np.float64)
  u /= np.linalg.norm(u, axis=1, keepdims=True)
  n = len(z1)
  total = 0.0
  for i in range(2 * n):
    p = (i + n) % (2 * n)
    s = u @ u[i] / tau
    denom = sum(np.exp(s[j]) for j in range(2 * n) if j != i)
    total += -np.log(np.exp(s[p]) / denom)
  return total / (2 * n)


def np_sinkhorn(scores, eps, iters, mask=None):
  B, K = scores.shape
  w = np.ones(B) if mask is None else np.asarray(mask, np.float64)
  Q = (np.exp(scores / eps) * w[:, None]).T   # (K, B) as in the SwAV reference code
  Q /= Q.sum()
  b = w.sum()
  for _ in range(iters):
    Q /= Q.sum(axis=1, keepdims=True)
    Q /= K
    cs = Q.sum(axis=0, keepdims=True)
    Q = np.divide(Q, cs, out=np.zeros_like(Q), where=cs > 0)
    Q /= b
  return (Q * b).T


def np_swav(z1, z2, c, tau, eps, iters):
  n1 = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
  z1, z2, c = n1(z1.astype(np.float64)), n1(z2.astype(np.float64)), n1(c.astype(np.float64))
  s1, s2 = z1 @ c.T, z2 @ c.T
  q1, q2 = np_sinkhorn(s1, eps, iters), np_sinkhorn(s2, eps, iters)
  lsm = lambda s: s / tau - np.log(np.exp(s / tau).sum(axis=1, keepdims=True))
  return -0.5 * (np.mean(np.sum(q1 * lsm(s2), 1)) + np.mean(np.sum(q2 * lsm(s1), 1)))


def test_nt_xent_equals_numpy():
  rng = np.random.default_rng(0)
  z1, z2 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
  for tau in (0.1, 0.5):
    got = float(ssl.nt_xent_loss(jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32), tau))
    np.testing.assert_allclose(got, np_nt_xent(z1, z2, tau), rtol=1e-5)


def test_sinkhorn_and_swav_equal_numpy():
  rng = np.random.default_rng(1)
  s = rng.uniform(-1, 1, size=(12, 5))
  q = np.asarray(ssl.sinkhorn(jnp.asarray(s, jnp.float32), 0.1, 3))
  np.testing.assert_allclose(q, np_sinkhorn(s, 0.1, 3), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-5)             # each example: mass 1
  mask = np.array([0, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1], bool)
  qm = np.asarray(ssl.sinkhorn(jnp.asarray(s, jnp.float32), 0.1, 3, jnp.asarray(mask)))
  np.testing.assert_allclose(qm, np_sinkhorn(s, 0.1, 3, mask), rtol=1e-4, atol=1e-6)
  assert np.all(qm[~mask] == 0)
  z1, z2, c = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), rng.normal(size=(3, 4))
  got, _ = ssl.swav_loss(*(jnp.asarray(a, jnp.float32) for a in (z1, z2, c)), temperature=0.1,
                         epsilon=0.05, sinkhorn_iters=3)
  np.testing.assert_allclose(float(got), np_swav(z1, z2, c, 0.1, 0.05, 3), rtol=1e-4)


# ----------------------------------------------------------------------------
# device-count invariance


def tiny_config(objective="simclr", **kw):
  c = ml_collections.ConfigDict(dict(
      seed=0, model=dict(name="mlp", hidden=(16,)), head=dict(hidden=16, dim=8),
      objective=objective, simclr=dict(temperature=0.3),
      swav=dict(num_prototypes=6, temperature=0.1, epsilon=0.05, sinkhorn_iters=3,
                queue_length=0, freeze_prototypes_steps=0),
      augment=dict(ops=("circular_shift", "scale", "corr_noise"), max_shift=3),
      batch_size=16, num_steps=4, optimizer=dict(name="adam", lr=1e-2, schedule="constant"),
      log_every_steps=2, progress_bar=False, checkpoint=True))
  for k, v in kw.items():
    c[k] = v
  return c


@pytest.mark.parametrize("objective,queue", [("simclr", 0), ("swav", 32)])
def test_loss_and_gradients_1_vs_8_devices(objective, queue):
  assert jax.local_device_count() == 8
  cfg = tiny_config(objective)
  cfg.swav.queue_length = queue
  model = ssl.build_model(cfg)
  rng = np.random.default_rng(2)
  x = rng.normal(size=(16, 12, 1)).astype(np.float32)
  v1 = jnp.asarray(x + 0.1 * rng.normal(size=x.shape), jnp.float32)
  v2 = jnp.asarray(x + 0.1 * rng.normal(size=x.shape), jnp.float32)
  params = model.init(jax.random.PRNGKey(0), v1[:2])["params"]
  lc = ssl._loss_cfg(cfg)
  qz = rng.normal(size=(2, max(queue, 1), 8)).astype(np.float32)[:, :queue]
  qz /= np.linalg.norm(qz, axis=-1, keepdims=True) + 1e-12
  filled = np.int32(queue // 2)

  def loss_grad(p, a, b, axis):
    f = lambda p: ssl.ssl_loss(model, p, {}, a, b, jnp.asarray(qz), filled, lc, axis)[0]
    l, g = jax.value_and_grad(f)(p)
    return (l, g) if axis is None else (parallel.pmean(l), parallel.pmean(g))

  ref_l, ref_g = jax.jit(lambda p, a, b: loss_grad(p, a, b, None))(params, v1, v2)
  for ndev in (1, 8):
    devs = parallel.local_devices(ndev)
    fn = parallel.pmap(lambda p, a, b: loss_grad(p, a, b, parallel.AXIS), devs)
    l, g = parallel.fetch(fn(parallel.replicate(params, devs),
                             *parallel.shard((np.asarray(v1), np.asarray(v2)), devs)))
    np.testing.assert_allclose(float(l), float(ref_l), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(ref_g)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=1e-6)


@pytest.mark.slow
def test_training_1_vs_8_devices_same_parameters():
  x = np.random.default_rng(3).normal(size=(40, 12, 1)).astype(np.float32)
  ids = np.arange(100, 140)
  out = {}
  for ndev in (1, 8):
    cfg = tiny_config("swav", num_devices=ndev)
    cfg.swav.queue_length = 16
    out[ndev] = ssl.train_encoder(cfg, x, ids)
  for a, b in zip(jax.tree.leaves(out[1].variables), jax.tree.leaves(out[8].variables)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(ssl.embed(out[1], x, 7, num_devices=1),
                             ssl.embed(out[8], x, 7, num_devices=8), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_resume_equals_uninterrupted(tmp_path):
  x = np.random.default_rng(4).normal(size=(40, 12, 1)).astype(np.float32)
  ids = np.arange(40)
  cfg = tiny_config("simclr", num_steps=6, checkpoint_every_steps=2)
  full = ssl.train_encoder(cfg, x, ids)
  cut = ml_collections.ConfigDict(cfg.to_dict())
  cut.stop_after_steps = 3      # killed after step 3: the checkpoint of step 2 survives
  part = ssl.train_encoder(cut, x, ids, str(tmp_path))
  assert part.metrics["stopped"] and part.metrics["steps"] == 3
  resumed = ssl.train_encoder(cfg, x, ids, str(tmp_path))
  assert resumed.metrics["steps"] == 6
  for a, b in zip(jax.tree.leaves(full.variables), jax.tree.leaves(resumed.variables)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# augmentations


@pytest.mark.parametrize("shape,ops", [((40, 1), ssl_augment.SIGNAL_OPS),
                                       ((8, 8, 1), ssl_augment.IMAGE_OPS)])
def test_augmentations_deterministic_in_seed_and_id(shape, ops):
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.normal(size=(6,) + shape), jnp.float32)
  ids = jnp.asarray([3, 17, 4, 99, 0, 5])
  aug = ssl_augment.make_augment(dict(ops=ops), shape)
  views = jax.jit(lambda seed, i, x: ssl_augment.two_views(aug, seed, 11, i, x))
  a1, a2 = views(7, ids, x)
  perm = np.array([4, 2, 0, 5, 1, 3])                                 # other batch order
  c1, _ = views(7, ids[perm], x[perm])
  np.testing.assert_allclose(np.asarray(c1), np.asarray(a1)[perm], rtol=1e-5, atol=1e-6)
  if len(shape) == 2:  # one example alone (another batch size, not jitted): the same view
    d1 = aug(ssl_augment.example_keys(7, 11, 0, ids[1:2])[0], x[1])
    np.testing.assert_allclose(d1, np.asarray(a1)[1], rtol=1e-4, atol=1e-5)
  assert not np.allclose(a1, a2)                                      # two different views
  e1, _ = views(8, ids, x)                                            # other seed
  assert not np.allclose(e1, a1)
  f1, _ = views(7, ids + 1, x)                                        # other ids
  assert not np.allclose(f1, a1)
  assert np.isfinite(np.asarray(a1)).all() and a1.shape == x.shape


def test_augmentation_ops_do_what_they_say():
  x = jnp.asarray(np.arange(10, dtype=np.float32)[:, None] + 1)
  key = jax.random.PRNGKey(0)
  shifted = ssl_augment.make_augment(dict(ops=("circular_shift",), max_shift=3), (10, 1))(key, x)
  k = int(np.argmax(np.asarray(shifted)[:, 0] == 1.0))
  np.testing.assert_array_equal(np.asarray(shifted), np.roll(np.asarray(x), k, axis=0))
  padded = ssl_augment.make_augment(dict(ops=("pad_shift",), max_shift=3), (10, 1))(key, x)
  assert set(np.asarray(padded).ravel()) <= set(np.asarray(x).ravel()) | {0.0}
  img = jnp.asarray(np.random.default_rng(0).random((8, 8, 1)), jnp.float32)
  rot0 = ssl_augment.make_augment(dict(ops=("rotate",), max_degrees=0.0), (8, 8, 1))(key, img)
  np.testing.assert_allclose(rot0, img, atol=1e-6)


def test_bad_augmentation_and_objective_raise():
  with pytest.raises(ValueError, match="unknown augmentation 'flip_time'"):
    ssl_augment.make_augment(dict(ops=("flip_time",)), (40, 1))
  with pytest.raises(ValueError, match="does not apply to signal"):
    ssl_augment.make_augment(dict(ops=("rotate",)), (40, 1))
  with pytest.raises(ValueError, match="unknown self-supervised objective 'byol'"):
    ssl.train_encoder(tiny_config("byol"), np.zeros((8, 12, 1), np.float32), np.arange(8))
  with pytest.raises(ValueError, match="NaN"):
    ssl.train_encoder(tiny_config(), np.full((8, 12, 1), np.nan, np.float32), np.arange(8))


# ----------------------------------------------------------------------------
# labels never reach the encoder


class NoLabels:
  """An ArrayDataset stand-in whose labels raise when read."""

  def __init__(self, x, ids):
    self.x, self.ids = x, ids

  @property
  def y(self):
    raise AssertionError("the encoder read the labels")

  labels = y


def test_encoder_never_receives_labels():
  params = inspect.signature(ssl.train_encoder).parameters
  assert not {"y", "labels", "targets", "data"} & set(params)
  x = np.random.default_rng(6).normal(size=(32, 12, 1)).astype(np.float32)
  enc = ssl.fit_encoder(tiny_config(), NoLabels(x, np.arange(32)))
  assert ssl.embed(enc, NoLabels(x, np.arange(32))).shape == (32, 16)


# ----------------------------------------------------------------------------
# prototype scores on embeddings


def planted(seed=0, n_per=60, n_out=6):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(3, 8)) * 4
  e = np.concatenate([c + 0.3 * rng.normal(size=(n_per, 8)) for c in centers])
  labels = np.repeat(np.arange(3), n_per)
  out_idx = rng.choice(len(e), n_out, replace=False)
  # outliers: pointing between the clusters (far from every centroid after L2 normalisation)
  e[out_idx] = rng.normal(size=(n_out, 8)) * 4
  return e, labels, out_idx


@pytest.mark.parametrize("centroids,k", [("kmeans", 3), ("kmeans_per_class", 1),
                                         ("class_mean", 1)])
def test_prototype_scores_rank_planted_outliers_hardest(centroids, k):
  e, labels, out_idx = planted()
  s = ssl.checked_prototype_scores(e, labels if centroids != "kmeans" else None, k=k,
                                   centroids=centroids)
  hardest = np.argsort(-s)[:len(out_idx)]
  assert set(hardest) == set(out_idx)
  # distance on L2-normalised embeddings, to centroids = mean of the unit vectors
  u = e / np.linalg.norm(e, axis=1, keepdims=True)
  if centroids == "class_mean":
    ref = np.array([np.linalg.norm(u[i] - u[labels == labels[i]].mean(0)) for i in range(len(u))])
    np.testing.assert_allclose(s, ref, rtol=1e-6)


def test_prototype_scores_bad_inputs_raise():
  e, labels, _ = planted()
  with pytest.raises(ValueError, match="k=500 centroids for 180 examples"):
    ssl.checked_prototype_scores(e, k=500)
  with pytest.raises(ValueError, match="smallest class has 60"):
    ssl.checked_prototype_scores(e, labels, k=61, centroids="kmeans_per_class")
  bad = e.copy()
  bad[7, 2] = np.nan
  with pytest.raises(ValueError, match="NaN or inf in 1 rows .*row 7"):
    ssl.checked_prototype_scores(bad, k=3)
  with pytest.raises(ValueError, match="unknown prototype centroids 'medoids'"):
    ssl.checked_prototype_scores(e, k=3, centroids="medoids")
  with pytest.raises(ValueError, match="needs labels"):
    ssl.checked_prototype_scores(e, k=3, centroids="class_mean")


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["swav", "simclr"])
def test_two_processes_equal_one_process(tmp_path, objective):
  """2 processes x 2 devices (gloo) == 1 process x 4 devices: gathered negatives, Sinkhorn
  over the global batch and the queue span both processes."""
  import os
  import test_multihost as mh
  worker = os.path.join(os.path.dirname(__file__), "multihost_ssl_worker.py")
  port = mh.free_port()
  multi = [mh.launch(i, 2, port, 2, tmp_path / "multi.npz", objective, worker=worker)
           for i in range(2)]
  single = mh.launch(0, 1, 0, 4, tmp_path / "single.npz", objective, worker=worker)
  outs = mh.wait(multi + [single], timeout=400)
  assert "process 1: done" in outs[1]
  m, s = np.load(tmp_path / "multi.npz"), np.load(tmp_path / "single.npz")
  assert int(m["process_count"]) == 2 and int(s["process_count"]) == 1
  assert int(m["device_count"]) == int(s["device_count"]) == 4
  for i in range(int(m["n_leaves"])):
    np.testing.assert_allclose(m[f"p{i}"], s[f"p{i}"], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(m["emb"], s["emb"], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(float(m["loss"]), float(s["loss"]), rtol=1e-5)


@pytest.mark.slow
def test_ssl_prototype_score_method_end_to_end(tmp_path):
  """compute_scores('ssl_prototype'): a score file with the encoder fingerprint, reloaded."""
  from core.data import load_dataset
  from pruning import scores
  from pruning.configs import mnist1d_ssl
  data = load_dataset("mnist1d", num_train=300, num_test=100)
  enc = mnist1d_ssl.get_config("quick")
  enc.num_steps = 10
  cfg = dict(ssl_prototype=dict(encoder=enc.to_dict(), k=5, centroids="kmeans",
                                encoder_dir=str(tmp_path / "enc")))
  logs = []
  res = scores.compute_scores("ssl_prototype", data, cfg, cache_dir=str(tmp_path / "s"),
                              log=logs.append)
  assert res.scores.shape == (300,) and np.isfinite(res.scores).all()
  np.testing.assert_array_equal(res.ids, data.train.ids)
  fp = res.meta["encoder_fingerprint"]
  assert fp == ssl.encoder_fingerprint(enc, data.train.x, data.train.ids)
  assert res.meta["uses_labels"] is False and 0 < res.meta["encoder_probe"]["linear_probe"] <= 1
  again = scores.compute_scores("ssl_prototype", data, cfg, cache_dir=str(tmp_path / "s"),
                                log=logs.append)
  np.testing.assert_array_equal(again.scores, res.scores)
  assert any("reusing" in l or "loaded" in l for l in logs)
  cfg["ssl_prototype"]["k"] = 301
  with pytest.raises(ValueError, match="k=301 centroids for 300 examples"):
    scores.compute_scores("ssl_prototype", data, cfg)


def test_reliability_measures():
  from pruning import reliability
  rng = np.random.default_rng(7)
  n = 200
  ids, labels = np.arange(1000, 1000 + n), np.repeat(np.arange(4), n // 4)
  a = rng.random(n)
  same = reliability.pairwise([a, a.copy()], ids, labels)
  assert same["spearman"] == pytest.approx(1.0) and same["overlap@0.5"] == 1.0
  rev = reliability.pairwise([a, -a], ids, labels)
  assert rev["spearman"] == pytest.approx(-1.0)
  assert rev["overlap@0.5"] == 0.0 and rev["overlap@0.2"] == 0.0
  noisy = [a + 0.3 * rng.random(n) for _ in range(3)]
  p = reliability.pairwise(noisy, ids, labels)
  assert p["num_pairs"] == 3 and p["spearman_min"] <= p["spearman"] <= p["spearman_max"] < 1
  from scipy.stats import spearmanr
  ref = np.mean([spearmanr(noisy[i], noisy[j]).statistic for i, j in ((0, 1), (0, 2), (1, 2))])
  assert p["spearman"] == pytest.approx(ref)
  per_run = np.stack([a, 2 * a, 3 * a, 4 * a, 5 * a])
  avg = reliability.averaged_runs(per_run, 2)
  assert len(avg) == 2
  np.testing.assert_allclose(avg[1], 3.5 * a)
  with pytest.raises(ValueError, match="at least 2 runs"):
    reliability.pairwise([a], ids, labels)


@pytest.mark.slow
def test_ssl_sweep_quick(tmp_path):
  """The SSL sweep end to end on its :quick config: tables, results, plot."""
  import json
  from experiments import ssl_sweep
  from experiments.configs import ssl_sweep_mnist1d
  out = ssl_sweep.run_ssl_sweep(ssl_sweep_mnist1d.get_config("quick"), str(tmp_path),
                                verbose=False)
  methods = {r["method"] for r in out["summary"]}
  assert {"full", "random", "prototype", "ssl k=10", "ssl/class k=20"} <= methods
  assert out["encoder"]["probe"]["linear_probe"] > 0.1
  assert (tmp_path / "ssl_sweep.png").exists()
  assert "ssl/class k=10" in (tmp_path / "results.md").read_text()
  assert json.loads((tmp_path / "results.json").read_text())["ks"] == [10, 20]
  with pytest.raises(ValueError, match="unknown config arg 'fast'"):
    ssl_sweep_mnist1d.get_config("fast")
