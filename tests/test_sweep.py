"""The pruning sweep end to end on a tiny MNIST-1D draw: files, sizes, resume, budgets."""
import csv
import json
import os

import ml_collections
import pytest

from pruning import scores
from experiments import prune_sweep as sweep
from core.config import base_config


def _config(**kw):
  t = base_config()
  t.dataset = dict(name="mnist1d", normalization="standardize", num_train=600, num_test=200)
  t.model = dict(name="mlp", hidden=(16,))
  t.batch_size = 40
  t.num_steps = 15
  t.optimizer.update(name="adam", lr=1e-2)
  t.checkpoint = False
  t.progress_bar = False
  t.log_every_steps = 1000
  t.num_devices = 1
  c = ml_collections.ConfigDict()
  c.train = t
  c.budget = "steps"
  c.num_epochs = ml_collections.config_dict.placeholder(float)
  c.methods = ("random", "input_norm", "input_norm:easy")
  c.fractions = (1.0, 0.5)
  c.seeds = (0, 1)
  c.class_balanced = False
  c.ccs_beta = 0.1
  c.ccs_strata = 50
  c.correlate_with = ("prototype",)
  s = scores.default_config()
  s.train = None
  s.el2n.update(epoch=1, num_runs=1)
  c.scores = s
  c.update(kw)
  return c


def test_sweep_files_sizes_and_resume(tmp_path, monkeypatch):
  wd = str(tmp_path / "sweep")
  out = sweep.run_sweep(_config(seeds=(0,)), wd, verbose=False)
  cells = out["cells"]
  assert len(cells) == 1 + 3  # 'full' once per seed + methods x (f < 1) x seeds
  for r in cells:
    assert r["num_kept"] == (600 if r["fraction"] == 1.0 else 300)
    assert r["train_steps"] == 15  # fixed-steps budget
    assert 0.0 <= r["test_accuracy"] <= 1.0
  assert {s["method"] for s in out["summary"]} == {"full", "random", "input_norm", "input_norm:easy"}
  assert "input_norm~prototype" in out["spearman"]
  for f in ("results.json", "results.csv", "prune_sweep.png"):
    assert os.path.getsize(os.path.join(wd, f)) > 0
  with open(os.path.join(wd, "results.csv")) as fh:
    assert len(list(csv.DictReader(fh))) == len(cells)
  with open(os.path.join(wd, "results.json")) as fh:
    assert json.load(fh)["summary"] == out["summary"]
  assert len(os.listdir(os.path.join(wd, "cells"))) == len(cells)
  assert not [p for p in os.listdir(wd) if p.endswith(".tmp")]

  # A rerun trains nothing and recomputes no score.
  from core import train
  def boom(*a, **k):
    raise AssertionError("a finished cell was retrained")
  monkeypatch.setattr(train, "train_and_evaluate", boom)
  again = sweep.run_sweep(_config(seeds=(0,)), wd, verbose=False)
  assert again["cells"] == cells
  # Another config in the same workdir does not reuse stale cells.
  with pytest.raises(AssertionError, match="retrained"):
    sweep.run_sweep(_config(seeds=(0,), budget="epochs", num_epochs=2.0), wd, verbose=False)


def test_epoch_budget_and_method_parsing(tmp_path):
  c = _config(budget="epochs", num_epochs=2.0, methods=("input_norm:ccs",), seeds=(0,),
              fractions=(0.5, 0.25), correlate_with=())
  out = sweep.run_sweep(c, str(tmp_path), verbose=False)
  steps = {r["num_kept"]: r["train_steps"] for r in out["cells"]}
  assert steps == {300: 2 * 8, 150: 2 * 4}  # ceil(n / 40) steps per epoch
  assert sweep.parse_method("grand") == ("grand", "hard")
  assert sweep.parse_method("random") == ("random", "random")
  with pytest.raises(ValueError, match="unknown score"):
    sweep.parse_method("margn:hard")
  name, sc = sweep._score_spec("grand@0", scores.default_config())
  assert name == "grand" and sc.grand.epoch == 0
  with pytest.raises(ValueError, match="el2n and grand"):
    sweep._score_spec("random@3", scores.default_config())
  with pytest.raises(ValueError, match="unknown mode"):
    sweep.parse_method("el2n:middle")
  with pytest.raises(ValueError, match="budget"):
    sweep.train_config_for(_config(budget="flops"), 10, 0)


@pytest.mark.parametrize("name", ["mnist1d_prune_sweep", "digits_prune_sweep"])
def test_configs_load(name):
  import importlib
  mod = importlib.import_module(f"experiments.configs.{name}")
  for arg in (None, "quick"):
    c = mod.get_config(arg)
    for m in c.methods:
      sweep.parse_method(m)
    assert c.budget in sweep.BUDGETS and c.train.num_steps


def test_selectors_driver_reuses_the_sweep_scores_and_writers(tmp_path):
  from experiments import selectors
  c = _config(methods=("random", "input_norm"), seeds=(0,), correlate_with=())
  wd = str(tmp_path)
  out = selectors.run_selectors(c, wd, verbose=False)
  sweep_out = json.load(open(os.path.join(wd, "sweep", "results.json")))
  assert [dict(s, score_cost_s=None) for s in sweep_out["summary"]] == \
      [dict(s, score_cost_s=None) for s in out["summary"]]
  assert set(out["score_costs_s"]) == {"random", "input_norm"}  # the sweep's needed scores
  score_files = os.listdir(os.path.join(wd, "sweep", "scores"))
  assert len(score_files) == 2 and all(f.endswith(".npz") for f in score_files)  # shared
  with open(os.path.join(wd, "selectors.csv")) as fh:
    rows = list(csv.DictReader(fh))
  assert [r["method"] for r in rows] == [s["method"] for s in out["summary"]]
  assert "score_cost_s" in rows[0]
  assert json.load(open(os.path.join(wd, "results.json")))["summary"] == out["summary"]
  assert os.path.getsize(os.path.join(wd, "selectors.png")) > 0
  # a rerun reads the scores from the cache and their cost from the score files themselves
  # (compute_seconds), not from a timing of the cache read, nor from score_costs.json
  os.remove(os.path.join(wd, "score_costs.json"))
  c.methods = ("random", "el2n")  # el2n trains a network: a cost well above a cache read
  first = selectors.run_selectors(c, wd, verbose=False)["score_costs_s"]["el2n"]
  os.remove(os.path.join(wd, "score_costs.json"))
  again = selectors.run_selectors(c, wd, verbose=False)
  assert again["score_costs_s"]["el2n"] == first > 0.0


def test_infobatch_cells_are_cached_and_redone_for_another_config(tmp_path, monkeypatch):
  from experiments import selectors
  c = _config()
  c.infobatch = ml_collections.ConfigDict(dict(num_epochs=2, prune_ratio=0.5, delta=0.875,
                                               seeds=(0,), log_every_steps=1))
  rows = selectors.infobatch_cells(c, str(tmp_path), log=lambda s: None)
  assert sorted(os.listdir(tmp_path / "infobatch")) == ["full__s0.json", "infobatch__s0.json"]
  assert [r["kind"] for r in rows] == ["full", "infobatch"]
  assert json.load(open(tmp_path / "infobatch" / "full__s0.json")) == rows[0]

  def forbidden(*a, **k):
    raise AssertionError("a cached cell must not train")

  from core import train as train_lib
  monkeypatch.setattr(train_lib, "train_and_evaluate", forbidden)
  monkeypatch.setattr(selectors.infobatch_lib, "train_with_infobatch", forbidden)
  assert selectors.infobatch_cells(c, str(tmp_path), log=lambda s: None) == rows
  c.infobatch.prune_ratio = 0.3  # another config: the cells are redone, not reused
  with pytest.raises(AssertionError, match="must not train"):
    selectors.infobatch_cells(c, str(tmp_path), log=lambda s: None)
