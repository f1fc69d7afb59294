"""KIP and Label Solve on sklearn digits with the infinite-width FC ReLU NTK.

    python scripts/distill_run.py --config=distill/configs/digits_kip_fc.py --workdir=/tmp/kip_digits
    python scripts/distill_run.py --config=distill/configs/digits_kip_fc.py:quick --workdir=/tmp/kip_q \
        [--config.kip.lr=0.02] [--config.kip.learn_labels=True]

Kernel: Flatten -> [Dense -> ReLU] x 1 -> Dense, W_std=sqrt(2), b_std=0.1, NTK
parameterisation (KIP notebook); reg 1e-6 * trace(K_ss)/n_s; Adam lr 0.01 on the
support images, 50 target examples per class per step, 1000 steps.

Expected (KRR test accuracy on the 360 test images, mean of seeds 0, 1, 2;
finite = MLP 256-256 trained by core.train on the support set, 500 steps):
  1 image/class:   random 0.57, Label Solve 0.80, KIP 0.96 (finite 0.47 / 0.67 / 0.89)
  10 images/class: random 0.91, Label Solve 0.97, KIP 0.986 (finite 0.90 / 0.95 / 0.97)
  50 images/class: random 0.981, Label Solve 0.984, KIP 0.990 (finite 0.973 / 0.978 / 0.979)
92 s on 2 quiet CPU cores on JAX 0.10.2 (about 3 minutes idle / ~10 busy on JAX 0.5.3).
`:quick` (10/class, seed 0, 200 KIP steps, no finite nets) takes ~40 s: random 0.925, Label
Solve 0.972, KIP 0.983.
"""
import math

import ml_collections
from core.config import check_arg, fixed_steps
from core.configs import digits_mlp


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  c = ml_collections.ConfigDict()
  c.dataset = dict(name="digits", normalization="standardize")
  c.kernel = dict(architecture="fc", depth=1, kernel_type="ntk", W_std=math.sqrt(2.0),
                  b_std=0.1, parameterization="ntk")
  c.kip = dict(steps=1000, lr=0.01, reg=1e-6, learn_labels=False, target_per_class=50,
               log_every=50, eval_every=250, checkpoint_every=250, kernel_batch_size=256)
  c.label_solve = dict(target_per_class=0)  # 0: the whole training split is the target set
  c.images_per_class = (1, 10, 50)
  c.seeds = (0, 1, 2)
  c.methods = ("random", "label_solve", "kip")
  # Finite network trained on the support set by core.train (MSE on soft labels).
  c.finite = dict(enabled=True, center_at_init=True)
  c.finite_train = fixed_steps(digits_mlp.get_config(), 500)
  c.finite_train.batch_size = 100
  c.finite_train.optimizer.lr = 1e-3
  c.figure = dict(images_per_class=10, seed=0)
  if arg == "quick":
    c.images_per_class = (10,)
    c.seeds = (0,)
    c.kip.steps = 200
    c.kip.eval_every = 100
    c.finite.enabled = False
  return c
