"""Selectors users compare against (issue #19): static selectors in the pruning sweep, their
score costs, and InfoBatch against full training at equal epochs.

``run_selectors(config, workdir)`` (config: `experiments/configs/selectors_mnist1d.py`):

  1. computes every score the sweep needs, once (the cost: wall seconds of the score
     computation, the score file's ``compute_seconds``, so a rerun that reads the cache still
     reports it; for files written before that key existed, the scorer's ``wall_time_s`` or
     the time measured here, kept in workdir/score_costs.json);
  2. runs the pruning sweep (`experiments.prune_sweep.run_sweep`) in workdir/sweep (resumable,
     the same cells, selection and budget as any sweep);
  3. trains, per seed, full training and InfoBatch (`pruning.infobatch.train_with_infobatch`) for
     the same number of epochs (cells cached in workdir/infobatch/);
  4. writes workdir/results.json, selectors.csv (accuracy mean/std per method and fraction with
     its score cost) and selectors.png.
"""
from __future__ import annotations

import json
import os
import time

import ml_collections
import numpy as np

from core import parallel
from core.cells import CellCache
from core.config import set_duration
from core.data import load_dataset
from core.io import atomic_savefig, atomic_write_text, to_jsonable
from experiments import prune_sweep
from pruning import infobatch as infobatch_lib


def score_costs(config, workdir: str, log=print) -> dict:
  """Computes (or loads) each needed score in workdir/sweep/scores; returns {spec: seconds}."""
  data = load_dataset(**config.train.dataset.to_dict())
  path = os.path.join(workdir, "score_costs.json")
  known = json.load(open(path)) if os.path.exists(path) else {}
  costs = {}
  for spec, (res, elapsed) in prune_sweep.compute_scores(
      config, data, os.path.join(workdir, "sweep", "scores"), log).items():
    if "compute_seconds" in res.meta:  # recorded by score_io.cached with the scores
      costs[spec] = float(res.meta["compute_seconds"])
    elif "wall_time_s" in res.meta:  # files written before compute_seconds existed
      costs[spec] = float(res.meta["wall_time_s"])
    elif spec in known and elapsed < 0.5 * float(known[spec]):   # a cache hit
      costs[spec] = float(known[spec])
    else:
      costs[spec] = round(elapsed, 2)
    log(f"score {spec}: cost {costs[spec]:.1f}s")
  if parallel.process_index() == 0:
    atomic_write_text(path, json.dumps({**known, **costs}, indent=1))
  return costs


def infobatch_cells(config, workdir: str, log=print) -> list:
  """Per seed: full training and InfoBatch for config.infobatch.num_epochs epochs."""
  ib = config.infobatch
  data = load_dataset(**config.train.dataset.to_dict())
  cache = CellCache(os.path.join(workdir, "infobatch"), what="infobatch cell")
  key = json.dumps(to_jsonable({"train": config.train, "infobatch": ib}), sort_keys=True)
  rows = []
  for seed in ib.seeds:
    for kind in ("full", "infobatch"):
      name = f"{kind}__s{int(seed)}"  # infobatch/<name>.json; another config's row is redone
      row = cache.get(name, require={"key": key})
      if row is not None:
        rows.append(row)
        continue
      t = time.time()
      if kind == "full":
        tc = set_duration(ml_collections.ConfigDict(config.train.to_dict()), "num_epochs",
                          float(ib.num_epochs))
        tc.update(seed=int(seed), checkpoint=False, progress_bar=False)
        from core import train as train_lib
        res = train_lib.train_and_evaluate(tc, None, data=data)
        summary = {"steps": int(res.metrics["steps"]), "steps_saved": 0}
      else:
        res, summary = infobatch_lib.train_with_infobatch(
            config.train, data, num_epochs=int(ib.num_epochs), prune_ratio=float(ib.prune_ratio),
            delta=float(ib.delta), seed=int(seed), log_every_steps=int(ib.log_every_steps))
      row = dict(kind=kind, seed=int(seed), num_epochs=int(ib.num_epochs),
                 test_accuracy=float(res.metrics["test_accuracy"]),
                 steps=int(res.metrics["steps"]), wall_time_s=round(time.time() - t, 2),
                 examples_seen=int(res.metrics["steps"]) * int(config.train.batch_size),
                 infobatch=to_jsonable(summary), key=key)
      log(f"infobatch cells: {kind} seed {seed}: acc {row['test_accuracy']:.4f}, "
          f"{row['steps']} steps, {row['wall_time_s']:.1f}s")
      rows.append(row)
      cache.put(name, row)  # process 0 writes
  return rows


def _ib_summary(rows: list) -> list:
  out = []
  for kind in ("full", "infobatch"):
    rs = [r for r in rows if r["kind"] == kind]
    if not rs:
      continue
    a = np.array([r["test_accuracy"] for r in rs])
    out.append(dict(kind=kind, num_seeds=len(rs), acc_mean=float(a.mean()),
                    acc_std=float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                    steps_mean=float(np.mean([r["steps"] for r in rs])),
                    wall_mean=float(np.mean([r["wall_time_s"] for r in rs]))))
  return out


def run_selectors(config: ml_collections.ConfigDict, workdir: str, *, verbose: bool = True):
  is_main = parallel.process_index() == 0
  log = (lambda s: print(f"[selectors] {s}", flush=True)) if (verbose and is_main) \
      else (lambda s: None)
  os.makedirs(workdir, exist_ok=True)
  t0 = time.time()
  costs = score_costs(config, workdir, log)
  sweep = prune_sweep.run_sweep(config, os.path.join(workdir, "sweep"), verbose=verbose)
  ib_rows = infobatch_cells(config, workdir, log) if config.get("infobatch") else []
  table = []
  for s in sweep["summary"]:
    name = s["method"] if s["method"] == "full" else prune_sweep.parse_method(s["method"])[0]
    table.append(dict(s, score_cost_s=costs.get(name)))
  out = dict(dataset=sweep["dataset"], num_train=sweep["num_train"], budget=sweep["budget"],
             methods=sweep["methods"], fractions=sweep["fractions"], seeds=sweep["seeds"],
             score_costs_s=costs, spearman=sweep["spearman"], summary=table,
             infobatch=dict(cells=ib_rows, summary=_ib_summary(ib_rows),
                            config=to_jsonable(config.get("infobatch"))),
             wall_time_s=round(time.time() - t0, 1))
  prune_sweep.write_results(workdir, out, table, "selectors.csv", plot, "selectors.png", log)
  return out


GROUPS = (("geometry (coresets) and proxy", ("kcenter", "herding", "facility_location",
                                             "proxy")),
          ("uncertainty and training dynamics", ("least_confidence", "entropy", "margin", "aum",
                                                 "dyn_unc", "tdds")))
BASELINES = {"random": ("k", "-"), "el2n": ("0.45", "--"), "el2n:ccs": ("0.65", ":")}


def plot(results: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.ticker import FormatStrFormatter
  summ = results["summary"]
  full = [s for s in summ if s["method"] == "full"]
  fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), dpi=80)
  cmap = plt.get_cmap("tab10")

  def curve(ax, m, **style):
    rows = sorted([s for s in summ if s["method"] == m] + full, key=lambda s: s["fraction"])
    if not rows:
      return
    f = np.array([s["fraction"] for s in rows])
    a = (1 - np.array([s["acc_mean"] for s in rows])) * 100
    sd = np.array([s["acc_std"] for s in rows]) * 100
    ax.errorbar(f, a, yerr=sd, label=m, marker="o", ms=3.5, capsize=2.5, lw=1.3, **style)

  for ax, (title, names) in zip(axes[0], GROUPS):
    for m, (col, ls) in BASELINES.items():
      if m in results["methods"]:
        curve(ax, m, color=col, ls=ls)
    for j, m in enumerate(n for n in names if n in results["methods"]):
      curve(ax, m, color=cmap(j))
    if full:
      ax.axhline((1 - full[0]["acc_mean"]) * 100, color="k", lw=0.8, ls=":", label="full data")
    ax.set_xlim(1.03, 0.05)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel("fraction kept (class-balanced)")
    ax.set_ylabel("test error (%), log scale")
    ax.set_title(f"{title}: mean +- std over {len(results['seeds'])} seeds", fontsize=9,
                 loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left")
  # cost
  ax = axes[1][0]
  costs = {k: v for k, v in results["score_costs_s"].items() if v is not None}
  names = sorted(costs, key=costs.get)
  ax.barh(range(len(names)), [max(costs[k], 1e-2) for k in names], color="tab:gray")
  ax.set_yticks(range(len(names)))
  ax.set_yticklabels(names, fontsize=8)
  ax.set_xscale("log")
  ax.set_xlabel("score cost: wall seconds (computed once for every fraction and seed)")
  ax.set_title("cost of each score on this machine", fontsize=9, loc="left")
  for i, k in enumerate(names):
    ax.text(max(costs[k], 1e-2) * 1.08, i, f"{costs[k]:.1f}s", va="center", fontsize=7)
  ax.grid(alpha=0.3, axis="x")
  # InfoBatch
  ax = axes[1][1]
  ib = results["infobatch"]["summary"]
  if ib:
    kinds = [r["kind"] for r in ib]
    acc = [r["acc_mean"] * 100 for r in ib]
    err = [r["acc_std"] * 100 for r in ib]
    ax.bar(kinds, acc, yerr=err, color=["tab:gray", "tab:green"][:len(ib)], capsize=4)
    lo = min(acc) - 3 * max(max(err), 0.3)
    ax.set_ylim(lo, max(acc) + 1.5)
    for i, r in enumerate(ib):
      ax.text(i, acc[i] + err[i] + 0.1, f"{acc[i]:.1f}%\n{r['steps_mean']:.0f} steps\n"
              f"{r['wall_mean']:.0f} s", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    cfg = results["infobatch"].get("config") or {}
    ax.set_title(f"InfoBatch (r={cfg.get('prune_ratio')}, delta={cfg.get('delta')}) vs full "
                 f"training, "
                 f"{results['infobatch']['cells'][0]['num_epochs']} epochs each", fontsize=9,
                 loc="left")
    ax.grid(alpha=0.3, axis="y")
  fig.suptitle(f"{results['dataset']} (n={results['num_train']}), fixed {results['budget']} "
               f"budget per subset", fontsize=10)
  fig.tight_layout()
  atomic_savefig(fig, path)
