"""Self-supervised prototypes in the pruning sweep (Sorscher et al. 2022, Sec. 6 / Fig. 5).

``run_ssl_sweep(config, workdir)`` runs the pruning sweep of `experiments.prune_sweep`
(its `run_sweep`, unchanged) several times on the same data, trainer and seeds:

  * ``baselines/``: the methods of ``config.baselines`` (random, EL2N, GraNd, forgetting,
    prototypes on PCA) and the full-data cell;
  * ``ssl_<centroids>_k<k>/``: the ``ssl_prototype`` score (k-means prototypes on the
    embedding of a self-supervised encoder, `pruning.ssl`) for each k in ``config.ssl.ks``,
    with global k-means (label-free) and with the class-conditional variant
    (``kmeans_per_class`` with k / num_classes centroids per class: the same total number of
    centroids; k = num_classes is one centroid per class, the class mean).

One encoder is trained for all of them (cached in ``encoders/<fingerprint>/``, resumable);
its linear-probe / k-NN accuracy and that of PCA / random features are reported with it.
The wall-clock cost of computing each score is measured when it is first computed
(``costs.json``; a rerun keeps the first measurement). Writes ``results.json``,
``results.md`` (the tables) and ``ssl_sweep.png``; rerunning skips finished cells.
"""
from __future__ import annotations

import json
import os
import time

import ml_collections

from core import parallel
from core.data import load_dataset
from core.io import atomic_savefig, atomic_write_text
from experiments import prune_sweep
from pruning import scores as scores_lib

CENTROIDS = ("kmeans", "kmeans_per_class")


def _copy(c) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(c.to_dict())


def variants(config, num_classes: int) -> list:
  """(label, folder, ssl_prototype sub-config) for every (centroids, k)."""
  out = []
  for cen in config.ssl.centroids:
    if cen not in CENTROIDS:
      raise ValueError(f"ssl.centroids: unknown {cen!r}; choose from {CENTROIDS}")
    for k in config.ssl.ks:
      k = int(k)
      per = 1
      if cen == "kmeans_per_class":
        if k % num_classes:
          raise ValueError(f"class-conditional k={k} is not a multiple of the {num_classes} "
                           f"classes")
        per = num_classes
      label = f"ssl k={k}" if cen == "kmeans" else f"ssl/class k={k}"
      out.append((label, f"ssl_{cen}_k{k}",
                  dict(encoder=config.ssl.encoder.to_dict(), k=k // per, centroids=cen,
                       n_init=int(config.ssl.n_init))))
  return out


def _timed_scores(cfg, data, workdir, costs, key, log):
  """Computes (or loads) every score the sub-sweep needs, timing first computations."""
  sc = prune_sweep._scoring_config(cfg)
  for spec in sorted({prune_sweep.parse_method(m)[0] for m in cfg.methods}):
    name, sc_i = prune_sweep._score_spec(spec, sc)
    t = time.time()
    res = scores_lib.compute_scores(name, data, sc_i, cache_dir=os.path.join(workdir, "scores"),
                                    log=log)
    dt = time.time() - t
    ck = f"{key}:{spec}"
    if ck not in costs:
      costs[ck] = dict(wall_time_s=round(dt, 1), **{k: res.meta[k] for k in (
          "encoder_time_s", "kmeans_time_s") if k in res.meta})


def run_ssl_sweep(config: ml_collections.ConfigDict, workdir: str, *, verbose: bool = True) -> dict:
  is_main = parallel.process_index() == 0
  log = (lambda s: print(f"[ssl_sweep] {s}", flush=True)) if (verbose and is_main) else (
      lambda s: None)
  os.makedirs(workdir, exist_ok=True)
  base = _copy(config.sweep)
  data = load_dataset(**base.train.dataset.to_dict())
  costs_path = os.path.join(workdir, "costs.json")
  costs = {}
  if os.path.exists(costs_path):
    with open(costs_path) as fh:
      costs = json.load(fh)

  def save_costs():
    atomic_write_text(costs_path, json.dumps(costs, indent=1))

  encoder_dir = os.path.join(os.path.abspath(workdir), "encoders")
  runs = {}
  # 1. SSL variants first (the encoder is trained once, by the first).
  for label, folder, sub in variants(config, data.num_classes):
    cfg = _copy(base)
    cfg.methods = ("ssl_prototype",)
    cfg.fractions = tuple(f for f in base.fractions if f != 1.0)
    cfg.correlate_with = ()
    cfg.scores.ssl_prototype = ml_collections.ConfigDict(sub | {"encoder_dir": encoder_dir})
    sub_dir = os.path.join(workdir, folder)
    _timed_scores(cfg, data, sub_dir, costs, folder, log)
    save_costs()
    runs[label] = prune_sweep.run_sweep(cfg, sub_dir, verbose=verbose)
  # 2. Baselines and full data.
  cfg = _copy(base)
  cfg.methods = tuple(config.baselines)
  _timed_scores(cfg, data, os.path.join(workdir, "baselines"), costs, "baselines", log)
  save_costs()
  runs["baselines"] = prune_sweep.run_sweep(cfg, os.path.join(workdir, "baselines"),
                                            verbose=verbose)

  # 3. Merge.
  rows = []
  for label, res in runs.items():
    for s in res["summary"]:
      m = s["method"] if label == "baselines" else label
      rows.append(dict(s, method=m))
  from pruning import ssl
  enc_info = None
  fp = ssl.encoder_fingerprint(config.ssl.encoder, data.train.x, data.train.ids)
  p = os.path.join(encoder_dir, fp, "encoder.json")   # the sweep's encoder (not other seeds)
  if os.path.exists(p):
    with open(p) as fh:
      info = json.load(fh)
    enc_info = {k: info[k] for k in ("fingerprint", "objective", "dim", "probe",
                                     "baselines", "train_metrics", "embed_time_s")}
  out = dict(dataset=data.name, num_train=len(data.train), num_test=len(data.test),
             fractions=[float(f) for f in base.fractions], seeds=list(base.seeds),
             ks=[int(k) for k in config.ssl.ks], encoder=enc_info, costs=costs,
             summary=rows, spearman=runs["baselines"].get("spearman", {}))
  if is_main:
    atomic_write_text(os.path.join(workdir, "results.json"), json.dumps(out, indent=1))
    atomic_write_text(os.path.join(workdir, "results.md"), tables(out))
    plot(out, os.path.join(workdir, "ssl_sweep.png"))
    log(f"wrote {workdir}/results.json, results.md, ssl_sweep.png")
  return out


def _cell(rows, method, f):
  for r in rows:
    if r["method"] == method and abs(r["fraction"] - f) < 1e-9:
      return f"{100 * r['acc_mean']:.1f} ± {100 * r['acc_std']:.1f}"
  return ""


def tables(out: dict) -> str:
  """Markdown: accuracy tables (baselines, SSL global, SSL class-conditional), costs."""
  rows = out["summary"]
  fr = [f for f in out["fractions"] if f != 1.0]
  head = "| method | " + " | ".join(f"f={f:g}" for f in fr) + " |\n|---|" + "---|" * len(fr) + "\n"
  lines = [f"Test accuracy (%), mean ± std over {len(out['seeds'])} seeds, class-balanced "
           f"keep-hard; full data {_cell(rows, 'full', 1.0)}.", "", head.rstrip("\n")]
  order = [m for m in ("random", "el2n", "grand", "forgetting", "prototype")
           if any(r["method"] == m for r in rows)]
  order += [f"ssl k={k}" for k in out["ks"]] + [f"ssl/class k={k}" for k in out["ks"]]
  names = {"prototype": "prototype (PCA, k=10)", "el2n": "EL2N", "grand": "GraNd",
           "forgetting": "forgetting"}
  for m in order:
    if any(r["method"] == m for r in rows):
      lines.append(f"| {names.get(m, m)} | " + " | ".join(_cell(rows, m, f) for f in fr) + " |")
  enc = out.get("encoder")
  if enc:
    lines += ["", f"Encoder ({enc['objective']}, {enc['dim']}-d backbone features, "
              f"{enc['train_metrics']['steps']} steps, "
              f"{enc['train_metrics']['wall_time_s']:.0f} s): linear probe "
              f"{100 * enc['probe']['linear_probe']:.1f}%, k-NN {100 * enc['probe']['knn']:.1f}%"
              + "".join(f"; {k}: {100 * v['linear_probe']:.1f}% / {100 * v['knn']:.1f}%"
                        for k, v in enc["baselines"].items())]
  lines += ["", "| score | wall-clock to compute (s) |", "|---|---|"]
  enc_row = False
  for k, v in out["costs"].items():
    if "encoder_time_s" in v:
      if not enc_row:
        lines.append(f"| SSL encoder (train + embed, once for every k) | "
                     f"{v['encoder_time_s']:.0f} |")
        enc_row = True
      lines.append(f"| {k}: k-means | {v['kmeans_time_s']:.1f} |")
    else:
      lines.append(f"| {k} | {v['wall_time_s']:.1f} |")
  return "\n".join(lines) + "\n"


def plot(out: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = out["summary"]
  fr = sorted({r["fraction"] for r in rows if r["fraction"] != 1.0})
  ks = out["ks"]
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), dpi=90)
  ax = axes[0]
  cmap = plt.get_cmap("tab10")
  show = [m for m in ("random", "el2n", "grand", "forgetting", "prototype")
          if any(r["method"] == m for r in rows)]
  mid = ks[len(ks) // 2]
  show += [f"ssl k={mid}", f"ssl/class k={mid}"]
  for j, m in enumerate(show):
    rs = sorted([r for r in rows if r["method"] == m], key=lambda r: r["fraction"])
    if not rs:
      continue
    ax.errorbar([r["fraction"] for r in rs], [100 * r["acc_mean"] for r in rs],
                yerr=[100 * r["acc_std"] for r in rs], marker="o", ms=4, capsize=2.5,
                color=cmap(j), ls="--" if m.startswith("ssl") else "-",
                label={"prototype": "prototype (PCA)"}.get(m, m))
  full = [r for r in rows if r["method"] == "full"]
  if full:
    ax.axhline(100 * full[0]["acc_mean"], color="k", ls=":", lw=0.9, label="full data")
  ax.set_xlabel("fraction kept (class-balanced, keep hard)")
  ax.set_ylabel("test accuracy (%)")
  ax.set_xlim(max(fr) + 0.05, min(fr) - 0.05)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7.5)
  ax.set_title(f"{out['dataset']} n={out['num_train']}: methods, mean ± std over "
               f"{len(out['seeds'])} seeds", fontsize=9, loc="left")
  ax = axes[1]
  for i, f in enumerate(fr):
    for cen, ls, mk in (("ssl k=", "-", "o"), ("ssl/class k=", "--", "s")):
      pts = [(k, r) for k in ks for r in rows
             if r["method"] == f"{cen}{k}" and abs(r["fraction"] - f) < 1e-9]
      if pts:
        ax.errorbar([k for k, _ in pts], [100 * r["acc_mean"] for _, r in pts],
                    yerr=[100 * r["acc_std"] for _, r in pts], color=cmap(i), ls=ls, marker=mk,
                    ms=4, capsize=2.5,
                    label=f"f={f:g} {'global' if cen == 'ssl k=' else 'class-cond.'} k-means")
    for m, lss in (("el2n", (0, (1, 1))), ("random", (0, (4, 2)))):
      r = [r for r in rows if r["method"] == m and abs(r["fraction"] - f) < 1e-9]
      if r:
        ax.axhline(100 * r[0]["acc_mean"], color=cmap(i), ls=lss, lw=0.9, alpha=0.8)
  ax.set_xscale("log")
  ax.set_xticks(ks)
  ax.set_xticklabels([str(k) for k in ks])
  ax.set_xlabel("k (total number of centroids)")
  ax.set_ylabel("test accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  ax.set_title("SSL prototypes vs k (dotted: EL2N, dashed thin: random, same f)", fontsize=9,
               loc="left")
  fig.tight_layout()
  atomic_savefig(fig, path)
