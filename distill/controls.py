"""Controls for evaluating distilled sets (after DD-Ranking, Li et al. 2025) and their driver.

A distilled set's accuracy mixes three things: its images, its labels and the
training recipe that evaluates it. Every set is therefore trained by the same
finite network (`distill.evaluate.finite_network_eval`, MSE on targets, centred at
init) under each combination of

  * labels  'hard'    one_hot(class) - 1/C;
            'own'     the method's targets as produced (Label Solve's solved labels,
                      KIP's if learned; equal to 'hard' for DD/DC/DSA/DM/random);
            'teacher' soft labels of a teacher network trained on the whole training
                      split: softmax(f_T(x)) - 1/C, on the very (augmented) image;
  * augment False, or True: DSA augmentation (distill.dsa, per-example parameters)
            during the evaluation training. Implemented by handing the shared trainer
            a set of ceil(steps * batch / n) independently augmented copies of the
            support set (capped at `max_augmented_examples`), so each training step
            draws fresh transformations with the trainer unchanged;

and beside the same-size class-balanced random subset of real images under the
same setting ('random': with the same seed it is exactly the initial images of
every method that starts from real images).

Cost of producing a set (`cost_seconds`, `cost_example_passes` for methods that
train or probe networks, `cost_kernel_entries` for kernel methods): example passes
as in distill.synthetic (one example through one forward or backward pass);
kernel entries = entries of K evaluated by the forward passes (KIP: steps x
(n_s^2 + n_t n_s); Label Solve: n_s^2 + n_t n_s). The teacher's own training cost
is reported once per seed (`teacher` rows).

The driver over a config's grid (caching, tables, figures, the main job's report section)
is `experiments.distill_controls.run_distill_controls`.
"""
from __future__ import annotations

import math
import time
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from core import parallel
from core.config import config_value as _get
from core.io import fingerprint
from distill import dsa as dsa_lib
from distill import synthetic
from distill.support import SupportSet

LABEL_MODES = ("hard", "own", "teacher")
NETWORK_METHODS = ("dd", "dc", "dsa", "dm")
KERNEL_METHODS = ("kip_fc", "kip_conv", "label_solve")
METHODS = ("random",) + KERNEL_METHODS + NETWORK_METHODS


# ----------------------------------------------------------------------------
# Labels and augmentation.


def hard_targets(labels, num_classes: int) -> np.ndarray:
  return (np.eye(num_classes, dtype=np.float32)[np.asarray(labels)] - 1.0 / num_classes)


def with_targets(support: SupportSet, y) -> SupportSet:
  return SupportSet(x=support.x, y=np.asarray(y, np.float32), labels=support.labels,
                    init_ids=support.init_ids)


def own_differs(support: SupportSet) -> bool:
  """Whether the method's targets differ from the centred one-hot ones."""
  hard = hard_targets(support.labels, support.num_classes)
  return not np.allclose(np.asarray(support.y, np.float32), hard, atol=1e-6)


def augmented_copies(support: SupportSet, copies: int, strategy: str, seed: int,
                     dsa_params: dsa_lib.DSAParams = dsa_lib.DSAParams()) -> SupportSet:
  """`copies` stacked copies of the set, each with fresh per-example DSA transformations."""
  if copies < 1:
    raise ValueError(f"copies must be >= 1, got {copies}")
  x = jnp.asarray(support.x, jnp.float32)
  fn = jax.jit(lambda k: dsa_lib.augment(k, x, strategy, dsa_params))
  base = jax.random.PRNGKey(int(seed) + 0xA06)
  xs = np.concatenate([np.asarray(fn(jax.random.fold_in(base, i))) for i in range(copies)])
  rep = lambda a: np.concatenate([np.asarray(a)] * copies)
  return SupportSet(x=xs, y=rep(support.y), labels=rep(support.labels),
                    init_ids=rep(support.init_ids))


def num_copies(n: int, train_config, cap: int) -> int:
  steps, bs = int(train_config.num_steps), min(int(train_config.batch_size), n)
  return max(1, min(math.ceil(steps * bs / n), max(1, cap // n)))


# ----------------------------------------------------------------------------
# Teacher.


class Teacher:
  """A network trained on the whole training split; `soft_targets(x)` -> (n, C)."""

  def __init__(self, data, train_config, *, seed: int = 0, temperature: float = 1.0):
    from core import train as trainer
    tcfg = ml_collections.ConfigDict(train_config.to_dict())
    tcfg.seed = int(seed)
    tcfg.loss = "cross_entropy"
    tcfg.center_at_init = False
    # one device is fastest for a small split; with several processes every device takes part
    tcfg.num_devices = None if parallel.process_count() > 1 else 1
    tcfg.progress_bar = False
    tcfg.checkpoint = False
    t0 = time.time()
    res = trainer.train_and_evaluate(tcfg, None, data=data)
    self.seconds = time.time() - t0
    self.model, self.state = res.model, res.state
    self.test_accuracy = float(res.metrics["test_accuracy"])
    self.example_passes = 2.0 * int(tcfg.num_steps) * int(tcfg.batch_size)
    self.temperature = float(temperature)
    self.num_classes = data.num_classes
    variables = {"params": self.state.params}
    if self.state.batch_stats:
      variables["batch_stats"] = self.state.batch_stats
    self._logits = jax.jit(lambda x: self.model.apply(variables, x, train=False))

  def soft_targets(self, x, batch: int = 2048) -> np.ndarray:
    x = np.asarray(x, np.float32)
    out = [np.asarray(self._logits(jnp.asarray(x[i:i + batch]))) for i in range(0, len(x), batch)]
    p = jax.nn.softmax(jnp.asarray(np.concatenate(out)) / self.temperature, axis=-1)
    return np.asarray(p, np.float32) - 1.0 / self.num_classes


# ----------------------------------------------------------------------------
# The controls for one support set.


def evaluate_controls(support: SupportSet, data, train_config, *, seed: int = 0,
                      label_modes=("hard", "own", "teacher"), augment_modes=(False, True),
                      teacher: Optional[Teacher] = None, strategy: Optional[str] = None,
                      max_augmented_examples: int = 60000,
                      center_at_init: bool = True) -> list:
  """One row per (labels, augment): finite_test_accuracy/loss of the shared evaluation.

  'own' is skipped where it equals 'hard' (the row is copied, `own_is_hard=True`).
  """
  from distill.evaluate import finite_network_eval
  for m in label_modes:
    if m not in LABEL_MODES:
      raise ValueError(f"unknown label mode {m!r}; choose from {LABEL_MODES}")
  if "teacher" in label_modes and teacher is None:
    raise ValueError("label mode 'teacher' needs a Teacher")
  synthetic.check_finite(support.x, "support images")
  n = len(support.x)
  tc = ml_collections.ConfigDict(train_config.to_dict())
  tc.batch_size = min(int(tc.batch_size), n)  # the same batch with and without copies
  strategy = strategy or dsa_lib.default_strategy(np.shape(support.x)[1:])
  rows, done = [], {}
  for aug in augment_modes:
    base = support
    if aug:
      base = augmented_copies(support, num_copies(n, tc, max_augmented_examples), strategy,
                              seed)
    for mode in label_modes:
      if mode == "own" and not own_differs(support):
        if ("hard", aug) in done:
          rows.append(dict(done[("hard", aug)], labels="own", own_is_hard=True))
          continue
      if mode == "hard":
        s = with_targets(base, hard_targets(base.labels, support.num_classes))
      elif mode == "own":
        s = base
      else:
        s = with_targets(base, teacher.soft_targets(base.x))
      t0 = time.time()
      m = finite_network_eval(s, data, tc, seed=seed, center_at_init=center_at_init)
      row = {"labels": mode, "augment": bool(aug), **m,
             "eval_seconds": round(time.time() - t0, 2), "eval_examples": int(len(s.x))}
      done[(mode, aug)] = row
      rows.append(row)
  return rows


# ----------------------------------------------------------------------------
# Producing the sets, with their cost.


def kip_config(config, variant: str):
  """The KIP config of `kip_fc` / `kip_conv`: kernel and kip sections from config[variant]."""
  sec = _get(config, variant)
  if sec is None:
    raise ValueError(f"config has no '{variant}' section")
  c = ml_collections.ConfigDict()
  c.kernel = dict(sec["kernel"])
  c.kip = dict(sec["kip"])
  c.label_solve = dict(_get(config, "label_solve", {"target_per_class": 0}))
  return c


def _merge(base: dict, over: dict) -> dict:
  out = dict(base)
  for k, v in dict(over).items():
    if isinstance(v, dict) and isinstance(out.get(k), dict):
      out[k] = _merge(out[k], v)
    else:
      out[k] = v
  return out


def config_for(config, method: str, images_per_class: int):
  """`config` with `config.per_ipc[str(ipc)][method]` merged (recursively) into `method`."""
  over = _get(_get(config, "per_ipc", {}), str(int(images_per_class)), {})
  mo = _get(over, method)
  if not mo:
    return config
  c = ml_collections.ConfigDict(config.to_dict())
  mo = mo.to_dict() if hasattr(mo, "to_dict") else dict(mo)
  c[method] = _merge(c[method].to_dict(), mo)
  return c


# What every evaluated set's result depends on besides the set itself.
EVALUATION_FIELDS = ("dataset", "finite_train", "finite_train_teacher", "evaluation")


def evaluation_fields(config) -> dict:
  """{field: section} of `EVALUATION_FIELDS` (None where missing), to fingerprint with a set."""
  d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return {k: d.get(k) for k in EVALUATION_FIELDS}


def cell_fingerprint(config, method: str, images_per_class: int) -> str:
  """What a cell's result depends on: data, evaluation and the method's (merged) section."""
  c = config_for(config, method, images_per_class)
  d = c.to_dict()
  keep = evaluation_fields(d)
  keep["method"] = d.get(method) if method in d else None
  if method == "label_solve":
    keep["method"] = {"kip_fc": d.get("kip_fc"), "label_solve": d.get("label_solve")}
  return fingerprint(keep, length=12)


def make_support(method: str, data, images_per_class: int, config, *, seed: int,
                 workdir: Optional[str] = None, progress: bool = False):
  """(SupportSet, cost dict) of one method."""
  from distill import distribution_matching, gradient_matching, unrolled
  from distill.evaluate import distill_support
  train = data.train
  config = config_for(config, method, images_per_class)
  t0 = time.time()
  if method in NETWORK_METHODS:
    fn = {"dd": unrolled.distill_unrolled,
          "dc": lambda *a, **k: gradient_matching.distill_gradient_matching(*a, dsa=False, **k),
          "dsa": lambda *a, **k: gradient_matching.distill_gradient_matching(*a, dsa=True, **k),
          "dm": distribution_matching.distill_distribution_matching}[method]
    res = fn(train, images_per_class, config, seed=seed, workdir=workdir, progress=progress)
    return res.support, {"cost_seconds": res.cost["seconds"],
                         "cost_example_passes": res.cost["example_passes"],
                         "cost_kernel_entries": 0.0, "iterations": res.cost["iterations"]}
  n_s = images_per_class * train.num_classes
  if method == "random":
    s = distill_support("random", train, images_per_class, config, seed=seed)
    entries = 0.0
  elif method == "label_solve":
    kc = kip_config(config, "kip_fc")
    s = distill_support("label_solve", train, images_per_class, kc, seed=seed)
    tpc = int(_get(kc.label_solve, "target_per_class", 0) or 0)
    n_t = len(train.x) if tpc == 0 else tpc * train.num_classes
    entries = float(n_s * n_s + n_t * n_s)
  elif method in ("kip_fc", "kip_conv"):
    kc = kip_config(config, method)
    s = distill_support("kip", train, images_per_class, kc, seed=seed, workdir=workdir,
                        progress=progress)
    n_t = int(kc.kip["target_per_class"]) * train.num_classes
    entries = float(int(kc.kip["steps"]) * (n_s * n_s + n_t * n_s))
  else:
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
  return s, {"cost_seconds": round(time.time() - t0, 3), "cost_example_passes": 0.0,
             "cost_kernel_entries": entries}
