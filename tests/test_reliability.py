"""The score-reliability driver (experiments.reliability) end to end on the :quick MNIST-1D
config: which scores it measures, what it writes, and that a later call keeps what an earlier
one measured. The measurements themselves are tested in test_ssl.py (pairwise, averaging)."""
import json
import os

import pytest

from experiments import reliability
from experiments.configs import ssl_sweep_mnist1d


@pytest.mark.slow
def test_reliability_writes_every_measured_score_and_keeps_earlier_ones(tmp_path):
  c = ssl_sweep_mnist1d.get_config("quick")
  c.reliability.metrics = ("el2n",)
  wd = str(tmp_path / "rel")
  first = reliability.run_reliability(c, wd, log=lambda s: None)
  assert set(first["metrics"]) == {"el2n"}
  e = first["metrics"]["el2n"]
  assert e["num_runs"] == 2 and e["runs_averaged=1"]["num_pairs"] == 1
  assert e["cost_s_total"] > 0
  # measured again from the cached score file: the cost it took, not the time to read it back
  again = reliability.run_reliability(c, wd, log=lambda s: None)["metrics"]["el2n"]
  assert again["cost_s_total"] == e["cost_s_total"]
  c.reliability.metrics = ("prototype",)
  out = reliability.run_reliability(c, wd, log=lambda s: None)
  assert set(out["metrics"]) == {"el2n", "prototype_pca"}  # the EL2N entry stayed
  with open(os.path.join(wd, "reliability.json")) as fh:
    assert json.load(fh)["metrics"].keys() == out["metrics"].keys()
  pca = out["metrics"]["prototype_pca"]
  for p in (pca["across_kmeans_seeds"], pca["across_k"]):
    assert -1.0 <= p["spearman_min"] <= p["spearman"] <= p["spearman_max"] <= 1.0
    # kept sets of two runs of a real score overlap more than two random halves would (0.5)
    assert p["overlap@0.5"] > 0.5
  md = open(os.path.join(wd, "reliability.md")).read()
  assert md.count("\n| el2n |") == 1 and md.count("\n| prototype (PCA) |") == 2
  assert not [f for f in os.listdir(wd) if ".tmp" in f]
