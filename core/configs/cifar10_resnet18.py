"""CIFAR-10 ResNet-18 with the Data Diet (Paul et al. 2021) training settings.

SGD momentum 0.9 (nesterov), lr 0.1, weight decay 5e-4, batch 128, 200 epochs,
step decay x0.2 at epochs 60/120/160 (fractions 0.3/0.6/0.8), random crop
(padding 4) + horizontal flip, per-channel standardisation. CIFAR-10 is read
with TFDS from `config.dataset.data_dir` (must be prepared there; no downloads).

    python scripts/train.py --config=core/configs/cifar10_resnet18.py \
        --workdir=/tmp/c10_r18 --config.dataset.data_dir=/path/to/tfds

Expected: ~0.95 test accuracy (what Data Diet reports for this setup; not run
here - this environment has no CIFAR-10 and no GPU JAX). Use
--config.optimizer.schedule=cosine for the cosine variant.
`:quick` (1 epoch, 5,000 training examples) only checks the pipeline.
"""
from core.config import base_config, check_arg


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  c = base_config()
  c.dataset = dict(name="cifar10", normalization="per_channel", data_dir=None)
  c.model = dict(name="resnet18")
  c.batch_size = 128
  c.num_epochs = 200
  c.optimizer.update(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                     schedule="step", boundaries=(0.3, 0.6, 0.8), decay_factor=0.2)
  c.augment.update(crop_padding=4, flip=True)
  c.eval_batch_size = 1000
  c.log_every_steps = 100
  c.eval_every_steps = 3910  # every 10 epochs
  c.checkpoint_every_steps = 3910
  if arg == "quick":
    c.num_epochs = 1
    c.dataset.num_train = 5000
    c.eval_every_steps = 0
    c.checkpoint_every_steps = 0
  return c
