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

`:distill` (issue #16 on MNIST-1D): 1 and 10 signals per class, seeds 0 and 1, random / EL2N /
forgetting keep-hard and keep-easy beside KIP and Label Solve, and the controls section with DD,
DC, DSA and DM on the 1-D ConvNet (distill/configs/mnist1d_matching.py), every set evaluated by
the matching configs' evaluation network (the 1-D CNN, 500 Adam steps, batch 100, lr 1e-3):

    python scripts/compare.py --config=experiments/configs/compare_mnist1d.py:distill \
        --workdir=runs/cmp_mnist1d_distill
"""
from experiments.configs.compare import comparison_config, main_job_controls, shrink_for_quick
from core.configs import mnist1d_cnn
from core.config import check_arg, fixed_steps


def get_config(arg=None):
  arg = check_arg(arg, "quick", "distill")
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
  if arg == "distill":
    from distill.configs import mnist1d_matching
    matching = mnist1d_matching.get_config()
    c.train = matching.finite_train  # one evaluation network for the tables and the controls
    c.per_class_budgets = (1, 10)
    c.fractions = ()
    c.seeds = (0, 1)
    c.pruning_methods = ("random", "el2n", "forgetting")
    c.distill.kip.steps = matching.kip_fc.kip.steps
    c.distill_controls = main_job_controls(c, matching, matching.methods, seeds=(0, 1))
  if arg == "quick":
    shrink_for_quick(c)
  return c
