"""The distillation driver, finite-network evaluation via the trainer, the CLI config."""
import json
import os

import ml_collections
import numpy as np
import pytest

from core.data import DatasetSplits, class_balanced_ids, load_dataset
from distill import evaluate, kip
from distill.support import init_support, load_support
from experiments.distill import run_distillation


@pytest.fixture(scope="module")
def data():
  d = load_dataset("digits")
  train = d.train.subset(class_balanced_ids(d.train, 20, seed=0))
  test = d.test.subset(d.test.ids[:120])
  return DatasetSplits(train=train, test=test, num_classes=10, name="digits")


def _config():
  from distill.configs.digits_kip_fc import get_config
  c = get_config("quick")
  c.images_per_class = (2,)
  c.seeds = (0,)
  c.kip.steps = 4
  c.kip.log_every = 2
  c.kip.eval_every = 4
  c.kip.checkpoint_every = 2
  c.kip.target_per_class = 5
  c.finite.enabled = True
  c.finite_train.num_steps = 10
  c.figure.images_per_class = 2
  return c


def test_run_distillation_writes_results_supports_and_figure(data, tmp_path):
  c = _config()
  rows = run_distillation(c, str(tmp_path), data=data, progress=False)
  assert [r["method"] for r in rows] == ["random", "label_solve", "kip"]
  for r in rows:
    assert r["support_size"] == 20 and 0 <= r["krr_test_accuracy"] <= 1
    assert 0 <= r["finite_test_accuracy"] <= 1 and np.isfinite(r["finite_test_loss"])
  saved = json.load(open(tmp_path / "results.json"))
  assert [r["method"] for r in saved] == ["random", "label_solve", "kip"]
  assert open(tmp_path / "results.csv").readline().startswith("dataset,method,images_per_class")
  s = load_support(str(tmp_path / "supports" / "kip_ipc2_seed0.npz"))
  r = load_support(str(tmp_path / "supports" / "random_ipc2_seed0.npz"))
  assert s.x.shape == (20, 8, 8, 1) and s.y.shape == (20, 10)
  np.testing.assert_array_equal(s.init_ids, r.init_ids)
  assert not np.allclose(s.x, r.x)  # KIP moved the images
  assert (tmp_path / "distilled_ipc2_seed0.png").stat().st_size > 1000
  assert os.path.exists(tmp_path / "kip" / "ipc2_seed0" / kip.CKPT_NAME)
  summary = json.load(open(tmp_path / "summary.json"))
  assert {x["method"] for x in summary} == {"random", "label_solve", "kip"}
  # A rerun reuses finished rows (same config fingerprint).
  again = run_distillation(c, str(tmp_path), data=data, progress=False)
  assert again == rows


def test_finite_network_eval_keeps_soft_labels(data):
  c = _config()
  s = init_support(data.train, 2, seed=1)
  soft = s.replace(y=0.5 * s.y + 0.01)  # not one-hot: must train on these as given
  m = evaluate.finite_network_eval(soft, data, c.finite_train, seed=0)
  assert set(m) == {"finite_test_accuracy", "finite_test_loss"}
  assert 0 <= m["finite_test_accuracy"] <= 1
  bad = s.replace(x=np.full_like(s.x, np.nan))
  with pytest.raises(ValueError, match="NaN"):
    evaluate.finite_network_eval(bad, data, c.finite_train)


def test_driver_errors(data):
  c = _config()
  c.methods = ("random", "magic")
  with pytest.raises(ValueError, match="'magic'"):
    run_distillation(c, None, data=data, progress=False)
  c = _config()
  c.images_per_class = (21,)
  with pytest.raises(ValueError, match="images_per_class=21"):
    run_distillation(c, None, data=data, progress=False)
  with pytest.raises(ValueError, match="unknown distillation method"):
    evaluate.distill_support("kmeans", data.train, 1, c)


def test_configs_load():
  from distill.configs import digits_kip_fc, mnist1d_kip_conv
  for mod in (digits_kip_fc, mnist1d_kip_conv):
    for arg in (None, "quick"):
      c = mod.get_config(arg)
      assert isinstance(c, ml_collections.ConfigDict)
      assert set(c.methods) <= set(evaluate.METHODS)  # the kernel methods + random
    with pytest.raises(ValueError, match="unknown config arg"):
      mod.get_config("huge")
