"""KIP and Label Solve on MNIST-1D with the infinite-width 1-D ConvNet NTK.

    python scripts/distill_run.py --config=distill/configs/mnist1d_kip_conv.py --workdir=/tmp/kip_m1d
    python scripts/distill_run.py --config=distill/configs/mnist1d_kip_conv.py:quick --workdir=/tmp/kip_m1dq

Kernel: [Conv 3 -> ReLU -> AvgPool 2] x 3 -> Flatten -> Dense (the KIP/DC
ConvNet in 1-D; 40 -> 20 -> 10 -> 5), W_std=sqrt(2), b_std=0.1, NTK
parameterisation; reg 1e-6; Adam lr 0.01; 20 targets per class per step.
The conv NTK costs far more than the FC one: the full config is a GPU job;
`:quick` (2 images/class, seed 0, 30 steps, 1,000 training examples) is a CPU
smoke run of a few minutes on 2 cores (conv NTK: ~1 KIP step/s at 20 support
images; see scripts/bench_distill.py).

Not yet run at full size (CPU too slow; needs a GPU-enabled jax). `:quick` measured
(seed 0, 2/class, 30 KIP steps, 300 test): KRR random 0.203, Label Solve 0.290,
KIP 0.233 -- 30 steps is a smoke test, not enough for KIP to pay off.
"""
import math

import ml_collections
from core.config import check_arg, fixed_steps
from core.configs import mnist1d_cnn


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  c = ml_collections.ConfigDict()
  c.dataset = dict(name="mnist1d", normalization="standardize", num_train=4000, num_test=1000)
  c.kernel = dict(architecture="conv", depth=3, kernel_type="ntk", W_std=math.sqrt(2.0),
                  b_std=0.1, parameterization="ntk")
  c.kip = dict(steps=500, lr=0.01, reg=1e-6, learn_labels=False, target_per_class=20,
               log_every=25, eval_every=250, checkpoint_every=100, kernel_batch_size=200)
  c.label_solve = dict(target_per_class=100)
  c.images_per_class = (1, 10, 50)
  c.seeds = (0, 1, 2)
  c.methods = ("random", "label_solve", "kip")
  c.finite = dict(enabled=True, center_at_init=True)
  c.finite_train = fixed_steps(mnist1d_cnn.get_config(), 500)
  c.finite_train.batch_size = 100
  c.finite_train.optimizer.lr = 1e-3
  c.figure = dict(images_per_class=10, seed=0)
  if arg == "quick":
    c.dataset.num_train = 1000
    c.dataset.num_test = 300
    c.images_per_class = (2,)
    c.seeds = (0,)
    c.kip.steps = 30
    c.kip.eval_every = 0
    c.kip.log_every = 10
    c.kip.target_per_class = 5
    c.label_solve.target_per_class = 20
    c.figure.images_per_class = 2
    c.finite.enabled = False
  return c
