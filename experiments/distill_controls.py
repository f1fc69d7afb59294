"""Distilled sets under evaluation controls: the driver, its tables and figures, and the main
job's report section.

`run_distill_controls(config, workdir)` makes every (images_per_class, seed, method) support
set of a config (distill/configs/digits_matching.py, mnist1d_matching.py; the science is in
`distill.controls`: labels, augmentation, teacher, costs) and evaluates each under every
(labels, augmentation) setting with the same finite network. `given_sets` adds sets made
elsewhere, evaluated the same way: the main job passes its best pruning rule at each budget,
so a pruned subset, random real images and every distilled set share one protocol.

Cached in the workdir: support sets (supports/<method>_ipc<k>_seed<s>.npz with their cost),
method runs (runs/, checkpointed and resumed), and result rows (results.json / .csv), each row
tagged by the fingerprint of what determines it. Rows of other configs stay in results.json
(never dropped); summary.json, table.md, controls.png and distilled_images.png are drawn from
the rows of the current config only.

    python scripts/distill_controls.py --config=distill/configs/digits_matching.py --workdir=DIR
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional, Sequence

import numpy as np

from core.config import config_value as _get
from core.io import atomic_savefig, atomic_write_text, fingerprint, load_json, write_rows
from distill import controls
from distill import synthetic
from distill.support import SupportSet, load_support, save_support

NAMES = {"random": "random real", "kip_fc": "KIP (FC NTK)", "kip_conv": "KIP (ConvNet NTK)",
         "label_solve": "Label Solve", "dd": "DD", "dc": "DC", "dsa": "DSA", "dm": "DM"}
# one colour per method in every figure (random: black dashed; pruned subsets: grey dotted)
COLORS = {"kip_fc": "C2", "kip_conv": "C8", "label_solve": "C3", "dd": "C4", "dc": "C5",
          "dsa": "C6", "dm": "C1"}
SETTINGS = (("hard", False), ("own", False), ("teacher", False), ("hard", True),
            ("own", True), ("teacher", True))


@dataclasses.dataclass(frozen=True)
class GivenSet:
  """A set made outside this driver (e.g. a pruned subset of real examples), evaluated under
  the same controls. `method` names its rows (e.g. 'pruned'), `display` labels the table
  (e.g. 'best pruning: EL2N keep-easy'), `cost` as make_support's (seconds, passes, entries)."""
  method: str
  display: str
  images_per_class: int
  seed: int
  support: SupportSet
  cost: dict

  def fingerprint(self, config) -> str:
    keep = controls.evaluation_fields(config)
    keep["given"] = {"method": self.method, "display": self.display,
                     "ids": np.sort(np.asarray(self.support.init_ids)).tolist()}
    return fingerprint(keep, length=12)


def validate_config(config, data, given_sets: Sequence[GivenSet] = ()) -> None:
  methods = tuple(config.methods)
  if not methods and not given_sets:
    raise ValueError("config.methods is empty")
  for m in methods:
    if m not in controls.METHODS:
      raise ValueError(f"unknown method {m!r}; choose from {controls.METHODS}")
  for ipc in config.images_per_class:
    synthetic.validate(data.train, ipc, "config")
  for g in given_sets:
    if g.method in controls.METHODS:
      raise ValueError(f"given set name {g.method!r} collides with a distillation method")
    if len(g.support.x) != g.images_per_class * data.num_classes:
      raise ValueError(f"given set {g.display!r}: {len(g.support.x)} examples, expected "
                       f"{g.images_per_class} per class x {data.num_classes} classes")


def _teacher_fingerprint(config) -> str:
  return fingerprint({k: config.to_dict().get(k) for k in
                      ("dataset", "finite_train_teacher", "evaluation")}, length=12)


def run_distill_controls(config, workdir: str, *, data=None, progress: bool = True,
                         given_sets: Sequence[GivenSet] = ()) -> list:
  """Every (ipc, seed, method) x controls of `config`, plus `given_sets`; returns the current
  config's result rows (cached by cell; a rerun skips finished cells)."""
  from core.data import load_dataset
  if data is None:
    data = load_dataset(**dict(config.dataset))
  validate_config(config, data, given_sets)
  os.makedirs(os.path.join(workdir, "supports"), exist_ok=True)
  teacher_fp = _teacher_fingerprint(config)
  given_fp = {(g.method, g.images_per_class, g.seed): g.fingerprint(config) for g in given_sets}

  def expected(r) -> Optional[str]:
    if r["method"] == "teacher":
      return teacher_fp
    if r["method"] in controls.METHODS:
      return controls.cell_fingerprint(config, r["method"], r["images_per_class"])
    return given_fp.get((r["method"], r["images_per_class"], r["seed"]))

  path = os.path.join(workdir, "results.json")
  old = load_json(path, what="distillation-controls results") if os.path.exists(path) else []
  rows = [r for r in old if r.get("config") == expected(r)]
  others = [r for r in old if r.get("config") != expected(r)]  # kept, not summarised
  have = {(r["method"], r["images_per_class"], r["seed"]) for r in rows if "labels" in r}
  teachers = {}
  ev = config.evaluation
  skip = {tuple(s) for s in _get(config, "skip", ())}

  def teacher_for(seed):
    if "teacher" not in ev.label_modes:
      return None
    if seed not in teachers:
      t = controls.Teacher(data, config.finite_train_teacher, seed=seed,
                           temperature=float(_get(ev, "temperature", 1.0)))
      teachers[seed] = t
      if not any(r.get("method") == "teacher" and r["seed"] == seed for r in rows):
        rows.append({"method": "teacher", "seed": int(seed), "images_per_class": -1,
                     "teacher_test_accuracy": t.test_accuracy,
                     "cost_seconds": round(t.seconds, 2),
                     "cost_example_passes": t.example_passes, "config": teacher_fp})
    return teachers[seed]

  def evaluate(method, ipc, seed, support, cost, fp, extra=None):
    for r in controls.evaluate_controls(
        support, data, config.finite_train, seed=int(seed), label_modes=tuple(ev.label_modes),
        augment_modes=tuple(ev.augment_modes), teacher=teacher_for(int(seed)),
        max_augmented_examples=int(ev.max_augmented_examples)):
      rows.append({"dataset": data.name, "method": method, "images_per_class": int(ipc),
                   "seed": int(seed), **(extra or {}), **r, **cost, "config": fp})
    write_rows(workdir, others + rows)
    if progress:
      last = [r for r in rows if r.get("method") == method and r["seed"] == seed
              and r["images_per_class"] == ipc]
      print(json.dumps({"cell": f"{method}_ipc{ipc}_seed{seed}",
                        **{f"{r['labels']}{'+aug' if r['augment'] else ''}":
                           round(r["finite_test_accuracy"], 4) for r in last},
                        "cost_s": cost["cost_seconds"]}), flush=True)

  for ipc in config.images_per_class:
    for seed in config.seeds:
      for method in config.methods:
        if ((method, int(ipc)) in skip or (method, int(ipc), int(seed)) in skip
            or (method, int(ipc), int(seed)) in have):
          continue
        fp = controls.cell_fingerprint(config, method, int(ipc))
        support, cost = _support(method, data, int(ipc), int(seed), config, fp, workdir,
                                 progress)
        evaluate(method, ipc, seed, support, cost, fp)
  for g in given_sets:
    if (g.method, g.images_per_class, g.seed) not in have:
      evaluate(g.method, g.images_per_class, g.seed, g.support, g.cost,
               given_fp[(g.method, g.images_per_class, g.seed)], extra={"display": g.display})
  write_rows(workdir, others + rows)
  write_report(workdir, config, rows, data.name)
  return rows


def _support(method, data, ipc, seed, config, fp, workdir, progress):
  """(SupportSet, cost): the cached set of this cell, or a new one (saved with its cost)."""
  tag = f"{method}_ipc{ipc}_seed{seed}"
  sup_path = os.path.join(workdir, "supports", tag + ".npz")
  cost_path = os.path.join(workdir, "supports", tag + "_cost.json")
  if os.path.exists(sup_path) and os.path.exists(cost_path):
    cost = load_json(cost_path, what="support-set cost")
    if cost.pop("config", fp) == fp:
      return load_support(sup_path), cost
  support, cost = controls.make_support(method, data, ipc, config, seed=seed,
                                        workdir=os.path.join(workdir, "runs", f"{tag}_{fp}"),
                                        progress=progress)
  save_support(sup_path, support)
  atomic_write_text(cost_path, json.dumps(dict(cost, config=fp)) + "\n")
  return support, cost


def write_report(workdir: str, config, rows: Optional[list] = None, dataset: str = "") -> list:
  """summary.json, table.md, controls.png and distilled_images.png from the rows given (default:
  results.json, every config)."""
  if rows is None:
    rows = load_json(os.path.join(workdir, "results.json"), what="distillation-controls results")
  dataset = dataset or dict(config.dataset)["name"]
  summary = summarize(rows)
  atomic_write_text(os.path.join(workdir, "summary.json"), json.dumps(summary, indent=1) + "\n")
  atomic_write_text(os.path.join(workdir, "table.md"), markdown_table(summary, config))
  plot_results(summary, config, os.path.join(workdir, "controls.png"), dataset)
  plot_images(workdir, config, os.path.join(workdir, "distilled_images.png"), dataset)
  return summary


# ----------------------------------------------------------------------------
# Summaries and figures.


def _order(method: str) -> int:
  """random first, then given sets (pruned subsets of real data), then the distillers."""
  if method == "random":
    return 0
  if method in controls.METHODS:
    return 2 + controls.METHODS.index(method)
  return 1


def summarize(rows: list) -> list:
  """Mean/std over seeds per (method, ipc, labels, augment), with mean cost."""
  groups = {}
  for r in rows:
    if "labels" not in r:
      continue
    groups.setdefault((r["method"], r["images_per_class"], r["labels"], r["augment"]), []).append(r)
  out = []
  for (m, ipc, lab, aug), rs in sorted(groups.items(), key=lambda kv: (
      kv[0][1], _order(kv[0][0]), kv[0][0], kv[0][2], kv[0][3])):
    acc = [r["finite_test_accuracy"] for r in rs]
    out.append({"method": m, "display": rs[0].get("display", NAMES.get(m, m)),
                "images_per_class": ipc, "labels": lab, "augment": aug,
                "seeds": [r["seed"] for r in rs], "acc_mean": float(np.mean(acc)),
                "acc_std": float(np.std(acc)),
                "cost_seconds": float(np.mean([r["cost_seconds"] for r in rs])),
                "cost_example_passes": float(np.mean([r["cost_example_passes"] for r in rs])),
                "cost_kernel_entries": float(np.mean([r["cost_kernel_entries"] for r in rs]))})
  return out


def _fmt_cost(s) -> str:
  # NaN: a score file written before scores recorded their compute time
  parts = [f"{s['cost_seconds']:.0f} s" if np.isfinite(s["cost_seconds"]) else "time not recorded"]
  if s["cost_example_passes"]:
    parts.append(f"{s['cost_example_passes']:.2g} passes")
  if s["cost_kernel_entries"]:
    parts.append(f"{s['cost_kernel_entries']:.2g} K entries")
  return ", ".join(parts)


def markdown_table(summary: list, config) -> str:
  """Test accuracy (%) mean ± std (n seeds) per method and ipc under each (labels, augment)."""
  idx = {(s["method"], s["images_per_class"], s["labels"], s["augment"]): s for s in summary}
  present = [st for st in SETTINGS if any((k[2], k[3]) == st for k in idx)]
  methods = sorted({s["method"] for s in summary}, key=lambda m: (_order(m), m))
  head = ["ipc", "method", "seeds"] + [f"{lab}{' + DSA aug' if aug else ''}"
                                       for lab, aug in present] + ["cost to produce"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for ipc in sorted({s["images_per_class"] for s in summary}):
    for m in methods:
      cells = [idx.get((m, int(ipc), lab, aug)) for lab, aug in present]
      if not any(cells):
        continue
      vals = [f"{100 * c['acc_mean']:.1f} ± {100 * c['acc_std']:.1f}" if c else "" for c in cells]
      any_c = next(c for c in cells if c)
      lines.append(f"| {ipc} | {any_c['display']} | {len(any_c['seeds'])} | " + " | ".join(vals)
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
  methods = sorted({s["method"] for s in summary}, key=lambda m: (_order(m), m))
  fig, axes = plt.subplots(1, len(settings), figsize=(3.6 * len(settings) + 1.6, 3.4),
                           sharey=True, squeeze=False)
  for ax, (lab, aug) in zip(axes[0], settings):
    for i, m in enumerate(methods):
      pts = sorted((s["images_per_class"], s["acc_mean"], s["acc_std"], s["display"])
                   for s in summary if s["method"] == m and s["labels"] == lab
                   and s["augment"] == aug)
      if not pts:
        continue
      x, y, e = (np.asarray([p[j] for p in pts]) for j in range(3))
      if m == "random":
        style = dict(color="k", lw=2.2, ls="--")
      elif _order(m) == 1:  # a pruned subset of real data
        style = dict(color="0.45", lw=1.8, ls=":")
      else:
        style = dict(color=COLORS.get(m, f"C{i % 10}"), lw=1.3)
      label = NAMES.get(m, m) if _order(m) != 1 else "best pruning rule"
      ax.errorbar(x, 100 * y, yerr=100 * e, marker="o", ms=3.5, capsize=2, label=label, **style)
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
  budgets = sorted(int(k) for k in config.images_per_class)
  if ipc not in budgets:  # the largest budget run below the configured one, else the smallest
    ipc = max([k for k in budgets if k <= ipc] or budgets[:1])
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


# ----------------------------------------------------------------------------
# The main job's report section.


def controls_section(summary: list, config, image_prefix: str = "",
                     workdir: Optional[str] = None) -> str:
  """Markdown section: the controls table, the figures and what it shows, from `summary`.
  With `workdir` (the run folder the figures are in) only figures that exist are linked."""
  idx = {(s["method"], s["images_per_class"], s["labels"], s["augment"]): s for s in summary}
  lines = ["## Distilled sets vs random real images and the best pruning rule, under controls",
           "",
           f"Every set below is trained by the same finite network "
           f"(`{config.finite_train.model.name}`, {config.finite_train.num_steps} steps, MSE on "
           "its targets, centred at init), with hard labels, the method's own labels, and a "
           "teacher's soft labels (a network trained on the whole training split, on the very, "
           "possibly augmented, image), each without and with DSA augmentation during that "
           "training. 'random real' is the same-size class-balanced random subset; 'best "
           "pruning' is the pruning rule (score and mode) with the best finite-network accuracy "
           "at that budget in the comparison above, its kept examples evaluated the same way. "
           "Cost: seconds to produce the set on this machine (compilation included; pruning: "
           "the score's computation) and network example passes or kernel entries.", ""]
  lines += [markdown_table(summary, config), ""]
  for ipc in sorted({s["images_per_class"] for s in summary}):
    rnd = idx.get(("random", ipc, "teacher", True)) or idx.get(("random", ipc, "hard", True))
    if rnd is None:
      continue
    setting = "teacher labels + DSA aug" if rnd["labels"] == "teacher" else "hard labels + aug"
    beat = [s["display"] for s in summary if s["images_per_class"] == ipc
            and (s["labels"], s["augment"]) == (rnd["labels"], True) and s["method"] != "random"
            and s["acc_mean"] - s["acc_std"] > rnd["acc_mean"] + rnd["acc_std"]]
    margin = ("by more than one std of both" if len(rnd["seeds"]) > 1
              else "(one seed: no spread to compare)")
    lines.append(f"- {ipc} per class, {setting}: random real images "
                 f"{100 * rnd['acc_mean']:.1f} ± {100 * rnd['acc_std']:.1f}%; above it "
                 f"{margin}: {', '.join(beat) if beat else 'none'}.")
  lines.append("")
  for name, png in (("controls", "controls.png"), ("support sets", "distilled_images.png")):
    if workdir is None or os.path.exists(os.path.join(workdir, png)):
      lines += [f"![{name}]({image_prefix}{png})", ""]
  return "\n".join(lines)
