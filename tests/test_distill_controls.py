"""The controls driver (experiments.distill_controls) and the main job's controls section:
sets made elsewhere (the best pruning rule) are evaluated exactly like distilled ones, cached
by cell, rows of another config are kept but not summarised, and the best rule is the one
with the highest mean accuracy."""
from __future__ import annotations

import json
import os

import ml_collections
import numpy as np
import pytest

from core import data as data_lib
from distill import controls
from distill.support import SupportSet
from experiments import compare
from experiments import distill_controls as driver


def tiny_controls_config():
  from distill.configs import digits_matching
  c = digits_matching.get_config("quick")
  c.methods = ("random", "label_solve")
  c.images_per_class = (2,)
  c.seeds = (0,)
  c.finite_train.num_steps = 20
  c.finite_train_teacher.num_steps = 20
  c.evaluation.label_modes = ("hard", "own", "teacher")
  c.evaluation.augment_modes = (False, True)
  return c


def given(data, ids, name="best pruning: toy"):
  sub = data.train.subset(ids)
  s = SupportSet(x=np.asarray(sub.x), y=controls.hard_targets(sub.labels, data.num_classes),
                 labels=np.asarray(sub.labels), init_ids=np.asarray(ids))
  return driver.GivenSet(method="pruned", display=name, images_per_class=2, seed=0, support=s,
                         cost={"cost_seconds": 1.5, "cost_example_passes": 0.0,
                               "cost_kernel_entries": 0.0})


@pytest.fixture(scope="module")
def digits():
  return data_lib.load_dataset("digits", normalization="standardize")


@pytest.mark.slow
def test_given_sets_are_evaluated_cached_and_kept(tmp_path, digits, monkeypatch):
  c = tiny_controls_config()
  workdir = str(tmp_path / "ctl")
  ids_a = data_lib.class_balanced_ids(digits.train, 2, seed=5)
  rows = driver.run_distill_controls(c, workdir, data=digits, progress=False,
                                     given_sets=[given(digits, ids_a)])
  settings = {(r["labels"], r["augment"]) for r in rows if r["method"] == "pruned"}
  assert settings == {(lab, aug) for lab in ("hard", "own", "teacher") for aug in (False, True)}
  pruned = [r for r in rows if r["method"] == "pruned"]
  assert all(r["display"] == "best pruning: toy" and r["cost_seconds"] == 1.5 for r in pruned)
  # the same protocol as the distilled sets: own labels == hard labels for a pruned subset
  by = {(r["labels"], r["augment"]): r["finite_test_accuracy"] for r in pruned}
  assert by[("own", False)] == by[("hard", False)]
  table = open(os.path.join(workdir, "table.md")).read()
  assert "| 2 | best pruning: toy | 1 |" in table and "| 2 | Label Solve | 1 |" in table
  assert table.index("random real") < table.index("best pruning") < table.index("Label Solve")

  # A rerun evaluates nothing again.
  def fail(*a, **k):
    raise AssertionError("a finished cell was evaluated again")
  monkeypatch.setattr(controls, "evaluate_controls", fail)
  again = driver.run_distill_controls(c, workdir, data=digits, progress=False,
                                      given_sets=[given(digits, ids_a)])
  assert sorted(json.dumps(r, sort_keys=True) for r in again) == \
      sorted(json.dumps(r, sort_keys=True) for r in rows)
  # Another given set (other ids) is evaluated; the old one's rows stay in results.json but
  # leave the summary.
  monkeypatch.undo()
  ids_b = data_lib.class_balanced_ids(digits.train, 2, seed=6)
  driver.run_distill_controls(c, workdir, data=digits, progress=False,
                              given_sets=[given(digits, ids_b)])
  saved = json.load(open(os.path.join(workdir, "results.json")))
  fps = {r["config"] for r in saved if r["method"] == "pruned"}
  assert len(fps) == 2
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert sum(1 for s in summary if s["method"] == "pruned") == 6  # one set's 6 settings


def test_given_sets_are_validated(digits):
  c = tiny_controls_config()
  ids = data_lib.class_balanced_ids(digits.train, 3, seed=0)  # 3 per class, not 2
  with pytest.raises(ValueError, match="30 examples, expected 2 per class"):
    driver.validate_config(c, digits, [given(digits, ids)])
  g = given(digits, data_lib.class_balanced_ids(digits.train, 2, seed=0))
  bad = driver.GivenSet("dm", g.display, 2, 0, g.support, g.cost)
  with pytest.raises(ValueError, match="'dm' collides"):
    driver.validate_config(c, digits, [bad])


def test_best_pruning_rule_is_the_best_mean_over_seeds(digits):
  from experiments.configs import compare as compare_config
  from pruning.score_io import ScoreResult
  config = compare_config.get_config("quick")
  n = len(digits.train)
  score = ScoreResult(ids=digits.train.ids, scores=np.arange(n, dtype=np.float64),
                      meta={"method": "el2n"})
  rows = []
  for seed, (hard, easy) in enumerate([(0.5, 0.7), (0.9, 0.6)]):  # means: hard 0.7, easy 0.65
    for mode, acc in (("hard", hard), ("easy", easy)):
      rows.append({"family": "pruning", "per_class": 2, "method": "el2n", "mode": mode,
                   "network_accuracy": acc, "seed": seed})
    rows.append({"family": "pruning", "per_class": 2, "method": "random", "mode": "-",
                 "network_accuracy": 0.99, "seed": seed})  # random is the control, not a rule
  cc = ml_collections.ConfigDict(dict(images_per_class=(2,), seeds=(0, 1)))
  sets = compare.best_pruning_sets(config, rows, digits, {"el2n": score}, cc, {"el2n": 12.0})
  assert [(g.display, g.seed) for g in sets] == [("best pruning: el2n (hard)", 0),
                                                  ("best pruning: el2n (hard)", 1)]
  cell = compare.Cell("el2n", "hard", 20, 2, 20 / n, 0)
  np.testing.assert_array_equal(sets[0].support.init_ids,
                                compare.keep_ids(cell, score, digits.train, config))
  np.testing.assert_array_equal(sets[0].support.x, digits.train.subset(sets[0].support.init_ids).x)
  assert sets[0].cost["cost_seconds"] == 12.0
