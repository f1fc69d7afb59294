"""MLP (256-256) on sklearn 8x8 digits.

    python scripts/train.py --config=core/configs/digits_mlp.py --workdir=/tmp/digits_mlp

Expected: test accuracy ~0.97 after 30 epochs of Adam (lr 1e-3, batch 64).
`:quick` (5 epochs) reaches ~0.96.
"""
from core.config import base_config, check_arg


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  c = base_config()
  c.dataset.name = "digits"
  c.model = dict(name="mlp", hidden=(256, 256))
  c.batch_size = 64
  c.num_epochs = 30
  c.optimizer.update(name="adam", lr=1e-3, schedule="cosine")
  if arg == "quick":
    c.num_epochs = 5
  return c
