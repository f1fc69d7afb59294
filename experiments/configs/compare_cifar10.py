"""Pruning vs distillation on CIFAR-10 (TFDS) with ResNet-18: for GPU machines.

Prepare CIFAR-10 once on a machine with internet (nothing is downloaded here):
    python -c "import tensorflow_datasets as tfds; tfds.builder('cifar10', data_dir='/data/tfds').download_and_prepare()"
Then, on one host with all its GPUs (pmap over local devices; install a CUDA
jaxlib of the pinned version, e.g. pip install "jax[cuda12]==0.5.3"):
    python scripts/compare.py --config=experiments/configs/compare_cifar10.py \
        --workdir=runs/cmp_cifar10 --config.dataset.data_dir=/data/tfds

Scores: EL2N at epoch 20 of the Data Diet schedule, averaged over 10 runs (the
paper's setting); evaluation: ResNet-18, Data Diet settings, a fixed number of
steps (`train.num_steps`, Data Diet's convention of equal steps for every
subset). Kernel: the ConvNet NTK of the KIP paper (depth 3). Expected: the Data
Diet / KIP papers' regimes - EL2N keep-hard matches full data (~95%) down to
~50% kept; KIP (ConvNet NTK) ~49% KRR accuracy at 10 images/class. Not run here
(no CIFAR-10, no GPU JAX in this environment).

The comparison driver runs in one process; for pods, score and train pruned
subsets with the multi-host trainer (scripts/train.py / scripts/prune_sweep.py
launched once per host, see README).
"""
from experiments.configs.compare import comparison_config
from core.configs import cifar10_resnet18
from core.config import check_arg, fixed_steps


def get_config(arg=None):
  arg = check_arg(arg)
  score_train = cifar10_resnet18.get_config()
  score_train.progress_bar = False
  score_train.checkpoint = False
  c = comparison_config(
      dataset=dict(name="cifar10", normalization="per_channel", data_dir=None),
      train=fixed_steps(cifar10_resnet18.get_config(), 78_000),
      score_train=score_train,
      kernel=dict(architecture="conv", depth=3, kernel_type="ntk"))
  c.train.progress_bar = True
  c.per_class_budgets = (1, 10, 50)
  c.fractions = (0.1, 0.3, 0.5, 0.7, 1.0)
  c.scores.el2n = dict(epoch=20, num_runs=10)
  c.scores.grand = dict(epoch=0, num_runs=10, chunk_size=64)
  c.distill.kip.update(steps=1000, lr=0.01, target_per_class=50, kernel_batch_size=50)
  return c
