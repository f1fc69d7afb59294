"""The selectors users compare against, on MNIST-1D 16,000 / 4,000 (issue #19).

    python scripts/compare_selectors.py --config=experiments/configs/selectors_mnist1d.py \
        --workdir=runs/selectors_mnist1d

Part 1, static selection (the pruning sweep, `experiments.prune_sweep.run_sweep`, with the
settings of `mnist1d_prune_sweep.py`: the authors' 1-D CNN, 1,000 Adam steps on every subset,
class-balanced selection, 3 seeds): every new selector - k-center greedy, herding, facility
location (on the penultimate features of the CNN after 2 of 8 epochs), least confidence,
entropy, margin (the CNN after 2 epochs), AUM (one full 8-epoch run), Dyn-Unc and TDDS (window
3 over the 8 epochs of one run) and selection via proxy (entropy of an 8-channel CNN instead of
25, 1 epoch) - at f = 0.7, 0.5, 0.3, 0.1 against random, EL2N (epoch 2, 4 runs) and EL2N CCS.
Each score's cost is its measured wall time (computed once, cached under workdir/sweep/scores).

Part 2, dynamic pruning: InfoBatch (r = 0.5, delta = 0.875) against full training at equal
epochs (8 epochs = 1,000 steps of full training), same seeds: accuracy, optimizer steps and
wall time.

`:quick` is a smoke run (2,000 / 500 examples, a few methods, 1 seed, ~2 minutes).
"""
import ml_collections

from core.config import check_arg
from experiments.configs import mnist1d_prune_sweep

NEW_SELECTORS = ("kcenter", "herding", "facility_location", "least_confidence", "entropy",
                 "margin", "aum", "dyn_unc", "tdds", "proxy")


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  c = mnist1d_prune_sweep.get_config()
  c.methods = ("random", "el2n", "el2n:ccs") + NEW_SELECTORS
  c.fractions = (1.0, 0.7, 0.5, 0.3, 0.1)
  c.seeds = (0, 1, 2)
  c.correlate_with = ("entropy",)  # proxy ~ full-model entropy (and every pair of scores)
  s = c.scores
  emb = dict(embedding="supervised", epoch=2, per_class=True, knn=20, normalize=False)
  s.kcenter = dict(emb)
  s.herding = dict(emb)
  s.facility_location = dict(emb)
  for name in ("least_confidence", "entropy", "margin"):
    s[name] = dict(epoch=2, num_runs=1)
  s.aum = dict(num_runs=1, epoch=0)                  # epoch 0 = the whole 8-epoch run
  s.dyn_unc = dict(num_runs=1, window=3, decay=0.9)
  s.tdds = dict(num_runs=1, window=3, decay=0.9)
  s.proxy = dict(method="entropy", model=dict(channels=8), num_steps=0, options=dict(epoch=1))
  c.infobatch = ml_collections.ConfigDict(dict(
      num_epochs=8, prune_ratio=0.5, delta=0.875, seeds=(0, 1, 2),
      log_every_steps=1))  # every step's losses reach the scores before the next plan
  if arg == "quick":
    t = c.train
    t.dataset = dict(name="mnist1d", normalization="standardize", num_train=2000, num_test=500)
    t.num_steps = 160
    t.batch_size = 50
    c.methods = ("random", "kcenter", "facility_location", "entropy", "aum", "tdds", "proxy")
    c.fractions = (1.0, 0.5)
    c.seeds = (0,)
    s.el2n.update(epoch=1, num_runs=1)
    for name in ("kcenter", "facility_location", "entropy"):
      s[name].epoch = 1
    s.tdds.window = 2
    c.infobatch.num_epochs = 4
    c.infobatch.seeds = (0,)
  return c
