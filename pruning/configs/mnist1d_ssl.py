"""Self-supervised encoder for MNIST-1D (16,000 train / 4,000 test): SimCLR on a 1-D ConvNet.

    python scripts/ssl_encoder.py --config=pruning/configs/mnist1d_ssl.py --workdir=/tmp/ssl_mnist1d

Trains on the training inputs only (labels never read), then reports the linear-probe and
k-NN test accuracy of the frozen backbone features against PCA and random-feature
embeddings (`pruning.ssl.run_encoder`). `--config.objective=swav` for SwAV.
`:quick` (1,000 train examples, 30 steps) is the test-sized variant.

Measured (16,000 / 4,000, seed 0, on the shared 2-core machine at load average ~18): 1,500
steps in 312 s (seed 1: 567 s at higher load); linear probe 90.9%, k-NN 78.5% (seed 1: 91.8%,
79.6%) vs PCA-32 33.3% / 61.2% and the same ConvNet at random init 82.2% / 58.6%. On JAX 0.10.2
on the quiet machine (load 2-4) the same 1,500 steps on the scaling grid's 14,400-input pool took
16 s (linear probe 90.4%; experiments/configs/scaling_mnist1d.py).
Augmentations and backbones tried (4,000 examples, 600 steps): README, SSL section.
"""
from __future__ import annotations

import ml_collections

from core.config import check_arg


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = dict(name="mnist1d", normalization="standardize", num_train=16000, num_test=4000)
  c.model = dict(name="convnet", width=64, depth=3)      # core.models backbone
  c.head = dict(hidden=128, dim=64)                       # projection head
  c.embed_layer = "backbone"                              # embeddings for prototypes
  c.objective = "simclr"                                  # or "swav"
  c.simclr = dict(temperature=0.2)
  c.swav = dict(num_prototypes=30, temperature=0.1, epsilon=0.05, sinkhorn_iters=3,
                queue_length=0, freeze_prototypes_steps=0)
  # The MNIST-1D generator's own transformations (pruning.ssl_augment).
  c.augment = dict(ops=("circular_shift", "scale", "shear", "corr_noise"), max_shift=8,
                   scale=0.4, shear=0.75, corr_noise=0.25)
  c.batch_size = 256
  c.num_steps = 1500
  c.num_epochs = ml_collections.config_dict.placeholder(float)
  c.optimizer = dict(name="adam", lr=2e-3, schedule="cosine", warmup_steps=50)
  c.num_devices = ml_collections.config_dict.placeholder(int)
  c.log_every_steps = 100
  c.checkpoint = True
  c.checkpoint_every_steps = 500
  c.progress_bar = True
  c.embed_batch_size = 2048
  c.probe = dict(pca_dim=32)
  if arg == "quick":
    c.dataset = dict(name="mnist1d", normalization="standardize", num_train=1000, num_test=500)
    c.model = dict(name="convnet", width=16, depth=2)
    c.head = dict(hidden=32, dim=16)
    c.batch_size = 64
    c.num_steps = 30
    c.checkpoint_every_steps = 0
  return c
