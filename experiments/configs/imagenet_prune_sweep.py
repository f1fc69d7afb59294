"""Pruning sweep on ImageNet (ILSVRC-2012, 224x224 record files): EL2N vs random.

NOT RUN HERE (no ImageNet, no accelerator). Scores (EL2N after 10 epochs of the full-data
ResNet-50 run, averaged over `num_runs` networks), class-balanced keep-hard selection at
the keep fractions below, and ResNet-50 trained on each kept subset for the same number
of epochs over the subset (`budget="epochs"`, as Sorscher et al. train pruned ImageNet
subsets; Data Diet keeps the step count fixed instead, `budget="steps"`). The trainer is
core/configs/imagenet_resnet50.py (its docstring says where each setting comes from).

    python scripts/prune_sweep.py --config=experiments/configs/imagenet_prune_sweep.py \
        --workdir=$WORKDIR --config.train.dataset.data_dir=$DATA/imagenet2012_224

Launch one process per host (docs/streaming.md). `:resnet18` swaps in ResNet-18.
"""
import ml_collections

from core.config import check_arg
from core.configs import imagenet_resnet50
from pruning import scores


def get_config(arg=None):
  arg = check_arg(arg, "resnet18")
  c = ml_collections.ConfigDict()
  t = imagenet_resnet50.get_config(arg)
  t.progress_bar = False
  c.train = t
  c.budget = "epochs"
  c.num_epochs = float(t.num_epochs)
  c.methods = ("random", "el2n")
  c.fractions = (1.0, 0.9, 0.8, 0.7)
  c.seeds = (0,)
  c.class_balanced = True
  c.ccs_beta = 0.1
  c.ccs_strata = 50
  c.correlate_with = ()
  s = scores.default_config()
  s.train = None  # = c.train
  s.el2n.update(epoch=10, num_runs=2)
  c.scores = s
  return c
