"""SSL prototypes vs EL2N / GraNd / forgetting / PCA prototypes / random on MNIST-1D 16,000.

    python scripts/ssl_sweep.py --config=experiments/configs/ssl_sweep_mnist1d.py \
        --workdir=runs/ssl_sweep_mnist1d

`experiments.ssl_sweep.run_ssl_sweep`: the MNIST-1D pruning sweep of
experiments/configs/mnist1d_prune_sweep.py (1-D CNN, 1,000 Adam steps per subset,
class-balanced keep-hard) at f = 0.7, 0.5, 0.3, with the ssl_prototype score for k in
{10, 30, 100, 300} (global k-means, label-free) and the class-conditional variant
(k / 10 centroids per class), one SimCLR encoder (pruning/configs/mnist1d_ssl.py).

Measured (2 seeds, JAX 0.10.2, 139 s on 2 quiet cores; docs/ssl_sweep_mnist1d.png, table in
docs/ssl_prototypes.md): full data 95.3; at f=0.5 GraNd 95.7, EL2N 95.0, class-conditional SSL
k=300 94.8 / k=100 94.7, forgetting 94.6, SSL prototypes k=300 94.5 (k=10..300: 93.3-94.5),
random 93.9, PCA prototypes 91.7; at f=0.3 GraNd and class-conditional SSL k=100 92.4, random
92.1, SSL k=30 91.8, EL2N 90.7, PCA 87.4. Encoder: linear probe 91.0% (23 s). On JAX 0.5.3 at
load ~18 the SSL half took 56 min (encoder 312 s) and SSL k=30 gave 94.8 at f=0.5.
`:quick` is a smoke test (1,000 / 500 examples, tiny encoder, 2 k values, 1 seed).
"""
from __future__ import annotations

import ml_collections

from core.config import check_arg
from experiments.configs import mnist1d_prune_sweep
from pruning.configs import mnist1d_ssl


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  c = ml_collections.ConfigDict()
  s = mnist1d_prune_sweep.get_config("quick" if arg == "quick" else None)
  s.fractions = (1.0, 0.7, 0.5, 0.3)
  s.seeds = (0, 1)
  s.correlate_with = ()
  c.sweep = s
  c.baselines = ("random", "el2n", "grand", "forgetting", "prototype")
  enc = mnist1d_ssl.get_config("quick" if arg == "quick" else None)
  enc.progress_bar = False
  c.ssl = ml_collections.ConfigDict(dict(encoder=enc, ks=(10, 30, 100, 300),
                                         centroids=("kmeans", "kmeans_per_class"), n_init=3))
  # Score reliability (experiments.reliability.run_reliability): EL2N / GraNd per-run scores come
  # from the sweep's score files (score_cache); forgetting over 2 runs; PCA prototypes over
  # k-means seeds and k; SSL prototypes over encoder seeds 0, 1 (seed 0 = the sweep's encoder,
  # shared through ssl_encoder_dir) and k.
  c.reliability = ml_collections.ConfigDict(dict(
      metrics=("el2n", "grand", "forgetting", "prototype", "ssl_prototype"),
      fractions=(0.5, 0.2), forgetting_runs=2, pca_seeds=(0, 1, 2), pca_ks=(10, 30, 100, 300),
      ssl_seeds=(0, 1), ssl_ks=(10, 30, 100, 300),
      score_cache=ml_collections.config_dict.placeholder(str),
      ssl_encoder_dir=ml_collections.config_dict.placeholder(str)))
  if arg == "quick":
    c.reliability.update(metrics=("el2n", "prototype", "ssl_prototype"), pca_seeds=(0, 1),
                         pca_ks=(5, 10), ssl_ks=(5, 10))
    s.scores.el2n.num_runs = 2
    s.fractions = (1.0, 0.5)
    s.seeds = (0,)
    s.train.batch_size = 48  # divisible by 1, 2, 4 and 8 devices (the tests' 8 CPU devices)
    c.baselines = ("random", "prototype")
    c.ssl.ks = (10, 20)
  return c
