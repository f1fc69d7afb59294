"""MLP (100-100) on MNIST-1D 4000/1000, as in the MNIST-1D paper.

    python scripts/train.py --config=core/configs/mnist1d_mlp.py --workdir=/tmp/mnist1d_mlp

Expected: test accuracy ~0.65-0.70 (the authors report ~68%) after 6,000 steps
of Adam (lr 1e-2, batch 100); the MLP overfits. `:quick` (1,500 steps) similar.
"""
from core.config import base_config, check_arg


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  c = base_config()
  c.dataset = dict(name="mnist1d", normalization="standardize", num_train=4000, num_test=1000)
  c.model = dict(name="mlp", hidden=(100, 100))
  c.batch_size = 100
  c.num_steps = 6000
  c.optimizer.update(name="adam", lr=1e-2, schedule="cosine")
  c.log_every_steps = 200
  if arg == "quick":
    c.num_steps = 1500
  return c
