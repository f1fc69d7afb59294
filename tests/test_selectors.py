"""Coreset selectors, uncertainty / training-dynamics scores and InfoBatch against direct
computations (pruning.coreset, pruning.uncertainty, pruning.infobatch)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import softmax as sp_softmax

from pruning import coreset, infobatch, uncertainty


def _blobs(n=120, d=4, seed=0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(scale=4.0, size=(5, d))
  return centers[rng.integers(5, size=n)] + rng.normal(size=(n, d))


def _radius(e, rows):
  d = np.linalg.norm(e[:, None] - e[rows][None], axis=-1)
  return d.min(axis=1).max()


# ----------------------------------------------------------------------------
# Coresets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kcenter_within_twice_the_optimal_radius(seed):
  e = _blobs(n=12, d=2, seed=seed)
  k = 3
  opt = min(_radius(e, list(c)) for c in itertools.combinations(range(len(e)), k))
  rows, trace = coreset.kcenter_greedy(e, k, seed=seed)
  assert len(set(rows.tolist())) == k
  r = _radius(e, rows)
  assert opt - 1e-6 <= r <= 2.0 * opt + 1e-6
  # trace[t] = squared distance of the t-th pick to the earlier picks (the max of min distances)
  for t in range(1, k):
    np.testing.assert_allclose(trace[t], _radius(e, rows[:t]) ** 2, rtol=1e-5)


def test_kcenter_picks_the_farthest_point_each_step():
  e = _blobs(n=80, d=3, seed=3)
  rows, _ = coreset.kcenter_greedy(e, 15, first=7)
  assert rows[0] == 7
  for t in range(1, 15):
    mind = ((e[:, None] - e[rows[:t]][None]) ** 2).sum(-1).min(axis=1)
    assert rows[t] == int(np.argmax(mind))


def test_herding_running_mean_matches_direct_computation():
  e = _blobs(n=90, d=5, seed=4)
  k = 30
  rows, gap = coreset.herding(e, k)
  mu = e.mean(axis=0)
  direct = [np.linalg.norm(mu - e[rows[:t + 1]].mean(axis=0)) for t in range(k)]
  np.testing.assert_allclose(gap, direct, rtol=1e-4, atol=1e-5)
  # and each pick is the greedy minimiser of the next running mean's distance (float64 ref)
  chosen = []
  for t in range(k):
    rest = [i for i in range(len(e)) if i not in chosen]
    cost = [np.linalg.norm(mu - (e[chosen].sum(0) + e[i]) / (t + 1)) for i in rest]
    chosen.append(rest[int(np.argmin(cost))])
  assert rows.tolist() == chosen
  assert gap[-1] < 0.2 * np.linalg.norm(mu - e[rows[0]])


def test_facility_location_lazy_equals_plain_greedy():
  e = _blobs(n=150, d=4, seed=5)
  lazy_rows, lazy_g = coreset.facility_location(e, 40, knn=12, lazy=True)
  plain_rows, plain_g = coreset.facility_location(e, 40, knn=12, lazy=False)
  assert lazy_rows.tolist() == plain_rows.tolist()
  np.testing.assert_array_equal(lazy_g, plain_g)
  assert (np.diff(lazy_g) <= 1e-12).all()  # submodular: non-increasing gains


def test_facility_location_dense_knn_equals_direct_greedy():
  # with knn = n the sparse similarity is the full RBF matrix: compare with a dense greedy
  e = _blobs(n=40, d=3, seed=6)
  n, k = len(e), 10
  rows, gains = coreset.facility_location(e, k, knn=n)
  d2 = ((e[:, None] - e[None]) ** 2).sum(-1)
  off = d2[~np.eye(n, dtype=bool)]
  s = np.exp(-d2 / (2 * off.mean()))
  cur, picked = np.zeros(n), []
  for _ in range(k):
    g = np.maximum(s - cur[:, None], 0).sum(axis=0)
    g[picked] = -1
    j = int(np.argmax(g))
    picked.append(j)
    cur = np.maximum(cur, s[:, j])
  assert rows.tolist() == picked
  np.testing.assert_allclose(np.cumsum(gains)[-1], cur.sum(), rtol=1e-5)


def test_knn_graph_matches_brute_force():
  e = _blobs(n=70, d=3, seed=7)
  nbr, d2 = coreset.knn_graph(e, 6, chunk=8)
  full = ((e[:, None] - e[None]) ** 2).sum(-1)
  ref = np.sort(full, axis=1)[:, :6]
  np.testing.assert_allclose(np.sort(d2, axis=1), ref, atol=1e-3)
  assert (nbr == np.arange(70)[:, None]).any(axis=1).all()


def test_one_and_eight_devices_give_the_same_selections(n_devices):
  if n_devices < 8:
    pytest.skip("needs 8 (fake) devices")
  e = _blobs(n=203, d=6, seed=8)
  for mode in coreset.MODES:
    one = coreset.greedy_order(mode, e, 50, num_devices=1)
    eight = coreset.greedy_order(mode, e, 50, num_devices=8)
    assert one.tolist() == eight.tolist(), mode


def test_select_ids_semantics_and_per_class_prefix():
  e = _blobs(n=100, d=3, seed=9)
  ids = np.arange(1000, 1100)
  labels = np.repeat(np.arange(4), 25)
  got = coreset.select(e, ids, labels, fraction=0.3, mode="herding", class_balanced=True)
  assert len(got) == 4 * 8  # floor(0.3 * 25 + 0.5) = 8 per class
  for c in range(4):
    assert (labels[got - 1000] == c).sum() == 8
  # the greedy-order scores + 'hard' top-k give the same per-class prefix
  s = coreset.greedy_order_scores("herding", e, labels, per_class=True)
  for c in range(4):
    rows = np.flatnonzero(labels == c)
    top = rows[np.argsort(-s[rows], kind="stable")[:8]]
    assert sorted(top + 1000) == sorted(got[labels[got - 1000] == c])
  assert len(coreset.select(e, ids, count=17, mode="kcenter")) == 17


def test_bad_inputs_raise_clear_errors():
  e = _blobs(n=30, d=3)
  ids = np.arange(30)
  labels = np.repeat([0, 1, 2], 10)
  bad = e.copy()
  bad[4, 1] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    coreset.select(bad, ids, labels, fraction=0.5, mode="kcenter")
  with pytest.raises(ValueError, match="class 0 has 10 examples"):
    coreset.select(e, ids, labels, per_class_count=11, mode="herding")
  with pytest.raises(ValueError, match="unknown coreset selector 'kcentre'"):
    coreset.select(e, ids, labels, fraction=0.5, mode="kcentre")
  with pytest.raises(ValueError, match="budget k=31"):
    coreset.kcenter_greedy(e, 31)
  with pytest.raises(ValueError, match="30 ids"):
    coreset.select(e[:20], ids, fraction=0.5)


# ----------------------------------------------------------------------------
# Uncertainty scores


def test_uncertainty_scores_equal_direct_numpy():
  rng = np.random.default_rng(10)
  z = rng.normal(scale=3.0, size=(50, 7))
  p = sp_softmax(z, axis=1)
  np.testing.assert_allclose(uncertainty.least_confidence_scores(z), 1 - p.max(1), atol=1e-12)
  np.testing.assert_allclose(uncertainty.entropy_scores(z), -(p * np.log(p)).sum(1), atol=1e-12)
  top2 = np.sort(p, 1)[:, -2:]
  np.testing.assert_allclose(uncertainty.margin_scores(z), 1 - (top2[:, 1] - top2[:, 0]),
                             atol=1e-12)
  with pytest.raises(ValueError, match="non-finite"):
    uncertainty.entropy_scores(np.where(z > 2, np.nan, z))


def test_aum_on_a_hand_made_trajectory():
  # 2 examples, 3 classes, 3 epochs. Example 0 (label 0) is learned; example 1 (label 2)
  # looks like class 1 throughout (a "mislabeled" example): negative margins.
  traj = np.array([
      [[1.0, 0.0, 0.5], [0.0, 2.0, 1.0]],
      [[2.0, 0.5, 0.0], [0.0, 3.0, 0.5]],
      [[3.0, 1.0, 1.5], [0.5, 2.5, 1.5]],
  ])
  labels = np.array([0, 2])
  # margins: ex0: 1-0.5=0.5, 2-0.5=1.5, 3-1.5=1.5 -> 3.5/3; ex1: 1-2=-1, 0.5-3=-2.5, 1.5-2.5=-1
  np.testing.assert_allclose(uncertainty.aum_from_logits(traj, labels), [3.5 / 3, -4.5 / 3])
  tr = uncertainty.AUMTracker(2)
  for t in range(3):
    tr.update([1, 0], uncertainty.logit_margins(traj[t][[1, 0]], labels[[1, 0]]))
  np.testing.assert_allclose(tr.scores(), [-3.5 / 3, 4.5 / 3])
  assert tr.scores()[1] > tr.scores()[0]  # the mislabeled example is the hardest
  with pytest.raises(ValueError, match="never presented"):
    uncertainty.AUMTracker(3).aum()


def test_dyn_unc_and_tdds_equal_direct_computations():
  rng = np.random.default_rng(11)
  T, n, C = 6, 5, 3
  probs = sp_softmax(rng.normal(size=(T, n, C)), axis=-1)
  y = rng.integers(C, size=n)
  p_true = probs[:, np.arange(n), y]
  J = 3
  want = np.mean([np.std(p_true[k:k + J], axis=0) for k in range(T - J + 1)], axis=0)
  np.testing.assert_allclose(uncertainty.dyn_unc_scores(p_true, J), want)
  kl = np.array([[np.sum(probs[t, i] * np.log(probs[t, i] / probs[t - 1, i]))
                  for i in range(n)] for t in range(1, T)])
  var = np.array([kl[w:w + 2].var(axis=0) for w in range(T - 2)])   # window 2 -> 4 windows
  wts = 0.5 ** np.array([3, 2, 1, 0])
  np.testing.assert_allclose(uncertainty.tdds_scores(probs, 2, 0.5),
                             (wts[:, None] * var).sum(0) / wts.sum())
  dyn = uncertainty.EpochDynamics(y)
  for t in range(T):
    dyn.update(np.log(probs[t]))
  np.testing.assert_allclose(dyn.dyn_unc(J), want)
  np.testing.assert_allclose(dyn.tdds(2, 0.5), uncertainty.tdds_scores(probs, 2, 0.5))
  with pytest.raises(ValueError, match="at least 10 records"):
    uncertainty.dyn_unc_scores(p_true, 10)


# ----------------------------------------------------------------------------
# InfoBatch


def _infobatch_with_scores(scores, r=0.5, seed=0):
  ib = infobatch.InfoBatch(len(scores), 8, 10, prune_ratio=r, delta=0.875, seed=seed)
  ib.update(np.arange(len(scores)), scores)
  return ib


def test_infobatch_keeps_the_expected_share_of_below_mean_examples():
  rng = np.random.default_rng(12)
  scores = rng.exponential(size=200)
  below = scores < scores.mean()
  ib = _infobatch_with_scores(scores, r=0.3)
  shares = []
  for e in range(300):
    order, w, n_below = _infobatch_with_scores(scores, 0.3, seed=e).epoch_plan(0)
    assert n_below == below.sum()
    kept = np.zeros(200, bool)
    kept[order] = True
    assert kept[~below].all()                       # above-mean examples are never dropped
    shares.append(kept[below].mean())
    np.testing.assert_allclose(w[below[order]], 1 / 0.7, rtol=1e-6)
    np.testing.assert_allclose(w[~below[order]], 1.0)
  m, se = np.mean(shares), np.std(shares) / np.sqrt(len(shares))
  assert abs(m - 0.7) < 4 * se + 1e-3, (m, se)
  # annealing: the last (1 - delta) of epochs use every example with weight 1
  order, w, _ = ib.epoch_plan(ib.prune_epochs)
  assert sorted(order.tolist()) == list(range(200)) and (w == 1).all()


def test_infobatch_rescaled_gradient_is_unbiased():
  # least squares on 40 examples: g_i = (x_i . theta - y_i) x_i
  rng = np.random.default_rng(13)
  x, y, theta = rng.normal(size=(40, 3)), rng.normal(size=40), rng.normal(size=3)
  g = (x @ theta - y)[:, None] * x
  losses = 0.5 * (x @ theta - y) ** 2
  full = g.sum(0)
  draws = []
  for s in range(4000):
    order, w, _ = _infobatch_with_scores(losses, 0.5, seed=s).epoch_plan(0)
    draws.append((w[:, None] * g[order]).sum(0))
  draws = np.array(draws)
  se = draws.std(0) / np.sqrt(len(draws))
  assert (np.abs(draws.mean(0) - full) < 4 * se).all(), (draws.mean(0), full, se)
  # without the rescaling the same draws are biased (the check has power)
  biased = []
  for s in range(500):
    order, _, _ = _infobatch_with_scores(losses, 0.5, seed=s).epoch_plan(0)
    biased.append(g[order].sum(0))
  assert (np.abs(np.mean(biased, 0) - full) > 4 * se).any()


def test_infobatch_batches_cover_each_epoch_and_end():
  ib = infobatch.InfoBatch(30, 8, 4, prune_ratio=0.5, delta=0.5, seed=1)
  step, epochs = 0, []
  while True:
    pos, w = ib.batch(step)
    if pos is None:
      break
    assert pos.shape == (8,) and w.shape == (8,)
    ib.update(pos, np.linspace(0, 1, 8))
    step += 1
  s = ib.summary()
  assert s["epochs"] == 4 and s["steps"] == step and s["full_steps"] == 4 * 4
  assert [h["pruned"] > 0 for h in s["per_epoch"]] == [False, True, False, False]
  assert s["steps_saved"] == 16 - step > 0
  with pytest.raises(ValueError, match="not resumable"):
    infobatch.InfoBatch(30, 8, 4).batch(5)
  with pytest.raises(ValueError, match="prune_ratio"):
    infobatch.InfoBatch(30, 8, 4, prune_ratio=1.0)


# ----------------------------------------------------------------------------
# Through the score registry, pruning.select and the trainer (tiny MLP on toy data)


NEW_METHODS = ("kcenter", "herding", "facility_location", "least_confidence", "entropy",
               "margin", "aum", "dyn_unc", "tdds", "proxy")


@pytest.mark.slow
def test_registry_scores_and_selection_by_name(toy_splits, toy_train_config):
  import ml_collections
  from pruning import scores, select
  data = toy_splits(n=64, n_test=32)
  cfg = ml_collections.ConfigDict(dict(
      train=toy_train_config(log_every_steps=1), seed=1, kcenter=dict(epoch=1, knn=5),
      herding=dict(epoch=1),
      facility_location=dict(epoch=1, knn=5), entropy=dict(epoch=1),
      least_confidence=dict(epoch=1), margin=dict(epoch=1), dyn_unc=dict(window=2),
      tdds=dict(window=2), proxy=dict(method="entropy", model=dict(hidden=(4,)))))
  labels = data.train.labels
  for m in NEW_METHODS:
    assert m in scores.SCORERS
    res = scores.compute_scores(m, data, cfg)
    assert res.scores.shape == (64,) and np.isfinite(res.scores).all(), m
    assert res.meta["wall_time_s"] >= 0, m
    ids = select.select_ids(res.scores, res.ids, labels, fraction=0.5, mode="hard",
                            class_balanced=True)
    assert len(ids) == sum(select.num_keep(0.5, int((labels == c).sum())) for c in range(3))
  # coreset scores are the per-class greedy order: 'hard' top-k == the greedy prefix
  res = scores.compute_scores("kcenter", data, cfg)
  for c in range(3):
    s = np.sort(res.scores[labels == c])[::-1]
    np.testing.assert_array_equal(s, np.arange((labels == c).sum(), 0, -1))


def test_select_ids_coreset_modes():
  from pruning import select
  e = _blobs(n=60, d=3, seed=14)
  ids = np.arange(500, 560)
  labels = np.repeat([0, 1, 2], 20)
  for mode in coreset.MODES:
    got = select.select_ids(None, ids, labels, fraction=0.25, mode=mode, class_balanced=True,
                            embeddings=e)
    want = coreset.select(e, ids, labels, fraction=0.25, mode=mode, class_balanced=True)
    assert got.tolist() == want.tolist() and len(got) == 15
  with pytest.raises(ValueError, match="embeddings"):
    select.select_ids(np.zeros(60), ids, labels, fraction=0.5, mode="herding")
  with pytest.raises(ValueError, match="unknown selection mode 'herd'"):
    select.select_ids(np.zeros(60), ids, labels, fraction=0.5, mode="herd")


def test_aum_scorer_equals_the_trainers_margins(toy_splits, toy_train_config):
  import ml_collections
  from core import train as train_lib
  from pruning import scores, scoring_runs
  data = toy_splits(n=64, n_test=32)
  cfg = ml_collections.ConfigDict(dict(train=toy_train_config(log_every_steps=1), seed=2))
  res = scores.compute_scores("aum", data, cfg)
  tc = scoring_runs.run_config(cfg, 0)
  total, count = np.zeros(64), np.zeros(64)

  def on_step(step, ids, per_example):
    np.add.at(total, ids - 100, per_example["margin"])
    np.add.at(count, ids - 100, 1)

  train_lib.train_and_evaluate(tc, None, data=data, step_callback=on_step)
  np.testing.assert_allclose(res.scores, -total / count, rtol=1e-5, atol=1e-6)


def test_infobatch_in_the_trainer_saves_steps_and_matches_across_devices(n_devices, toy_splits,
                                                                          toy_train_config):
  data = toy_splits(n=96, n_test=32)
  out = {}
  for nd in sorted({1, min(8, n_devices)}):
    tc = toy_train_config(log_every_steps=1, num_devices=nd)
    res, summ = infobatch.train_with_infobatch(tc, data, num_epochs=6, prune_ratio=0.5, delta=0.5,
                                               seed=3)
    out[nd] = (res, summ)
    assert res.metrics["steps"] == summ["steps"] < summ["full_steps"] == 6 * 6
    assert 0.0 <= res.metrics["test_accuracy"] <= 1.0
    assert [h["pruned"] > 0 for h in summ["per_epoch"]] == [False, True, True, False, False,
                                                             False]
  if len(out) == 2:
    (r1, s1), (r8, s8) = out[1], out[max(out)]
    assert s1["per_epoch"] == s8["per_epoch"]
    for a, b in zip(jax_leaves(r1.state.params), jax_leaves(r8.state.params)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def jax_leaves(tree):
  import jax
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.slow
def test_infobatch_two_processes_match_one_process(tmp_path):
  import os
  from test_multihost import free_port, launch, wait
  worker = os.path.join(os.path.dirname(__file__), "multihost_infobatch_worker.py")
  port = free_port()
  multi = [launch(i, 2, port, 2, tmp_path / "multi.npz", worker=worker) for i in range(2)]
  single = launch(0, 1, 0, 4, tmp_path / "single.npz", worker=worker)
  wait(multi + [single])
  m, s = np.load(tmp_path / "multi.npz"), np.load(tmp_path / "single.npz")
  assert int(m["process_count"]) == 2 and int(s["process_count"]) == 1
  assert int(m["device_count"]) == int(s["device_count"]) == 4
  np.testing.assert_array_equal(m["kept"], s["kept"])
  assert int(m["steps"]) == int(s["steps"]) < 5 * 10
  for i in range(int(m["n_leaves"])):
    np.testing.assert_allclose(m[f"p{i}"], s[f"p{i}"], rtol=1e-4, atol=1e-5)
  assert abs(float(m["test_accuracy"]) - float(s["test_accuracy"])) < 0.01
