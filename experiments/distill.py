"""The distillation experiment: every (images_per_class, seed, method) of a config.

    python scripts/distill_run.py --config=distill/configs/digits_kip_fc.py --workdir=DIR

Result rows (results.json / results.csv, written atomically, merged with earlier rows),
support sets as npz, a PNG of distilled vs initial images.

Rows are keyed by cell (method, images_per_class, seed) and the config fingerprint: a rerun
with fewer seeds or methods, or another config, adds or replaces its own cells and keeps every
earlier row (results.json is append-only in content); summary.json groups by config too.
"""
from __future__ import annotations

import json
import os
import time
from typing import Optional

import numpy as np

from core.config import config_value as _get
from core.io import atomic_savefig, atomic_write_text, fingerprint, write_rows, load_json
from distill import kip
from distill.evaluate import METHODS, distill_support, finite_network_eval, krr_test_metrics
from distill.support import SupportSet, check_images_per_class, load_support, save_support


# ----------------------------------------------------------------------------
# Files.


def write_results(workdir: str, rows: list) -> None:
  write_rows(workdir, rows)


def row_key(r: dict) -> tuple:
  """The cell a result row belongs to: (config fingerprint, method, images_per_class, seed)."""
  return (r.get("config"), r["method"], int(r["images_per_class"]), int(r["seed"]))


def merge_rows(earlier: list, new: list) -> list:
  """`earlier` rows with those of `new` cells replaced in place, then `new`'s other rows:
  no earlier row is dropped unless a new row has its cell."""
  fresh = {row_key(r): r for r in new}
  out = [fresh.pop(row_key(r), r) for r in earlier]
  return out + [r for r in new if row_key(r) in fresh]


def summarize(rows: list) -> list:
  """Mean/std over seeds of KRR (and finite) accuracy per (config, method, images_per_class)."""
  groups = {}
  for r in rows:
    groups.setdefault((r["method"], r["images_per_class"], r.get("config")), []).append(r)
  out = []
  for (method, ipc, cfg), rs in sorted(groups.items(), key=lambda kv: (
      str(kv[0][2]), kv[0][1], METHODS.index(kv[0][0]) if kv[0][0] in METHODS else 9)):
    row = {"method": method, "images_per_class": ipc, "config": cfg,
           "seeds": [r["seed"] for r in rs]}
    for k in ("krr_test_accuracy", "finite_test_accuracy"):
      v = [r[k] for r in rs if k in r]
      if v:
        row[k + "_mean"], row[k + "_std"] = float(np.mean(v)), float(np.std(v))
    out.append(row)
  return out


# ----------------------------------------------------------------------------
# Figure.


def plot_supports(initial: SupportSet, distilled: SupportSet, path: str,
                  title: str = "", max_per_class: int = 10) -> None:
  """PNG: random initial support (left) beside the distilled one (right).

  Images: one row per class, `max_per_class` images per side. 1-D signals
  (MNIST-1D): one row per class, up to 3 signals per panel as line plots.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  x0, x1 = np.asarray(initial.x), np.asarray(distilled.x)
  labels = np.asarray(initial.labels)
  classes = np.unique(labels)
  is_image = x0.ndim == 4
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  if is_image:
    k = min(max_per_class, int(np.bincount(labels).max()))
    fig, axes = plt.subplots(len(classes), 2 * k + 1, figsize=(0.6 * (2 * k + 1), 0.6 * len(classes) + 0.6),
                             squeeze=False)
    for r, c in enumerate(classes):
      idx = np.flatnonzero(labels == c)[:k]
      for side, xs in enumerate((x0, x1)):
        for j in range(k):
          ax = axes[r, j + side * (k + 1)]
          ax.set_xticks([]); ax.set_yticks([])
          for s in ax.spines.values():
            s.set_visible(False)
          if j < len(idx):
            img = xs[idx[j], ..., 0] if xs.shape[-1] == 1 else xs[idx[j]]
            lim = np.abs(img).max() + 1e-8
            ax.imshow(img, cmap="gray", vmin=-lim if img.min() < 0 else 0, vmax=lim)
      axes[r, k].axis("off")
      axes[r, 0].set_ylabel(str(c), rotation=0, labelpad=8, fontsize=9, va="center")
    axes[0, k // 2].set_title("random initial", fontsize=10)
    axes[0, k + 1 + k // 2].set_title("distilled (KIP)", fontsize=10)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
  else:
    per = min(3, int(np.bincount(labels).max()))
    fig, axes = plt.subplots(len(classes), 2, figsize=(8, 1.0 * len(classes) + 0.6),
                             sharex=True, squeeze=False)
    t = np.arange(x0.shape[1])
    for r, c in enumerate(classes):
      idx = np.flatnonzero(labels == c)[:per]
      for side, xs in enumerate((x0, x1)):
        ax = axes[r, side]
        for j, i in enumerate(idx):
          ax.plot(t, xs[i].reshape(len(t), -1)[:, 0], lw=1.0, color=f"C{j}")
        ax.set_yticks([])
      axes[r, 0].set_ylabel(str(c), rotation=0, labelpad=10, fontsize=9, va="center")
    axes[0, 0].set_title("random initial", fontsize=10)
    axes[0, 1].set_title("distilled (KIP)", fontsize=10)
    fig.subplots_adjust(hspace=0.1, wspace=0.05)
  if title:
    fig.suptitle(title, fontsize=10)
  atomic_savefig(fig, path, dpi=110, bbox_inches="tight")


# ----------------------------------------------------------------------------
# Driver.


def config_fingerprint(config) -> str:
  d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  d = {k: d[k] for k in ("dataset", "kernel", "kip", "label_solve", "finite", "finite_train")
       if k in d}
  return fingerprint(d, length=12)


def run_distillation(config, workdir: Optional[str] = None, *, data=None,
                     progress: bool = True) -> list:
  """Runs every (images_per_class, seed, method) of `config`; returns result rows.

  Each row: method, images_per_class, seed, support_size, krr_test_accuracy,
  krr_test_mse, (finite_test_accuracy, finite_test_loss with config.finite.enabled),
  seconds, kernel fields. With `workdir`: results.json/.csv (atomic, rewritten
  after every row; rows of a finished run with the same config are reused),
  supports/<method>_ipc<k>_seed<s>.npz, kip/ipc<k>_seed<s>/ (KIP checkpoints
  and kip_log.jsonl) and distilled_ipc<k>_seed<s>.png (config.figure).
  """
  from core.data import load_dataset
  if data is None:
    data = load_dataset(**dict(config["dataset"]))
  methods = tuple(config["methods"])
  for m in methods:
    if m not in METHODS:
      raise ValueError(f"unknown distillation method {m!r}; choose from {METHODS}")
  for ipc in config["images_per_class"]:
    check_images_per_class(data.train.labels, data.num_classes, ipc)
  if not methods or not len(config["images_per_class"]) or not len(config["seeds"]):
    raise ValueError(f"nothing to run: methods={list(methods)}, images_per_class="
                     f"{list(config['images_per_class'])}, seeds={list(config['seeds'])}; "
                     f"give at least one of each (methods from {METHODS})")
  fp = config_fingerprint(config)
  rows, done, earlier = [], {}, []
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "results.json")
    if os.path.exists(path):
      earlier = load_json(path, what="distillation results")
      for r in earlier:
        if r.get("config") == fp:
          done[(r["method"], r["images_per_class"], r["seed"])] = r
  finite_on = bool(_get(_get(config, "finite", {}), "enabled", False))
  fig_cfg = _get(config, "figure", {})
  kcfg = dict(config["kernel"])
  for ipc in config["images_per_class"]:
    for seed in config["seeds"]:
      supports = {}
      for method in methods:
        key = (method, int(ipc), int(seed))
        sup_path = os.path.join(workdir, "supports", f"{method}_ipc{ipc}_seed{seed}.npz") if workdir else None
        if key in done and sup_path and os.path.exists(sup_path):
          rows.append(done[key])
          supports[method] = load_support(sup_path)
          continue
        t0 = time.time()
        kip_dir = os.path.join(workdir, "kip", f"ipc{ipc}_seed{seed}") if workdir else None
        support = distill_support(method, data.train, int(ipc), config, seed=int(seed),
                                  workdir=kip_dir, test=data.test, progress=progress)
        row = {"dataset": data.name, "method": method, "images_per_class": int(ipc),
               "seed": int(seed), "support_size": int(len(support.x)),
               **krr_test_metrics(support, data.test, config),
               "distill_seconds": round(time.time() - t0, 2),
               "architecture": kcfg.get("architecture"), "depth": kcfg.get("depth"),
               "kernel_type": kcfg.get("kernel_type"), "config": fp}
        if method == "kip":
          row.update(kip_steps=int(config["kip"]["steps"]), kip_lr=float(config["kip"]["lr"]),
                     learn_labels=bool(_get(config["kip"], "learn_labels", False)))
        if finite_on:
          row.update(finite_network_eval(support, data, config["finite_train"], seed=int(seed),
                                          center_at_init=bool(_get(config["finite"], "center_at_init", True))))
        rows.append(row)
        supports[method] = support
        if workdir:
          save_support(sup_path, support)
          write_results(workdir, merge_rows(earlier, rows))
        if progress:
          print(json.dumps({k: row[k] for k in row if k != "config"}), flush=True)
      if (workdir and "kip" in supports and "random" in supports
          and int(ipc) == int(_get(fig_cfg, "images_per_class", 10))
          and int(seed) == int(_get(fig_cfg, "seed", 0))):
        plot_supports(supports["random"], supports["kip"],
                      os.path.join(workdir, f"distilled_ipc{ipc}_seed{seed}.png"),
                      title=f"{data.name}: {ipc} per class, KIP {kcfg.get('architecture')} "
                            f"{kcfg.get('kernel_type')} (seed {seed})")
  if workdir:
    merged = merge_rows(earlier, rows)
    write_results(workdir, merged)
    atomic_write_text(os.path.join(workdir, "summary.json"),
                      json.dumps(summarize(merged), indent=1) + "\n")
  return rows
