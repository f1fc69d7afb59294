"""Small CNN on sklearn 8x8 digits (1,437 train / 360 test).

    python scripts/train.py --config=core/configs/digits_cnn.py --workdir=/tmp/digits_cnn

Expected: test accuracy ~0.98-0.99 after 30 epochs of Adam (lr 1e-3, batch 64),
under a minute on a laptop CPU. `:quick` (5 epochs) reaches ~0.96-0.97.
"""
from core.config import base_config, check_arg


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  c = base_config()
  c.dataset.name = "digits"
  c.model = dict(name="cnn", channels=(32, 64), dense=128)
  c.batch_size = 64
  c.num_epochs = 30
  c.optimizer.update(name="adam", lr=1e-3, schedule="cosine")
  if arg == "quick":
    c.num_epochs = 5
  return c
