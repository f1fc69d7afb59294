"""RHO-LOSS: selectors, label noise, IL storage, trainer selection path."""
import json

import numpy as np
import pytest

from experiments import rholoss as rholoss_exp
from pruning import label_noise, rholoss
from core.data import DataError


def test_select_top_by_reducible_loss_hand_made():
  ids = np.array([10, 3, 7, 42, 5, 8])
  train_loss = np.array([2.0, 0.5, 3.0, 1.0, 2.5, 2.0])
  il_loss = np.array([0.1, 0.4, 2.9, 0.2, 0.5, 0.1])
  # reducible:       1.9  0.1  0.1  0.8  2.0  1.9   -> 5, then tie (8, 10) by id, then 42
  out = rholoss.select("rholoss", ids, train_loss, 4, il_loss)
  np.testing.assert_array_equal(out, [5, 8, 10, 42])
  # the same candidates in another order give the same selection
  perm = np.array([3, 5, 0, 2, 4, 1])
  np.testing.assert_array_equal(
      rholoss.select("rholoss", ids[perm], train_loss[perm], 4, il_loss[perm]), out)
  np.testing.assert_array_equal(rholoss.select("loss", ids, train_loss, 2, il_loss), [7, 5])
  np.testing.assert_array_equal(rholoss.select("il", ids, train_loss, 2, il_loss), [8, 10])
  np.testing.assert_array_equal(rholoss.select("uniform", ids, train_loss, 3), [10, 3, 7])
  # brute force: the selected set is exactly the top-n_b set of reducible losses
  rng = np.random.default_rng(0)
  for _ in range(20):
    n = rng.integers(5, 40)
    cand = rng.choice(1000, size=n, replace=False)
    tl, il = rng.random(n), rng.random(n)
    k = int(rng.integers(1, n + 1))
    got = rholoss.select("rholoss", cand, tl, k, il)
    assert len(got) == k == len(set(got.tolist()))
    thresh = np.sort(tl - il)[::-1][k - 1]
    assert set(got.tolist()) == set(cand[(tl - il) >= thresh].tolist())


def test_select_errors():
  with pytest.raises(ValueError, match="NaN"):
    rholoss.select("loss", np.arange(3), np.array([1.0, np.nan, 2.0]), 2)
  with pytest.raises(ValueError, match="n_b"):
    rholoss.select("loss", np.arange(3), np.ones(3), 4)
  with pytest.raises(ValueError, match="unknown"):
    rholoss.select("foo", np.arange(3), np.ones(3), 1)
  with pytest.raises(ValueError, match="IL"):
    rholoss.BatchSelector("rholoss")


def test_flip_labels_and_holdout():
  y = np.arange(200) % 10
  ids = np.arange(200) + 1000
  y2, noisy = label_noise.flip_labels(y, ids, 0.25, 10, seed=3)
  assert len(noisy) == 50
  changed = ids[y2 != y]
  np.testing.assert_array_equal(changed, noisy)  # every flip goes to a different class
  y3, noisy3 = label_noise.flip_labels(y, ids, 0.25, 10, seed=3)
  np.testing.assert_array_equal(y2, y3)
  pool, hold = label_noise.split_holdout(ids, 0.2, seed=1)
  assert len(hold) == 40 and len(pool) == 160
  assert not set(pool.tolist()) & set(hold.tolist())
  with pytest.raises(DataError):
    label_noise.flip_labels(y, ids, 1.5, 10, seed=0)


def test_il_losses_roundtrip_and_selector_counts(tmp_path):
  il = rholoss.ILLosses(np.array([5, 1, 9]), np.array([0.5, 0.1, 0.9]), {"model": "mlp"})
  path = str(tmp_path / "il.npz")
  il.save(path)
  il2 = rholoss.ILLosses.load(path)
  np.testing.assert_allclose(il2.lookup(np.array([9, 5])), [0.9, 0.5])
  assert il2.metadata["model"] == "mlp"
  with pytest.raises(DataError):
    il2.lookup(np.array([2]))
  sel = rholoss.BatchSelector("rholoss", il2, noisy_ids=[9])
  out = sel(0, np.array([1, 5, 9]), np.array([1.0, 1.0, 1.0]), 2)
  np.testing.assert_array_equal(out, [1, 5])
  st = sel.stats()
  assert st["noisy_selected"] == 0 and st["noisy_candidates"] == 1


def _digits_config(**rho):
  import ml_collections
  from core.config import base_config
  c = base_config()
  c.dataset = dict(name="digits", normalization="standardize")
  c.model = dict(name="mlp", hidden=(64,))
  c.batch_size = 16
  c.selection = ml_collections.ConfigDict(dict(candidate_batch_size=128))
  c.num_steps = 150
  c.optimizer.update(name="adam", lr=3e-3, schedule="constant")
  c.eval_every_steps = 50
  c.log_every_steps = 50
  c.checkpoint = False
  c.progress_bar = False
  c.num_devices = 1
  c.rholoss = ml_collections.ConfigDict(dict(
      methods=("rholoss", "loss"), seeds=(0,), noise_fraction=0.3, noise_seed=0,
      holdout_fraction=0.3, holdout_seed=0, uniform_plain=True,
      il=ml_collections.ConfigDict(dict(model=dict(name="mlp", hidden=(64,)), batch_size=32,
                                        num_steps=300, seed=7))))
  c.rholoss.update(rho)
  return c


def test_trainer_selection_path_same_ids_on_1_and_8_devices(n_devices):
  assert n_devices == 8
  from core import train
  from core.data import load_dataset
  data = load_dataset("digits")
  rng = np.random.default_rng(0)
  il = rholoss.ILLosses(data.train.ids, rng.random(len(data.train)))
  logs = {}
  for nd in (1, 8):
    c = _digits_config()
    c.num_devices = nd
    c.num_steps = 6
    c.batch_size = 16
    with c.unlocked():
      del c["rholoss"]
    sel = rholoss.BatchSelector("rholoss", il)
    res = train.train_and_evaluate(c, None, data=data,
                                   batch_source=rholoss.RhoLossSource(sel, 64))
    assert res.metrics["steps"] == 6
    logs[nd] = sel.log
  assert [s for s, _ in logs[1]] == list(range(6))
  for (s1, ids1), (s8, ids8) in zip(logs[1], logs[8]):
    assert s1 == s8
    np.testing.assert_array_equal(ids1, ids8)
    assert len(ids1) == 16


@pytest.mark.slow
def test_noisy_labels_selected_less_by_rholoss_than_by_loss(tmp_path):
  c = _digits_config()
  res = rholoss_exp.run_experiment(c, str(tmp_path), log=lambda s: None)
  s = res["summary"]
  rho, loss = s["rholoss"], s["loss"]
  base = rho["noisy_candidate_frac"]
  assert abs(base - 0.3) < 0.05  # candidates are uniform over a pool with ~30% flipped labels
  assert rho["noisy_selected_frac"] < loss["noisy_selected_frac"]
  assert rho["noisy_selected_frac"] < base < loss["noisy_selected_frac"]
  r0 = res["methods"]["rholoss"]["seeds"]["0"]["selection"]
  assert r0["selections_per_noisy_example"] < r0["selections_per_clean_example"]
  # the IL model's loss separates the flipped labels
  assert res["il_model"]["mean_il_loss_noisy"] > 2 * res["il_model"]["mean_il_loss_clean"]
  for f in ("results.json", "curves.csv", "rholoss.png", "il_losses.npz"):
    assert (tmp_path / f).stat().st_size > 0
  # IL losses are a score file keyed by id, for the pool (not the holdout)
  data, noisy, pool, holdout = rholoss_exp.noisy_splits(c)
  il = rholoss.ILLosses.load(str(tmp_path / "il_losses.npz"), data.train.subset(pool))
  np.testing.assert_array_equal(il.ids, pool)
  assert not np.isin(holdout, il.ids).any()
  # re-running reuses IL losses and finished runs
  res2 = rholoss_exp.run_experiment(c, str(tmp_path), log=lambda s: None)
  assert res2["methods"]["loss"]["seeds"]["0"]["test_acc"] == res["methods"]["loss"]["seeds"]["0"]["test_acc"]


def test_results_keep_the_runs_of_an_earlier_config(tmp_path, monkeypatch):
  # The bookkeeping only: the IL model and the runs are stand-ins that record the config's lr
  # (the real ones are exercised by test_noisy_labels_selected_less_by_rholoss_than_by_loss).
  trained = []

  def fake_il(config, data, holdout_ids, pool_ids, cache_path=None, log=None):
    return rholoss.ILLosses(np.sort(pool_ids), np.zeros(len(pool_ids))), {}

  def fake_run(config, data, pool_ids, method, seed, il, noisy_ids):
    trained.append(float(config.optimizer.lr))
    return dict(steps=[0, 4], test_acc=[0.1, float(config.optimizer.lr)], examples_seen=[0, 64],
                gradient_examples=[0, 64], wall_time_s=0.0, selection=None)

  monkeypatch.setattr(rholoss_exp, "train_il_model", fake_il)
  monkeypatch.setattr(rholoss_exp, "run_method", fake_run)
  monkeypatch.setattr(rholoss_exp, "plot_results", lambda *a, **k: None)

  def cfg(lr):
    c = _digits_config(methods=("uniform",), seeds=(0,))
    c.optimizer.lr = lr
    return c
  wd, quiet = str(tmp_path), lambda s: None
  a = rholoss_exp.run_experiment(cfg(0.25), wd, log=quiet)
  b = rholoss_exp.run_experiment(cfg(0.5), wd, log=quiet)  # another config, same workdir
  saved = json.load(open(tmp_path / "results.json"))
  assert saved["config_fingerprint"] == b["config_fingerprint"] != a["config_fingerprint"]
  assert saved["methods"]["uniform"]["seeds"]["0"]["test_acc"] == [0.1, 0.5]
  kept = saved["earlier_configs"][a["config_fingerprint"]]  # the first config's runs are kept
  assert kept["config"]["optimizer"]["lr"] == 0.25
  assert kept["methods"]["uniform"]["seeds"]["0"]["test_acc"] == [0.1, 0.25]
  # Back to the first config: its runs are reused (nothing trains), the second one's are kept.
  again = rholoss_exp.run_experiment(cfg(0.25), wd, log=quiet)
  assert trained == [0.25, 0.5]
  assert again["methods"]["uniform"]["seeds"]["0"]["test_acc"] == [0.1, 0.25]
  saved = json.load(open(tmp_path / "results.json"))
  assert set(saved["earlier_configs"]) == {b["config_fingerprint"]}
  assert saved["earlier_configs"][b["config_fingerprint"]]["methods"] == \
      json.loads(json.dumps(b["methods"]))
