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

`run_matching(config, workdir)` runs every (images_per_class, seed, method) of a
config (distill/configs/digits_matching.py), caches support sets and rows in the
workdir, and writes results.json / results.csv / summary.json / table.md and PNGs.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from core.config import config_value as _get
from core.io import atomic_savefig, atomic_write_text, fingerprint, write_rows
from distill import dsa as dsa_lib
from distill import synthetic
from distill.support import SupportSet, init_support, load_support, save_support

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
    tcfg.num_devices = 1
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


def cell_fingerprint(config, method: str, images_per_class: int) -> str:
  """What a cell's result depends on: data, evaluation and the method's (merged) section."""
  c = config_for(config, method, images_per_class)
  d = c.to_dict()
  keep = {k: d.get(k) for k in ("dataset", "finite_train", "finite_train_teacher", "evaluation")}
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


# ----------------------------------------------------------------------------
# Driver.


def validate_config(config, data) -> None:
  methods = tuple(config.methods)
  if not methods:
    raise ValueError("config.methods is empty")
  for m in methods:
    if m not in METHODS:
      raise ValueError(f"unknown method {m!r}; choose from {METHODS}")
  for ipc in config.images_per_class:
    synthetic.validate(data.train, ipc, "config")



def run_matching(config, workdir: str, *, data=None, progress: bool = True) -> list:
  """Every (ipc, seed, method) x controls of `config`; returns result rows (cached by cell)."""
  from core.data import load_dataset
  if data is None:
    data = load_dataset(**dict(config.dataset))
  validate_config(config, data)
  os.makedirs(os.path.join(workdir, "supports"), exist_ok=True)
  teacher_fp = fingerprint({k: config.to_dict().get(k) for k in
                            ("dataset", "finite_train_teacher", "evaluation")}, length=12)
  path = os.path.join(workdir, "results.json")
  rows = []
  if os.path.exists(path):
    with open(path) as f:
      rows = [r for r in json.load(f)
              if r.get("config") == (cell_fingerprint(config, r["method"], r["images_per_class"])
                                     if r["method"] != "teacher" else teacher_fp)]
  have = {(r["method"], r["images_per_class"], r["seed"]) for r in rows if "labels" in r}
  teachers = {}
  ev = config.evaluation
  skip = {tuple(s) for s in _get(config, "skip", ())}

  def teacher_for(seed):
    if seed not in teachers:
      t = Teacher(data, config.finite_train_teacher, seed=seed,
                  temperature=float(_get(ev, "temperature", 1.0)))
      teachers[seed] = t
      if not any(r.get("method") == "teacher" and r["seed"] == seed for r in rows):
        rows.append({"method": "teacher", "seed": int(seed), "images_per_class": -1,
                     "teacher_test_accuracy": t.test_accuracy,
                     "cost_seconds": round(t.seconds, 2),
                     "cost_example_passes": t.example_passes, "config": teacher_fp})
    return teachers[seed]

  for ipc in config.images_per_class:
    for seed in config.seeds:
      for method in config.methods:
        if ((method, int(ipc)) in skip or (method, int(ipc), int(seed)) in skip
            or (method, int(ipc), int(seed)) in have):
          continue
        fp = cell_fingerprint(config, method, int(ipc))
        tag = f"{method}_ipc{ipc}_seed{seed}"
        sup_path = os.path.join(workdir, "supports", tag + ".npz")
        cost_path = os.path.join(workdir, "supports", tag + "_cost.json")
        cost = None
        if os.path.exists(sup_path) and os.path.exists(cost_path):
          with open(cost_path) as f:
            cost = json.load(f)
          if cost.pop("config", fp) == fp:
            support = load_support(sup_path)
          else:
            cost = None
        if cost is None:
          support, cost = make_support(method, data, int(ipc), config, seed=int(seed),
                                       workdir=os.path.join(workdir, "runs", f"{tag}_{fp}"),
                                       progress=progress)
          save_support(sup_path, support)
          atomic_write_text(cost_path, json.dumps(dict(cost, config=fp)) + "\n")
        t = teacher_for(int(seed)) if "teacher" in ev.label_modes else None
        for r in evaluate_controls(support, data, config.finite_train, seed=int(seed),
                                   label_modes=tuple(ev.label_modes),
                                   augment_modes=tuple(ev.augment_modes), teacher=t,
                                   max_augmented_examples=int(ev.max_augmented_examples)):
          rows.append({"dataset": data.name, "method": method, "images_per_class": int(ipc),
                       "seed": int(seed), **r, **cost, "config": fp})
        write_rows(workdir, rows)
        if progress:
          last = [r for r in rows if r.get("method") == method and r["seed"] == seed
                  and r["images_per_class"] == ipc]
          print(json.dumps({"cell": tag, **{f"{r['labels']}{'+aug' if r['augment'] else ''}":
                                            round(r["finite_test_accuracy"], 4) for r in last},
                            "cost_s": cost["cost_seconds"]}), flush=True)
  write_rows(workdir, rows)
  write_report(workdir, config, rows, data.name)
  return rows


def write_report(workdir: str, config, rows: Optional[list] = None, dataset: str = "") -> list:
  """summary.json, table.md, controls.png and distilled_images.png from the rows so far."""
  if rows is None:
    with open(os.path.join(workdir, "results.json")) as f:
      rows = json.load(f)
  dataset = dataset or dict(config.dataset)["name"]
  summary = summarize(rows)
  atomic_write_text(os.path.join(workdir, "summary.json"), json.dumps(summary, indent=1) + "\n")
  atomic_write_text(os.path.join(workdir, "table.md"), markdown_table(summary, config))
  plot_results(summary, config, os.path.join(workdir, "controls.png"), dataset)
  plot_images(workdir, config, os.path.join(workdir, "distilled_images.png"), dataset)
  return summary


# ----------------------------------------------------------------------------
# Summaries and figures.


def summarize(rows: list) -> list:
  """Mean/std over seeds per (method, ipc, labels, augment), with mean cost."""
  groups = {}
  for r in rows:
    if "labels" not in r:
      continue
    groups.setdefault((r["method"], r["images_per_class"], r["labels"], r["augment"]), []).append(r)
  out = []
  for (m, ipc, lab, aug), rs in sorted(groups.items(), key=lambda kv: (
      kv[0][1], METHODS.index(kv[0][0]) if kv[0][0] in METHODS else 99, kv[0][2], kv[0][3])):
    acc = [r["finite_test_accuracy"] for r in rs]
    out.append({"method": m, "images_per_class": ipc, "labels": lab, "augment": aug,
                "seeds": [r["seed"] for r in rs], "acc_mean": float(np.mean(acc)),
                "acc_std": float(np.std(acc)),
                "cost_seconds": float(np.mean([r["cost_seconds"] for r in rs])),
                "cost_example_passes": float(np.mean([r["cost_example_passes"] for r in rs])),
                "cost_kernel_entries": float(np.mean([r["cost_kernel_entries"] for r in rs]))})
  return out


NAMES = {"random": "random real", "kip_fc": "KIP (FC NTK)", "kip_conv": "KIP (ConvNet NTK)",
         "label_solve": "Label Solve", "dd": "DD", "dc": "DC", "dsa": "DSA", "dm": "DM"}
SETTINGS = (("hard", False), ("own", False), ("teacher", False), ("hard", True),
            ("own", True), ("teacher", True))


def _fmt_cost(s) -> str:
  parts = [f"{s['cost_seconds']:.0f} s"]
  if s["cost_example_passes"]:
    parts.append(f"{s['cost_example_passes']:.2g} passes")
  if s["cost_kernel_entries"]:
    parts.append(f"{s['cost_kernel_entries']:.2g} K entries")
  return ", ".join(parts)


def markdown_table(summary: list, config) -> str:
  """Test accuracy (%) mean ± std per method and ipc under each (labels, augment) setting."""
  idx = {(s["method"], s["images_per_class"], s["labels"], s["augment"]): s for s in summary}
  present = [st for st in SETTINGS if any((k[2], k[3]) == st for k in idx)]
  head = ["ipc", "method"] + [f"{lab}{' + DSA aug' if aug else ''}" for lab, aug in present] + [
      "cost to produce"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for ipc in config.images_per_class:
    for m in METHODS:
      cells = [idx.get((m, int(ipc), lab, aug)) for lab, aug in present]
      if not any(cells):
        continue
      vals = [f"{100 * c['acc_mean']:.1f} ± {100 * c['acc_std']:.1f}" if c else "" for c in cells]
      any_c = next(c for c in cells if c)
      lines.append(f"| {ipc} | {NAMES.get(m, m)} | " + " | ".join(vals)
                   + f" | {_fmt_cost(any_c)} |")
  return "\n".join(lines) + "\n"


def plot_results(summary: list, config, path: str, dataset: str) -> None:
  """Accuracy vs images/class per method, one panel per (labels, augment) setting."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  settings = [st for st in (("hard", False), ("teacher", False), ("hard", True), ("teacher", True))
              if any((s["labels"], s["augment"]) == st for s in summary)]
  if not settings:
    return
  fig, axes = plt.subplots(1, len(settings), figsize=(3.6 * len(settings) + 1.6, 3.4),
                           sharey=True, squeeze=False)
  for ax, (lab, aug) in zip(axes[0], settings):
    for i, m in enumerate(METHODS):
      pts = sorted((s["images_per_class"], s["acc_mean"], s["acc_std"]) for s in summary
                   if s["method"] == m and s["labels"] == lab and s["augment"] == aug)
      if not pts:
        continue
      x, y, e = (np.asarray(v) for v in zip(*pts))
      style = dict(color="k", lw=2.2, ls="--") if m == "random" else dict(color=f"C{i}", lw=1.3)
      ax.errorbar(x, 100 * y, yerr=100 * e, marker="o", ms=3.5, capsize=2,
                  label=NAMES.get(m, m), **style)
    ax.set_xscale("log")
    ax.set_xlabel("images per class")
    ax.set_title(f"{lab} labels, {'DSA aug' if aug else 'no aug'} at eval", fontsize=9)
    ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel("test accuracy (%)")
  axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
  fig.suptitle(f"{dataset}: distilled sets vs random real images under each evaluation "
               "setting (same finite network)", fontsize=9)
  fig.tight_layout()
  atomic_savefig(fig, path, dpi=110, bbox_inches="tight")
  plt.close(fig)


def plot_images(workdir: str, config, path: str, dataset: str) -> None:
  """The support sets at `config.figure.images_per_class`, seed `config.figure.seed`."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig_cfg = _get(config, "figure", {})
  ipc, seed = int(_get(fig_cfg, "images_per_class", 1)), int(_get(fig_cfg, "seed", 0))
  sets = []
  for m in config.methods:
    p = os.path.join(workdir, "supports", f"{m}_ipc{ipc}_seed{seed}.npz")
    if os.path.exists(p):
      sets.append((m, load_support(p)))
  if not sets:
    return
  x0 = np.asarray(sets[0][1].x)
  classes = int(sets[0][1].num_classes)
  per = min(ipc, 2)
  if x0.ndim == 4:
    fig, axes = plt.subplots(len(sets), classes * per, figsize=(0.55 * classes * per + 1.2,
                                                                 0.62 * len(sets) + 0.4),
                             squeeze=False)
    for r, (m, s) in enumerate(sets):
      lab = np.asarray(s.labels)
      for c in range(classes):
        idx = np.flatnonzero(lab == c)[:per]
        for j in range(per):
          ax = axes[r, c * per + j]
          ax.set_xticks([]); ax.set_yticks([])
          if j < len(idx):
            img = np.asarray(s.x)[idx[j], ..., 0]
            ax.imshow(img, cmap="gray", vmin=img.min(), vmax=img.max())
      axes[r, 0].set_ylabel(NAMES.get(m, m), rotation=0, ha="right", va="center", fontsize=8)
  else:
    fig, axes = plt.subplots(len(sets), classes, figsize=(1.3 * classes + 1.2,
                                                          0.7 * len(sets) + 0.4),
                             squeeze=False, sharex=True)
    for r, (m, s) in enumerate(sets):
      lab = np.asarray(s.labels)
      for c in range(classes):
        ax = axes[r, c]
        ax.set_xticks([]); ax.set_yticks([])
        i = np.flatnonzero(lab == c)[:1]
        if len(i):
          ax.plot(np.asarray(s.x)[i[0], :, 0], lw=0.9)
        if r == 0:
          ax.set_title(str(c), fontsize=8)
      axes[r, 0].set_ylabel(NAMES.get(m, m), rotation=0, ha="right", va="center", fontsize=8)
  fig.suptitle(f"{dataset}: support sets, {ipc} per class (seed {seed}); columns = classes",
               fontsize=9)
  atomic_savefig(fig, path, dpi=110, bbox_inches="tight")
  plt.close(fig)


def main(argv=None) -> None:
  """python -m distill.controls --config=distill/configs/digits_matching.py[:quick] --workdir=DIR"""
  import argparse
  import importlib.util
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--config", required=True)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--report_only", action="store_true",
                  help="only rewrite table.md / PNGs from the workdir's results.json")
  a = ap.parse_args(argv)
  path, _, arg = a.config.partition(":")
  spec = importlib.util.spec_from_file_location("_matching_cfg", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  config = mod.get_config(arg or None)
  if a.report_only:
    write_report(a.workdir, config)
    return
  # Reruns and later seeds reuse compiled programs (each run builds fresh closures).
  cache = os.path.join(os.path.expanduser("~"), ".cache", "prune_distill", "jax_cache")
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  t0 = time.time()
  run_matching(config, a.workdir)
  print(f"done in {time.time() - t0:.0f} s; table: {os.path.join(a.workdir, 'table.md')}")


if __name__ == "__main__":
  main()
