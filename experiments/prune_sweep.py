"""Pruning sweep: score -> select -> train on the kept subset -> test accuracy.

``run_sweep(config, workdir)`` runs, for each method in ``config.methods``
(``"score"`` or ``"score:mode"``, mode in hard/easy/ccs, e.g. ``"el2n:easy"``),
each keep fraction in ``config.fractions`` and each seed in ``config.seeds``,
one training of the shared trainer (`core.train.train_and_evaluate`) on the
kept ids, and records the final test accuracy.

Training budget on a subset (``config.budget``):
  * ``"steps"``  every subset trains for ``config.train.num_steps`` steps (the
    Data Diet convention: pruning saves no compute, the kept examples are
    revisited more often);
  * ``"epochs"`` every subset trains for ``config.num_epochs`` passes over
    itself (fewer steps on smaller subsets).

All kept ids are sorted before training, so with the same seed every method
trains identically at fraction 1.0: that cell is run once (method ``full``).

Files in ``workdir`` (written by process 0, atomically):
  scores/<method>-<hash>.npz   score files (reused on a rerun); scores named in
                               ``config.correlate_with`` (e.g. 'input_norm',
                               'grand@0' = GraNd at init) are computed for the
                               rank correlations only;
  cells/<cell>.json            one finished (method, fraction, seed) each: a
                               rerun skips them (resumable);
  results.json, results.csv    every cell + mean/std per (method, fraction) and
                               Spearman rank correlations between scores;
  prune_sweep.png              test error vs fraction kept, and vs number of
                               examples (log-log), mean +- std over seeds.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from typing import Optional

import ml_collections
import numpy as np

from core import data as data_lib
from core.config import set_duration
from core.cells import CellCache
from core.io import atomic_savefig, atomic_write_text
from core import parallel
from pruning import score_io, scores as scores_lib, select

BUDGETS = ("steps", "epochs")


def parse_method(spec: str) -> tuple[str, str]:
  """'el2n' -> ('el2n', 'hard'); 'el2n:easy' -> ('el2n', 'easy'); 'random' -> ('random', 'random')."""
  name, _, mode = spec.partition(":")
  if name not in scores_lib.METHODS:
    raise ValueError(f"sweep method {spec!r}: unknown score {name!r}; choose from "
                     f"{scores_lib.METHODS}")
  mode = mode or ("random" if name == "random" else "hard")
  if mode not in select.MODES:
    raise ValueError(f"sweep method {spec!r}: unknown mode {mode!r}; choose from {select.MODES}")
  return name, mode


def _cell_name(method: str, fraction: float, seed: int) -> str:
  return f"{method.replace(':', '-')}__f{fraction:.4f}__s{int(seed)}"


def train_config_for(config, n_kept: int, seed: int) -> ml_collections.ConfigDict:
  """The trainer config of one cell: seed and the training budget."""
  tc = ml_collections.ConfigDict(config.train.to_dict())
  tc.seed = int(seed)
  tc.checkpoint = False
  tc.progress_bar = False
  budget = config.get("budget", "steps")
  if budget not in BUDGETS:
    raise ValueError(f"unknown sweep budget {budget!r}; choose from {BUDGETS}")
  if budget == "steps":
    if not tc.get("num_steps"):
      raise ValueError("budget='steps' needs config.train.num_steps")
    return set_duration(tc, "num_steps", int(tc.num_steps))
  if not config.get("num_epochs"):
    raise ValueError("budget='epochs' needs config.num_epochs")
  return set_duration(tc, "num_epochs", float(config.num_epochs))


def _scoring_config(config) -> ml_collections.ConfigDict:
  sc = ml_collections.ConfigDict(config.scores.to_dict())
  if sc.get("train") is None:
    sc.train = ml_collections.ConfigDict(config.train.to_dict())
  sc.train.checkpoint = False
  sc.train.progress_bar = False
  return sc


def _score_spec(spec: str, sc):
  """'grand' -> ('grand', sc); 'grand@0' -> ('grand', sc with grand.epoch = 0)."""
  name, at, epoch = spec.partition("@")
  if name not in scores_lib.METHODS:
    raise ValueError(f"unknown score {spec!r}; choose from {scores_lib.METHODS} "
                     f"(optionally '@epoch' for el2n / grand)")
  if not at:
    return name, sc
  if name not in ("el2n", "grand"):
    raise ValueError(f"{spec!r}: '@epoch' applies to el2n and grand only")
  sc = ml_collections.ConfigDict(sc.to_dict())
  sc[name].epoch = int(epoch)
  return name, sc


def needed_scores(config) -> list:
  """The score specs a sweep computes, sorted: each method's score and config.correlate_with."""
  return sorted({parse_method(str(m))[0] for m in config.methods} |
                set(config.get("correlate_with", ())))


def compute_scores(config, data, score_dir: str, log=lambda s: None) -> dict:
  """{spec: (ScoreResult, wall seconds)} for each of `needed_scores(config)`, computed with the
  sweep's scoring config (`_scoring_config`) and cached in `score_dir` (a rerun reads them)."""
  sc = _scoring_config(config)
  out = {}
  for spec in needed_scores(config):
    t = time.time()
    name, sc_i = _score_spec(spec, sc)
    res = scores_lib.compute_scores(name, data, sc_i, cache_dir=score_dir, log=log)
    out[spec] = (res, time.time() - t)
  return out


def write_results(workdir: str, results: dict, rows: list, csv_name: str, plot_fn,
                  png_name: str, log=lambda s: None) -> None:
  """Process 0 writes workdir/results.json (`results`), `csv_name` (`rows`, the first row's
  columns) and `png_name` (``plot_fn(results, path)``), each atomically."""
  if parallel.process_index() != 0:
    return
  atomic_write_text(os.path.join(workdir, "results.json"), json.dumps(results, indent=1))
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=list(rows[0]))
  w.writeheader()
  w.writerows(rows)
  atomic_write_text(os.path.join(workdir, csv_name), buf.getvalue())
  plot_fn(results, os.path.join(workdir, png_name))
  log(f"wrote {workdir}/results.json, {csv_name}, {png_name}")


def run_sweep(config: ml_collections.ConfigDict, workdir: str, *, verbose: bool = True) -> dict:
  """Runs (or resumes) the sweep; returns the results dict also written to results.json."""
  is_main = parallel.process_index() == 0
  log = (lambda s: print(f"[sweep] {s}", flush=True)) if (verbose and is_main) else (lambda s: None)
  os.makedirs(workdir, exist_ok=True)
  methods = [str(m) for m in config.methods]
  parsed = {m: parse_method(m) for m in methods}
  fractions = [select.check_fraction(f) for f in config.fractions]
  seeds = [int(s) for s in config.seeds]
  if not methods or not fractions or not seeds:
    raise ValueError(f"nothing to sweep: methods={methods}, fractions={fractions}, "
                     f"seeds={seeds}; give at least one of each (e.g. --config.methods=el2n)")
  data = data_lib.load_dataset(**config.train.dataset.to_dict())
  train_ds = data.train
  n = len(train_ds)
  log(f"{data.name}: {n} train / {len(data.test)} test examples")

  # 1. Scores (computed once, cached under workdir/scores).
  sc = _scoring_config(config)
  results_scores = {}
  for spec, (res, seconds) in compute_scores(config, data, os.path.join(workdir, "scores"),
                                             log).items():
    results_scores[spec] = res.aligned_to(train_ds.ids)
    log(f"scores {spec}: {seconds:.1f}s")
  correlations = {}
  names = sorted(results_scores)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      correlations[f"{a}~{b}"] = scores_lib.rank_correlation(results_scores[a], results_scores[b])

  # 2. Cells.
  cells = []
  if 1.0 in fractions:
    cells += [("full", "full", 1.0, s) for s in seeds]
  for m in methods:
    for f in fractions:
      if f == 1.0:
        continue
      cells += [(m, m, f, s) for s in seeds]
  # workdir/cells/<method>__f<fraction>__s<seed>.json; a row of another config is recomputed
  cache = CellCache(os.path.join(workdir, "cells"), what="sweep cell", log=log)
  labels = train_ds.labels
  chash = score_io.config_key("sweep", {
      k: score_io.to_jsonable(config.get(k)) for k in
      ("train", "budget", "num_epochs", "class_balanced", "ccs_beta", "ccs_strata")}
      | {"scores": score_io.to_jsonable(sc)}, train_ds.fingerprint())
  rows = []
  try:
    from tqdm.auto import tqdm
    bar = tqdm(cells, desc="prune sweep", disable=not (is_main and verbose))
  except ImportError:  # pragma: no cover
    bar = cells
  from core import train as train_lib
  for label, m, f, seed in bar:
    row = cache.get(_cell_name(label, f, seed), require={"config_hash": chash})
    if row is not None:  # a corrupt cell raises CorruptFileError naming it
      rows.append(row)
      continue
    if label == "full":
      ids = train_ds.ids.copy()
    else:
      name, mode = parsed[m]
      ids = select.select_ids(results_scores[name], train_ds.ids, labels, fraction=f, mode=mode,
                              class_balanced=bool(config.get("class_balanced", False)),
                              seed=seed, ccs_beta=float(config.get("ccs_beta", 0.1)),
                              ccs_strata=int(config.get("ccs_strata", 50)))
    ids = np.sort(ids)
    tc = train_config_for(config, len(ids), seed)
    t = time.time()
    res = train_lib.train_and_evaluate(tc, None, data=data, train_ids=ids)
    row = dict(method=label, fraction=f, seed=seed, num_kept=int(len(ids)),
               test_accuracy=float(res.metrics["test_accuracy"]),
               test_loss=float(res.metrics["test_loss"]),
               train_steps=int(res.metrics["steps"]), wall_time_s=round(time.time() - t, 2),
               config_hash=chash)
    rows.append(row)
    cache.put(_cell_name(label, f, seed), row)  # process 0 writes
    if hasattr(bar, "set_postfix"):
      bar.set_postfix(last=f"{label} f={f} acc={row['test_accuracy']:.3f}")

  # 3. Summaries, files, plot.
  summary = summarize(rows)
  out = dict(dataset=data.name, num_train=n, num_test=len(data.test),
             budget=config.get("budget", "steps"), methods=methods, fractions=fractions,
             seeds=seeds, class_balanced=bool(config.get("class_balanced", False)),
             score_config=score_io.to_jsonable(sc), spearman=correlations,
             summary=summary, cells=rows)
  write_results(workdir, out, rows, "results.csv", plot, "prune_sweep.png", log)
  return out


def summarize(rows: list) -> list:
  """Mean / std (over seeds) of test accuracy per (method, fraction)."""
  groups: dict = {}
  for r in rows:
    groups.setdefault((r["method"], r["fraction"]), []).append(r)
  out = []
  for (m, f), rs in sorted(groups.items()):
    acc = np.array([r["test_accuracy"] for r in rs])
    out.append(dict(method=m, fraction=f, num_kept=rs[0]["num_kept"], num_seeds=len(rs),
                    acc_mean=float(acc.mean()), acc_std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                    err_mean=float(1 - acc.mean())))
  return out


def _plot_row(axes, results: dict, title: Optional[str] = None) -> None:
  import matplotlib.pyplot as plt
  from matplotlib.ticker import FormatStrFormatter
  summary = results["summary"]
  full = [s for s in summary if s["method"] == "full"]
  cmap = plt.get_cmap("tab10")
  for j, m in enumerate(results["methods"]):
    rows = sorted([s for s in summary if s["method"] == m] + full, key=lambda s: s["fraction"])
    f = np.array([s["fraction"] for s in rows])
    k = np.array([s["num_kept"] for s in rows])
    e = np.array([s["err_mean"] for s in rows]) * 100
    sd = np.array([s["acc_std"] for s in rows]) * 100
    style = dict(color=cmap(j % 10), marker="o", ms=3.5, capsize=2.5, lw=1.3,
                 ls="--" if m.endswith(":easy") else ("-." if m.endswith(":ccs") else "-"))
    axes[0].errorbar(f, e, yerr=sd, label=m, **style)
    axes[1].errorbar(k, e, yerr=sd, label=m, **style)
  if full:
    fe = (1 - full[0]["acc_mean"]) * 100
    for ax in axes:
      ax.axhline(fe, color="k", lw=0.8, ls=":", label="full data")
  axes[0].set_xlabel("fraction of training set kept")
  axes[0].set_ylabel("test error (%)")
  axes[0].set_xlim(1.04, 0.06)
  axes[1].set_xscale("log")
  axes[1].set_yscale("log")
  axes[0].set_yscale("log")
  kept = sorted({s["num_kept"] for s in summary})
  axes[1].set_xticks(kept)
  axes[1].xaxis.set_major_formatter(FormatStrFormatter("%g"))
  axes[1].xaxis.set_minor_formatter(FormatStrFormatter(""))
  axes[1].tick_params(axis="x", which="major", labelsize=7.5)
  for ax in axes:
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="y", which="minor", labelsize=7)
  axes[1].set_xlabel("number of training examples kept")
  axes[1].set_ylabel("test error (%)")
  for ax in axes:
    ax.grid(alpha=0.3, which="both")
  if title is None:
    title = (f"{results['dataset']} (n={results['num_train']}), "
             f"{'class-balanced' if results.get('class_balanced') else 'global'} selection, "
             f"fixed {results.get('budget')} budget, mean +- std over {len(results['seeds'])} seeds")
  axes[0].set_title(title, fontsize=9, loc="left")


def plot(results: dict, path: str) -> None:
  """Test error vs fraction kept and vs examples kept (log-log) for one sweep."""
  plot_grid([results], path)


def plot_grid(results_list: list, path: str, titles: Optional[list] = None) -> None:
  """One row of the two panels per sweep result (e.g. global vs class-balanced)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = len(results_list)
  fig, axes = plt.subplots(rows, 2, figsize=(11, 4.0 * rows), dpi=80, squeeze=False)
  for r, res in enumerate(results_list):
    _plot_row(axes[r], res, None if titles is None else titles[r])
  handles, labels = axes[0][0].get_legend_handles_labels()
  axes[0][0].legend(handles, labels, fontsize=7.5, loc="upper left", ncol=2)
  fig.tight_layout()
  atomic_savefig(fig, path)
