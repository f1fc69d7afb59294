"""The MNIST-1D authors' 1-D CNN (3 conv1d x 25 channels, stride 2) on MNIST-1D 4000/1000.

    python scripts/train.py --config=core/configs/mnist1d_cnn.py --workdir=/tmp/mnist1d_cnn

Expected: test accuracy ~0.93-0.95 (the authors report ~94%) after 6,000 steps
of Adam (lr 1e-2, batch 100) - a few minutes on CPU. `:quick` (1,500 steps)
reaches ~0.90.
"""
from core.config import base_config, check_arg


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  c = base_config()
  c.dataset = dict(name="mnist1d", normalization="standardize", num_train=4000, num_test=1000)
  c.model = dict(name="cnn1d", channels=25, kernels=(5, 3, 3), stride=2)
  c.batch_size = 100
  c.num_steps = 6000
  c.optimizer.update(name="adam", lr=1e-2, schedule="cosine")
  c.log_every_steps = 200
  if arg == "quick":
    c.num_steps = 1500
  return c
