"""Beyond power-law scaling, measured: test error vs examples kept across MNIST-1D pool sizes.

    python scripts/scaling.py --config=experiments/configs/scaling_mnist1d.py --workdir=runs/scaling
    python scripts/scaling.py --config=experiments/configs/scaling_mnist1d.py:quick \
        --workdir=/tmp/scaling_quick                                  # a few minutes
    python scripts/scaling.py --config=experiments/configs/scaling_mnist1d.py:large \
        --workdir=/shared/scaling_large                               # GPU host / pod

One MNIST-1D generation (`dataset.num_train` train + a fixed `dataset.num_test` test set);
nested pools: pool P is the first P ids of one shuffled order (`pool_seed`), and 10% of each
pool (every 10th id of that order, so also nested) is its validation split. Per pool, scores
are computed from models trained on that pool only (cached), then for every keep fraction f,
metric, keep rule (hard / easy) and seed the CNN is trained on the kept set.

Training budget (`budget`): steps = max(min_steps, epochs * n_kept / batch), rounded up to a
whole epoch; the checkpoint with the best validation accuracy (evaluated `num_evals` times
evenly over the run) gives the reported test error. See experiments/scaling.py.

Measured on JAX 0.10.2 (2 CPU cores, load average 2-4, 2026-12-02): the default grid, 370 cells and
5 SSL encoders, about 6 min (docs/scaling.md, docs/scaling_*.png, README); earlier, without the
SSL rows on JAX 0.5.3 at load 13-21, 290 cells in 39 min. `:quick`, 66 cells, 7.3 min (load
13-21); a rerun of either from the cell cache ~30 s. Budget check (one seed, random sets):
doubling the budget lowers the error by 3-4 points at 1.4k-3.6k examples kept and by 0.3 points
at 14.4k, not at all at 360.

`:quick` is the small grid the main job's report and the test use (pools 400-1,600,
f in {1, 0.5, 0.2}, random / EL2N / PCA prototypes, 2 seeds). `:large` pools to 1,024,000
for a GPU host or pod: not run here.

The paper's metric, SSL prototypes (`ssl_prototype`: per pool a SimCLR encoder,
pruning/configs/mnist1d_ssl.py, trained on the pool's training inputs only, labels never read;
k-means k=10 on its embedding; scores cached), is in the default metrics (encoders 16-22 s each
for 1,500 steps, linear probe 79.0% on the 1,000 pool to 90.4% on 16,000). `:quick` leaves it
out (+81 s there, more than the +60 s the main job's report allows); add it with

    python scripts/scaling.py --config=experiments/configs/scaling_mnist1d.py:quick \
        "--config.metrics=('random','el2n','prototype','ssl_prototype')" --workdir=/tmp/sq

(a smaller encoder there: 300 steps, width 32, batch 128).
"""
from __future__ import annotations

import ml_collections

from core.config import check_arg
from core.configs import mnist1d_cnn
from pruning import scores
from pruning.configs import mnist1d_ssl


def get_config(arg=None):
  arg = check_arg(arg, "quick", "large")
  c = ml_collections.ConfigDict()
  c.dataset = ml_collections.ConfigDict(dict(
      name="mnist1d", normalization="standardize", num_train=16000, num_test=8000))
  c.pools = (1000, 2000, 4000, 8000, 16000)
  c.fractions = (1.0, 0.7, 0.5, 0.3, 0.1)
  # Score methods of pruning.scores: 'prototype' = k-means on a PCA embedding ("prototype
  # (PCA)"); 'ssl_prototype' = k-means on the embedding of a SimCLR encoder trained on each
  # pool's training inputs ("prototype (SSL)", the paper's metric; c.scores.ssl_prototype).
  c.metrics = ("random", "el2n", "forgetting", "prototype", "ssl_prototype")
  c.keeps = ("hard", "easy")
  c.seeds = (0, 1)
  c.pool_seed = 0
  c.val_fraction = 0.1
  c.class_balanced = True
  c.budget = ml_collections.ConfigDict(dict(epochs=16.0, min_steps=300, num_evals=6))
  t = mnist1d_cnn.get_config()
  t.dataset = c.dataset  # only read by the trainer when it loads data itself (never here)
  t.batch_size = 128
  t.num_steps = None
  t.eval_batch_size = 2000
  t.log_every_steps = 200
  t.checkpoint = False
  t.progress_bar = False
  c.train = t
  s = scores.default_config()
  s.train = None  # per pool: c.train with that pool's budget
  # EL2N after `el2n_epoch_fraction` of the pool's own training run (Paul et al.: epoch 20
  # of 200, i.e. 10%), mean over 4 runs; forgetting over the whole run.
  s.el2n.update(epoch=1, num_runs=4)
  s.forgetting.update(num_runs=1, record="minibatch")
  s.prototype.update(embedding="pca", dim=20, k=10, centroids="kmeans")
  # SSL prototypes: per pool, the MNIST-1D SimCLR encoder (pruning/configs/mnist1d_ssl.py) is
  # trained on the pool's n_P training inputs (labels never read) for the same number of
  # steps whatever the pool size, then k-means (k=10, label-free) on its backbone embedding;
  # the distance to the nearest centroid is the score (cached with the other scores).
  encoder = mnist1d_ssl.get_config()
  encoder.update(checkpoint=False, progress_bar=False, log_every_steps=500)
  s.ssl_prototype = ml_collections.ConfigDict(dict(
      encoder=encoder, k=10, centroids="kmeans", n_init=3, baselines=()))
  c.scores = s
  c.el2n_epoch_fraction = 0.15
  # Replica theory on the same axes, and the stretch fit (alpha = n_kept / N_eff, theta).
  c.theory = ml_collections.ConfigDict(dict(
      alpha_min=0.05, alpha_max=200.0, num_alpha=30, thetas_deg=(0.0, 20.0)))
  c.bootstrap = 1000
  if arg == "quick":
    c.dataset.update(num_train=1600, num_test=2000)
    c.pools = (400, 800, 1600)
    c.fractions = (1.0, 0.5, 0.2)
    c.metrics = ("random", "el2n", "prototype")
    c.seeds = (0, 1)
    c.budget.update(epochs=12.0, min_steps=150, num_evals=4)
    s.el2n.update(num_runs=2)
    # for "--config.metrics=('random','el2n','prototype','ssl_prototype')": a smaller encoder
    s.ssl_prototype.encoder.update(model=dict(name="convnet", width=32, depth=3),
                                   batch_size=128, num_steps=300)
    c.theory.update(num_alpha=24, thetas_deg=(0.0, 20.0))
    c.bootstrap = 300
  elif arg == "large":
    c.dataset.update(num_train=1024000, num_test=20000)
    c.pools = tuple(1000 * 4 ** i for i in range(6))[:5] + (1024000,)
    c.fractions = (1.0, 0.8, 0.6, 0.4, 0.2, 0.1, 0.05)
    c.seeds = (0, 1, 2, 3, 4)
    c.metrics = ("random", "el2n", "forgetting", "prototype", "grand")
    c.train.batch_size = 256
    c.train.eval_batch_size = 8192
    c.budget.update(epochs=20.0, min_steps=600, num_evals=10)
    s.el2n.update(num_runs=8)
    c.theory.update(num_alpha=48, thetas_deg=(0.0, 10.0, 20.0, 30.0))
  return c
