"""experiments.scaling: the pool-size scaling grid end to end on a tiny `:quick`, its cache,
its config checks, and the pure analysis helpers against direct computations."""
from __future__ import annotations

import csv
import glob
import json
import math
import os

import ml_collections
import numpy as np
import pytest

from experiments import scaling
from experiments.configs import scaling_mnist1d
from pruning import select


def tiny_config():
  c = scaling_mnist1d.get_config("quick")
  c.dataset.update(num_train=400, num_test=300)
  c.pools = (200, 400)
  c.fractions = (1.0, 0.5)
  c.metrics = ("random", "el2n")
  c.seeds = (0, 1)
  c.budget.update(epochs=2.0, min_steps=24, num_evals=2)
  c.scores.el2n.num_runs = 1
  c.theory.update(num_alpha=12, thetas_deg=(0.0,))
  c.bootstrap = 50
  return c


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("scaling"))
  c = tiny_config()
  return c, wd, scaling.run_scaling(c, wd, verbose=False)


@pytest.mark.slow
def test_csv_has_one_finite_row_per_cell(tiny_run):
  c, wd, res = tiny_run
  with open(os.path.join(wd, "results.csv")) as fh:
    rows = list(csv.DictReader(fh))
  want = {(p, f, m, k, s) for p in c.pools for f in c.fractions
          for m, k in [("random", "random"), ("el2n", "hard"), ("el2n", "easy")]
          for s in c.seeds}
  got = {(int(r["pool"]), float(r["fraction"]), r["metric"], r["keep"], int(r["seed"]))
         for r in rows}
  assert got == want and len(rows) == len(want)
  for r in rows:
    err = float(r["test_error"])
    assert math.isfinite(err) and 0.0 <= err <= 1.0
    n_pool = int(r["num_pool"])
    assert n_pool == int(r["pool"]) - int(r["num_val"])
    assert int(r["num_val"]) == int(r["pool"]) // 10
    k = int(r["num_kept"])
    # class-balanced keeping rounds per class: within one example per class of f * n
    assert abs(k - float(r["fraction"]) * n_pool) <= 10
    steps = int(r["num_steps"])
    assert steps == scaling.budget_steps(k, c.train.batch_size, c.budget)
    assert int(r["examples_seen"]) == steps * int(r["batch_size"])
    assert steps >= c.budget.min_steps
  for name in ("results.json", "scaling_curves.png", "scaling_frontier.png", "report.md"):
    assert os.path.getsize(os.path.join(wd, name)) > 0
  # f = 1 is one training per (pool, seed), shared by every metric and keep rule
  full = [r for r in rows if float(r["fraction"]) == 1.0]
  by = {}
  for r in full:
    by.setdefault((r["pool"], r["seed"]), set()).add(r["test_error"])
  assert all(len(v) == 1 for v in by.values())
  # each pool's scores come from that pool only: one EL2N file per pool, of its size
  metas = []
  for path in glob.glob(os.path.join(wd, "scores", "el2n-*.npz")):
    with np.load(path, allow_pickle=False) as z:
      metas.append(json.loads(str(z["meta_json"])))
  assert sorted(m["num_examples"] for m in metas) == [180, 360]
  assert "Power law on f = 1" in scaling.scaling_section(res)
  assert "(sc/scaling_curves.png)" in scaling.scaling_section(res, image_prefix="sc/")


@pytest.mark.slow
def test_rerun_is_served_from_the_cache(tiny_run, monkeypatch):
  c, wd, res = tiny_run

  def forbidden(*a, **k):
    raise AssertionError("a cached rerun must not train or score")

  monkeypatch.setattr(scaling, "train_and_evaluate", forbidden)
  monkeypatch.setattr(scaling.scores_lib, "compute_scores", forbidden)
  again = scaling.run_scaling(c, wd, verbose=False)
  assert again["cells_trained"] == 0 and again["cells_cached"] == res["cells_trained"]
  key = lambda r: (r["pool"], r["fraction"], r["metric"], r["keep"], r["seed"])
  a = {key(r): r["test_error"] for r in res["rows"]}
  b = {key(r): r["test_error"] for r in again["rows"]}
  assert a == b


@pytest.mark.parametrize("change, needle", [
    (dict(fractions=(1.0, 1.5)), "f=1.5"),
    (dict(fractions=(0.0, 0.5)), "f=0.0"),
    (dict(metrics=()), "metrics is empty"),
    (dict(metrics=("el2n", "nope")), "nope"),
    (dict(pools=(200, 800)), "P=800"),
])
def test_bad_configs_stop_before_training(change, needle, monkeypatch, tmp_path):
  def forbidden(*a, **k):
    raise AssertionError("must fail before loading data or training")

  monkeypatch.setattr(scaling, "train_and_evaluate", forbidden)
  monkeypatch.setattr(scaling, "load_dataset", forbidden)
  c = tiny_config()
  for k, v in change.items():
    c[k] = v
  with pytest.raises(scaling.ScalingConfigError, match=needle):
    scaling.run_scaling(c, str(tmp_path), verbose=False)


def test_unknown_config_arg():
  with pytest.raises(ValueError, match="nope"):
    scaling_mnist1d.get_config("nope")
  assert scaling_mnist1d.get_config("large").pools[-1] == 1024000


def test_pools_are_nested_with_nested_validation():
  ids = np.arange(1000) + 7
  pools = scaling.make_pools(ids, (100, 300, 1000), 3, 0.1)
  for small, big in zip(pools, pools[1:]):
    assert set(small["ids"]) <= set(big["ids"])
    assert set(small["val_ids"]) <= set(big["val_ids"])
  for p in pools:
    assert not set(p["ids"]) & set(p["val_ids"])
    assert len(p["ids"]) + len(p["val_ids"]) == p["pool"] and len(p["val_ids"]) == p["pool"] // 10
  assert len(pools[-1]["ids"]) == 900
  assert set(pools[-1]["ids"]) | set(pools[-1]["val_ids"]) == set(ids)


def test_budget_rule():
  b = scaling_mnist1d.get_config().budget.to_dict()
  b.update(epochs=12.0, min_steps=400)
  b = type("B", (), b)
  # small set: the min_steps floor, rounded up to whole epochs of ceil(90 / 64) = 2 steps
  assert scaling.budget_steps(90, 64, b) == 400
  # large set: 12 epochs of ceil(14400 / 64) = 225 steps
  assert scaling.budget_steps(14400, 64, b) == 12 * 225
  assert scaling.budget_steps(3000, 64, b) % math.ceil(3000 / 64) == 0


def test_power_law_fit_and_bootstrap_recover_a_known_exponent():
  # synthetic errors (not data): err = 2 k^-0.4 with multiplicative noise over 4 seeds
  rng = np.random.default_rng(0)
  rows = [dict(fraction=1.0, num_kept=k, seed=s, test_error=2 * k ** -0.4 * math.exp(
      0.02 * rng.standard_normal())) for k in (100, 200, 400, 800, 1600) for s in range(4)]
  pw = scaling.power_law_bootstrap(rows, 200)
  ks = np.array([100, 200, 400, 800, 1600.])
  means = [np.mean([r["test_error"] for r in rows if r["num_kept"] == k]) for k in ks]
  b_direct = np.polyfit(np.log(ks), np.log(means), 1)[0]
  assert pw["b"] == pytest.approx(b_direct, abs=1e-12)
  assert pw["b_lo"] < b_direct < pw["b_hi"]
  assert abs(pw["b_lo"] + 0.4) < 0.03 and abs(pw["b_hi"] + 0.4) < 0.03
  # without noise every resample gives the same exponent
  exact = [dict(r, test_error=2 * r["num_kept"] ** -0.4) for r in rows]
  pw0 = scaling.power_law_bootstrap(exact, 20)
  assert pw0["b"] == pytest.approx(-0.4, abs=1e-12) and pw0["b_hi"] - pw0["b_lo"] < 1e-12
  assert pw0["a"] == pytest.approx(2.0, rel=1e-10)


def test_crossover_interpolates_the_sign_change():
  summary = []
  for P, k, dh, de in ((1000, 90, 0.5, 0.4), (2000, 180, 0.3, 0.3 + 0.1), (4000, 360, 0.2, 0.3)):
    for keep, e in (("hard", dh), ("easy", de)):
      summary.append(dict(metric="m", keep=keep, pool=P, fraction=0.1, num_kept=k,
                          err_mean=e, err_sem=0.0, err_std=0.0))
  c = scaling.crossovers(summary, "m", [1.0, 0.1])["0.1"]
  # diff = hard - easy: +0.1 at 1000, -0.1 at 2000 -> halfway in log P
  assert c["status"] == "crossed"
  assert c["pool_x"] == pytest.approx(math.sqrt(1000 * 2000))
  assert c["k_x"] == pytest.approx(math.sqrt(90 * 180))


def test_interp_loglog_is_exact_on_power_laws_and_nan_outside():
  k = np.array([10., 100., 1000.])
  v = scaling.interp_loglog(k, 3 * k ** -0.5, np.array([5., 31.6, 500., 2000.]))
  assert np.isnan(v[0]) and np.isnan(v[3])
  np.testing.assert_allclose(v[1:3], 3 * np.array([31.6, 500.]) ** -0.5, rtol=1e-12)


def _free_port() -> int:
  import socket
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_rows_of_one_process(tmp_path):
  """2 processes x 2 CPU devices (gloo) == 1 process x 4 devices, cell by cell."""
  import subprocess
  import sys
  worker = os.path.join(os.path.dirname(__file__), "multihost_scaling_worker.py")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  port = _free_port()

  def launch(pid, nproc, ndev, wd):
    return subprocess.Popen([sys.executable, worker, str(pid), str(nproc), str(port), str(ndev),
                             str(wd)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)

  procs = [launch(i, 2, 2, tmp_path / "multi") for i in range(2)]
  procs.append(launch(0, 1, 4, tmp_path / "single"))
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=600)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, o in zip(procs, outs):
    assert p.returncode == 0, o[-3000:]
  assert "process 1: done" in outs[1]
  read = lambda wd: {(r["pool"], r["fraction"], r["metric"], r["keep"], r["seed"]): r
                     for r in csv.DictReader(open(wd / "results.csv"))}
  m, s = read(tmp_path / "multi"), read(tmp_path / "single")
  assert m.keys() == s.keys() and len(m) == 2 * (1 * 3 + 3)
  for k in m:
    assert m[k]["num_kept"] == s[k]["num_kept"] and m[k]["num_steps"] == s[k]["num_steps"]
    assert abs(float(m[k]["test_error"]) - float(s[k]["test_error"])) < 0.02, k


def ssl_tiny_config():
  """tiny_config with ssl_prototype only, one seed, the test-sized encoder (mnist1d_ssl :quick,
  15 steps)."""
  from pruning.configs import mnist1d_ssl
  c = tiny_config()
  c.metrics = ("ssl_prototype",)
  c.seeds = (0,)
  enc = mnist1d_ssl.get_config("quick")
  enc.update(checkpoint=False, progress_bar=False, num_steps=15)
  c.scores.ssl_prototype.encoder = enc
  return c


@pytest.mark.slow
def test_ssl_prototype_scores_each_pool_with_its_own_encoder(tmp_path):
  """The mission's metric in the scaling grid: per pool an encoder trained on that pool's
  training inputs only (no labels), k-means prototypes on its embedding, then cells."""
  from core.data import DatasetSplits, load_dataset
  from pruning import ssl
  c = ssl_tiny_config()
  res = scaling.run_scaling(c, str(tmp_path), verbose=False)
  got = {(r["pool"], r["fraction"], r["metric"], r["keep"]) for r in res["rows"]}
  assert {(p, 0.5, "ssl_prototype", k) for p in c.pools for k in ("hard", "easy")} <= got
  assert all(0.0 <= r["test_error"] <= 1.0 for r in res["rows"])
  metas = {}
  for path in glob.glob(os.path.join(str(tmp_path), "scores", "ssl_prototype-*.npz")):
    with np.load(path, allow_pickle=False) as z:
      meta = json.loads(str(z["meta_json"]))
      metas[meta["num_examples"]] = (meta, z["scores"], z["ids"])
  assert sorted(metas) == [180, 360]
  data = load_dataset(**c.dataset.to_dict())
  pool = scaling.make_pools(data.train.ids, c.pools, c.pool_seed, c.val_fraction)[-1]
  train = data.train.subset(pool["ids"])
  meta, scores, ids = metas[360]
  assert not meta["uses_labels"]
  # the encoder of the 400-pool is the one trained on its 360 training inputs (and ids) alone
  enc_cfg = ml_collections.ConfigDict(c.scores.ssl_prototype.encoder.to_dict())
  enc_cfg.progress_bar = False
  assert meta["encoder_fingerprint"] == ssl.encoder_fingerprint(enc_cfg, train.x, train.ids)
  # and the scores are the scorer's on that pool (direct call; the encoder is memoised)
  sc = scaling.score_config_for(c, len(pool["ids"]))
  direct = ssl.ssl_prototype_scores(
      DatasetSplits(train, data.train.subset(pool["val_ids"]), data.num_classes, "pool"), sc,
      sc.ssl_prototype)
  np.testing.assert_array_equal(ids, direct.ids)
  np.testing.assert_allclose(scores, direct.scores)


def test_ssl_prototype_without_an_encoder_config_stops_before_training(tmp_path, monkeypatch):
  monkeypatch.setattr(scaling, "load_dataset", lambda **k: 1 / 0)
  c = ssl_tiny_config()
  c.scores.ssl_prototype.encoder = None
  with pytest.raises(scaling.ScalingConfigError, match="ssl_prototype.encoder"):
    scaling.run_scaling(c, str(tmp_path), verbose=False)
