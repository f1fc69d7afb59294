"""The main job end to end on a tiny grid: report files, rows, cache, bad configs."""
import csv
import json
import os

import numpy as np
import pytest

from experiments import compare
from experiments.configs import compare as compare_config
from core import data as data_lib
from pruning import select as select_lib


def tiny_config():
  c = compare_config.get_config("quick")
  c.pruning_methods = ("random", "el2n")
  c.modes = ("hard", "easy")
  c.per_class_budgets = (5,)
  c.fractions = (0.5,)
  c.train.num_steps = 60
  c.distill.kip.steps = 10
  c.progress_bar = False
  # the controls section with one network-based distiller (DSA's plumbing is DM's + DC's)
  c.distill_controls.config.methods = ("random", "label_solve", "kip_fc", "dm")
  return c


@pytest.mark.slow
def test_quick_report_rows_and_cache(tmp_path, monkeypatch):
  workdir = str(tmp_path / "cmp")
  rows = compare.run_comparison(tiny_config(), workdir)
  for name in ("report.md", "report.html", "results.csv", "results.json", "config.json",
               "error_vs_budget.png", "frontier.png", "theory_vs_measured.png"):
    path = os.path.join(workdir, name)
    assert os.path.getsize(path) > 1000 if name.endswith(".png") else os.path.getsize(path) > 0
  with open(os.path.join(workdir, "results.csv")) as fh:
    csv_rows = list(csv.DictReader(fh))
  got = {(r["method"], r["mode"], int(r["budget"])) for r in csv_rows}
  # Fraction budgets are class-balanced: rounded within each class.
  half = sum(select_lib.num_keep(0.5, int(n_c))
             for n_c in np.bincount(data_lib.load_dataset("digits").train.labels))
  expected = {("random", "-", 50), ("el2n", "hard", 50), ("el2n", "easy", 50),
              ("kip", "-", 50), ("label_solve", "-", 50),
              ("random", "-", half), ("el2n", "hard", half), ("el2n", "easy", half)}
  assert got == expected
  assert all(int(r["budget"]) == int(r["num_examples"]) for r in csv_rows)
  for r in csv_rows:
    for key in ("network_accuracy", "krr_accuracy"):
      acc = float(r[key])
      assert np.isfinite(acc) and 0.0 <= acc <= 1.0, (r, key)
  # Even a few KIP / training steps beat chance (10%) on digits by far.
  assert min(float(r["krr_accuracy"]) for r in csv_rows) > 0.3
  html = open(os.path.join(workdir, "report.html")).read()
  assert html.count("data:image/png;base64,") == 5  # 3 plots + the controls section's 2
  # The controls section: every set under every label x augmentation setting, the best
  # pruning rule at 5 per class among them, and the KIP of the comparison itself.
  ctl = json.load(open(os.path.join(workdir, "distill_controls", "summary.json")))
  methods = {s["method"] for s in ctl}
  assert methods == {"random", "pruned", "label_solve", "kip_fc", "dm"}
  assert len(ctl) == 5 * 6
  best = max((r for r in rows if r["family"] == "pruning" and r["per_class"] == 5
              and r["method"] != "random"), key=lambda r: r["network_accuracy"])
  assert {s["display"] for s in ctl if s["method"] == "pruned"} == {
      f"best pruning: {best['method']} ({best['mode']})"}
  assert "## Distilled sets vs random real images and the best pruning rule" in \
      open(os.path.join(workdir, "report.md")).read()
  kip = next(s for s in ctl if s["method"] == "kip_fc")  # 10 steps x (n_s^2 + n_t n_s)
  assert kip["cost_kernel_entries"] == 10 * (50 * 50 + 500 * 50)
  # A rerun with the same workdir trains and distils nothing again.
  def fail(*args, **kwargs):
    raise AssertionError("a finished cell was evaluated again")
  monkeypatch.setattr(compare.Evaluator, "pruned", fail)
  monkeypatch.setattr(compare.Evaluator, "distilled", fail)
  from distill import controls
  monkeypatch.setattr(controls, "evaluate_controls", fail)
  monkeypatch.setattr(controls, "make_support", fail)
  again = compare.run_comparison(tiny_config(), workdir)
  assert [(r["network_accuracy"], r["krr_accuracy"]) for r in again] == \
      [(r["network_accuracy"], r["krr_accuracy"]) for r in rows]
  # ... but a changed evaluation config does not reuse those cells.
  changed = tiny_config()
  changed.train.num_steps = 61
  with pytest.raises(AssertionError, match="evaluated again"):
    compare.run_comparison(changed, workdir)


@pytest.mark.parametrize("field, value, match", [
    ("pruning_methods", ("random", "loss_norm"), "unknown pruning method 'loss_norm'"),
    ("distill_methods", ("kipp",), "unknown distillation method 'kipp'"),
    ("per_class_budgets", (5, 500), "per-class budget 500 is larger"),
    ("fractions", (1.5,), "f=1.5"),
    ("modes", ("hardest",), "unknown selection mode 'hardest'"),
])
def test_bad_configs_stop_before_training(tmp_path, monkeypatch, field, value, match):
  c = tiny_config()
  setattr(c, field, value)
  monkeypatch.setattr(compare, "Evaluator", lambda *a, **k: pytest.fail("trained"))
  with pytest.raises(ValueError, match=match):
    compare.run_comparison(c, str(tmp_path))


def test_empty_method_list(tmp_path):
  c = tiny_config()
  c.pruning_methods = ()
  c.distill_methods = ()
  with pytest.raises(ValueError, match="empty method list"):
    compare.run_comparison(c, str(tmp_path))


def test_keep_ids_per_class_budget_is_exact():
  train = data_lib.load_dataset("digits").train
  from pruning import scores as scores_lib
  score = scores_lib.compute_scores("input_norm", data_lib.load_dataset("digits"))
  cfg = tiny_config()
  for mode in ("hard", "easy"):
    cell = compare.Cell("input_norm", mode, 70, 7, 70 / len(train), 0)
    ids = compare.keep_ids(cell, score, train, cfg)
    np.testing.assert_array_equal(np.bincount(train.subset(ids).labels), np.full(10, 7))
  hard = compare.keep_ids(compare.Cell("input_norm", "hard", 70, 7, 0.05, 0), score, train, cfg)
  easy = compare.keep_ids(compare.Cell("input_norm", "easy", 70, 7, 0.05, 0), score, train, cfg)
  s = dict(zip(score.ids, score.scores))
  assert np.mean([s[i] for i in hard]) > np.mean([s[i] for i in easy])


@pytest.mark.parametrize("module", ["compare", "compare_mnist1d", "compare_cifar10"])
def test_every_comparison_config_resolves(module):
  import importlib
  mod = importlib.import_module(f"experiments.configs.{module}")
  c = mod.get_config()
  assert c.train.num_steps > 0 and "trainer_config" not in c.distill.finite
  assert set(c.pruning_methods) <= set(compare.PRUNING_METHODS)
  with pytest.raises(ValueError, match="unknown config arg 'fast'"):
    mod.get_config("fast")


def test_one_evaluation_network_for_pruned_and_distilled_cells(tmp_path, monkeypatch):
  """`--config.train.num_steps=N` reaches both the pruned and the distilled cells: the support
  sets train the same network config (config.train) as the kept subsets."""
  from core import train as train_lib
  seen = []

  class Stop(Exception):
    pass

  def record(tc, workdir=None, **kw):
    seen.append((int(tc.num_steps), tc.model.to_dict(), tc.loss))
    raise Stop()

  c = tiny_config()
  c.train.num_steps = 7
  data = data_lib.load_dataset("digits")
  ev = compare.Evaluator(c, data)
  monkeypatch.setattr(train_lib, "train_and_evaluate", record)
  with pytest.raises(Stop):
    ev.pruned(data.train.ids[:50], seed=0)
  with pytest.raises(Stop):
    ev.distilled("random", 2, seed=0, workdir=str(tmp_path))
  assert [s[0] for s in seen] == [7, 7]
  assert seen[0][1] == seen[1][1] == c.train.model.to_dict()
  assert [s[2] for s in seen] == ["cross_entropy", "mse"]  # hard labels vs soft labels


@pytest.mark.parametrize("module, arg, methods", [
    ("compare", None, {"random", "label_solve", "kip_fc", "dsa", "dm"}),
    ("compare", "distill_full", {"random", "label_solve", "kip_fc", "kip_conv", "dd", "dc", "dsa",
                                 "dm"}),
    ("compare_mnist1d", "distill", {"random", "label_solve", "kip_fc", "kip_conv", "dd", "dc",
                                    "dsa", "dm"}),
])
def test_controls_sections_of_the_comparison_configs(module, arg, methods):
  """The controls section's config: its methods, the comparison's own data, no other
  evaluation network than the comparison's (replaced at run time), 2 seeds, and cells that the
  default and the full grid share have the same fingerprints (the full run reuses them)."""
  import importlib
  from distill import controls
  mod = importlib.import_module(f"experiments.configs.{module}")
  c = mod.get_config(arg)
  cc = c.distill_controls.config
  assert c.distill_controls.enabled and set(cc.methods) == methods
  assert dict(cc.dataset) == dict(c.dataset) and tuple(cc.seeds) == (0, 1)
  if module == "compare":
    default = mod.get_config().distill_controls.config
    shared = [(m, ipc) for m in ("random", "dm") for ipc in (1, 10, 50)] + [
        ("dsa", 1), ("dsa", 10)]  # DSA at 50 per class runs only in the full grid
    for m, ipc in shared:
      assert controls.cell_fingerprint(cc, m, ipc) == controls.cell_fingerprint(default, m, ipc)
