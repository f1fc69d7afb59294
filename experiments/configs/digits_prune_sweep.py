"""Pruning sweep on sklearn digits (1,437 train / 360 test) with the small CNN.

    python scripts/prune_sweep.py --config=experiments/configs/digits_prune_sweep.py \
        --workdir=/tmp/prune_sweep_digits

Fixed 600 steps of Adam (batch 64) on every subset, global (not class-balanced)
selection, 3 seeds; EL2N / GraNd after 2 epochs of a full-data run (4 runs).
Measured (2 shared, heavily loaded CPU cores: ~1 min scoring + 78 cells in
~16 min): full data 0.976 +- 0.002; at f=0.5 EL2N keep-hard 0.984, GraNd 0.981,
prototype/PCA 0.979, random 0.966, EL2N keep-easy 0.909; keep-hard stays at or
above full data down to f=0.2 (EL2N 0.975 vs random 0.938) - digits is nearly
noise-free, so the hardest examples are informative - but at f=0.1 (144
examples) random wins clearly (0.913 vs EL2N keep-hard 0.767, keep-easy 0.571).
Spearman(GraNd at init, input norm) = +0.83.
`:quick` is a smoke test.
"""
import ml_collections

from pruning import scores
from core.configs import digits_cnn
from core.config import check_arg


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  c = ml_collections.ConfigDict()
  t = digits_cnn.get_config()
  t.num_epochs = None
  t.num_steps = 600
  t.checkpoint = False
  t.progress_bar = False
  c.train = t
  c.budget = "steps"
  c.num_epochs = ml_collections.config_dict.placeholder(float)
  c.methods = ("random", "el2n", "el2n:easy", "grand", "prototype")
  c.fractions = (1.0, 0.7, 0.5, 0.3, 0.2, 0.1)
  c.seeds = (0, 1, 2)
  c.class_balanced = False
  c.ccs_beta = 0.1
  c.ccs_strata = 50
  c.correlate_with = ("input_norm", "grand@0")  # for Spearman rank correlations only
  s = scores.default_config()
  s.train = None
  s.el2n.update(epoch=2, num_runs=4)
  s.grand.update(epoch=2, num_runs=4, chunk_size=128)
  s.prototype.update(embedding="pca", dim=16, k=10, centroids="kmeans")
  c.scores = s
  if arg == "quick":
    t.num_steps = 40
    c.methods = ("random", "el2n")
    c.fractions = (1.0, 0.5)
    c.seeds = (0,)
    c.correlate_with = ()
    s.el2n.update(epoch=1, num_runs=1)
  return c
