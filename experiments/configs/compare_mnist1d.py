"""Pruning vs distillation on MNIST-1D (4,000 train / 1,000 test by default).

    python scripts/compare.py --config=experiments/configs/compare_mnist1d.py --workdir=runs/cmp_mnist1d
    python scripts/compare.py --config=experiments/configs/compare_mnist1d.py:quick --workdir=/tmp/cmp1d

Evaluation network: the MNIST-1D authors' 1-D CNN, 1,500 Adam steps per set
(~0.90 on the full set; 6,000 steps reach ~0.93). Kernel: the FC ReLU NTK -
the 1-D ConvNet NTK (`--config.distill.kernel.architecture=conv`) is the
better kernel for signals but runs at ~1 KIP step/s on a CPU; use it on a GPU.
Larger draws: `--config.dataset.num_train=16000 --config.dataset.num_test=4000`.

Expected: much slower than the digits default (1-D CNN cells, 4,000 examples):
about an hour on 2 CPU cores. Not run to the end here; `:quick` is.
"""
from experiments.configs.compare import comparison_config, shrink_for_quick
from core.configs import mnist1d_cnn
from core.config import check_arg, fixed_steps


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  score_train = mnist1d_cnn.get_config()
  score_train.num_steps = None
  score_train.num_epochs = 10
  score_train.progress_bar = False
  score_train.checkpoint = False
  c = comparison_config(
      dataset=dict(name="mnist1d", normalization="standardize", num_train=4000, num_test=1000),
      train=fixed_steps(mnist1d_cnn.get_config(), 1500),
      score_train=score_train,
      kernel=dict(architecture="fc", depth=1, kernel_type="ntk"))
  c.theory.alpha_range = (0.3, 10.0)
  if arg == "quick":
    shrink_for_quick(c)
  return c
