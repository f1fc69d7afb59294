"""Making and evaluating support sets.

  * `distill_support(method, train, images_per_class, config, seed)` - one support
    set by a method of `DISTILLERS` ('random' class-balanced sample, 'label_solve', 'kip').
  * `krr_test_metrics` - kernel ridge regression with the support set on the test
    split (accuracy, MSE to centred one-hot targets).
  * `finite_network_eval` - trains a finite network, given by its own trainer config, with
    the shared trainer (`core.train.train_and_evaluate`) on the support set with MSE on its
    soft labels (kept as they are, optionally `center_at_init`) and tests it.
The driver over a grid of budgets and seeds is `experiments.distill.run_distillation`.
"""
from __future__ import annotations

from typing import Optional

import ml_collections
import numpy as np

from core import parallel
from core.config import config_value as _get
from core.data import ArrayDataset, DatasetSplits
from distill import kernels, kip, krr, label_solve
from distill import distribution_matching, gradient_matching, unrolled
from distill.support import SupportSet, init_support


def kernel_fn_for(config, example_shape, num_classes: int = 10):
  spec = kernels.KernelSpec.from_config(dict(config["kernel"], num_classes=num_classes))
  return kernels.make_kernel_fn(spec, example_shape)


def krr_test_metrics(support: kip.SupportSet, test, config) -> dict:
  """{'krr_test_accuracy', 'krr_test_mse'} of the support set under the config's kernel."""
  kf = kernel_fn_for(config, test.example_shape, test.num_classes)
  m = krr.krr_evaluate(kf, support.x, support.y, test.x, test.labels, config["kip"]["reg"],
                       int(_get(config["kip"], "kernel_batch_size", 256)))
  return {"krr_test_accuracy": m["accuracy"], "krr_test_mse": m["mse"]}


def distill_support(method: str, train, images_per_class: int, config, *, seed: int = 0,
                    workdir: Optional[str] = None, test=None,
                    progress: bool = False) -> kip.SupportSet:
  """A support set of `images_per_class` per class by `method` ('random', 'label_solve', 'kip').

  `train`/`test` are core.data.ArrayDataset; `config` as in
  distill/configs/*.py (needs `kernel`, `kip`, optionally `label_solve`).
  KIP with `workdir` checkpoints there and resumes.
  """
  if method not in DISTILLERS:
    raise ValueError(f"unknown distillation method {method!r}; choose from {METHODS}")
  return DISTILLERS[method](train, images_per_class, config, seed=seed, workdir=workdir,
                            test=test, progress=progress)


def _random(train, ipc, config, *, seed, **_):
  return init_support(train, ipc, seed)


def _label_solve(train, ipc, config, *, seed, **_):
  return label_solve.label_solve_support(train, ipc, config, seed=seed)


def _kip(train, ipc, config, *, seed, workdir=None, test=None, progress=False):
  return kip.distill_kip(train, ipc, config, seed=seed, workdir=workdir, test=test,
                         progress=progress).support


# name -> fn(train, images_per_class, config, *, seed, workdir, test, progress) -> SupportSet
DISTILLERS = {"random": _random, "label_solve": _label_solve, "kip": _kip,
              # network-based (config sections dd / dc / dsa / dm; distill/configs/*_matching.py)
              "dd": unrolled.dd_support, "dc": gradient_matching.dc_support,
              "dsa": gradient_matching.dsa_support, "dm": distribution_matching.dm_support}
METHODS = tuple(DISTILLERS)


# ----------------------------------------------------------------------------
# Finite networks via the shared trainer.


def finite_network_eval(support: SupportSet, data, train_config, *, seed: int = 0,
                        workdir: Optional[str] = None, center_at_init: bool = True,
                        augment: Optional[dict] = None) -> dict:
  """Trains the finite network of `train_config` on the support set and tests it.

  `train_config` is the evaluation network's own trainer config (model, optimizer,
  num_steps, batch_size, ...), the same one the pruned sets train with; here the loss is
  MSE on the support set's soft labels (kept as learned: centred scale, not rounded), the
  batch is capped at the support size, `center_at_init` as given, and no augmentation
  unless `augment` is given. Returns {'finite_test_accuracy', 'finite_test_loss'}.
  """
  from core import train as trainer
  n = len(support.x)
  tcfg = ml_collections.ConfigDict(train_config.to_dict() if hasattr(train_config, "to_dict")
                                   else dict(train_config))
  if not tcfg.get("num_steps"):
    raise ValueError("finite_network_eval: the evaluation network's config needs num_steps "
                     "(support sets are trained for a fixed number of steps)")
  tcfg.seed = int(seed)
  tcfg.loss = "mse"
  tcfg.center_at_init = bool(center_at_init)
  tcfg.num_epochs = None
  tcfg.num_examples = None
  devices = parallel.local_devices(None if parallel.process_count() > 1 else 1)
  # a support set is tiny: one device is fastest; with several processes every device
  # takes part and the batch must divide over them (the sampler wraps round)
  tcfg.num_devices = None if parallel.process_count() > 1 else 1
  tcfg.batch_size = parallel.round_up_to_devices(min(int(tcfg.batch_size), n), devices)
  tcfg.progress_bar = False
  tcfg.checkpoint = workdir is not None
  tcfg.augment = dict(crop_padding=0, flip=False, **dict(augment or {}))
  y = np.asarray(support.y, np.float32)
  if not np.isfinite(y).all() or not np.isfinite(np.asarray(support.x)).all():
    raise ValueError("finite_network_eval: support set contains NaN/inf")
  train = ArrayDataset(np.asarray(support.x, np.float32), y, np.arange(n, dtype=np.int64),
                       data.num_classes, f"{data.name}/support")
  splits = DatasetSplits(train=train, test=data.test, num_classes=data.num_classes,
                         name=data.name)
  res = trainer.train_and_evaluate(tcfg, workdir, data=splits)
  return {"finite_test_accuracy": float(res.metrics["test_accuracy"]),
          "finite_test_loss": float(res.metrics.get("test_loss", float("nan")))}
