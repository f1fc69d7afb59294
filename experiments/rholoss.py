"""The RHO-LOSS label-noise experiment (Mindermann et al., ICML 2022) on the shared trainer.

    python scripts/rholoss.py --config=experiments/configs/mnist1d_rholoss.py --workdir=DIR

Flips a fraction of the training labels, trains the irreducible-loss (IL) model on a holdout of
the *training* split, then every (method, seed) target run with `pruning.rholoss.RhoLossSource`
as the trainer's batch source; writes il_losses.npz (score file), results.json, curves.csv and
rholoss.png, and resumes finished runs.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Optional

import numpy as np

from core.io import atomic_savefig, atomic_write_text, load_json
from pruning.label_noise import flip_labels, split_holdout
from pruning.rholoss import ILLosses, BatchSelector, RhoLossSource, il_losses_from_model

# ----------------------------------------------------------------------------
# Results: summary, files and plot.
#
# results = {"config": {...}, "methods": {method: {"seeds": {seed: run}}}, ...}
# run = {"steps": [...], "test_acc": [...], "examples_seen": [...],
#        "selection": BatchSelector.stats() or None}


METHOD_STYLE = {"rholoss": ("RHO-LOSS", "tab:red"), "uniform": ("uniform", "tab:blue"),
                "loss": ("highest loss", "tab:green"), "il": ("lowest IL loss", "tab:purple")}


def _curves(results: dict, method: str, key: str = "test_acc"):
  runs = list(results["methods"][method]["seeds"].values())
  steps = np.asarray(runs[0]["steps"])
  for r in runs:
    if len(r["steps"]) != len(steps) or not np.array_equal(r["steps"], steps):
      raise ValueError(f"{method}: seeds were evaluated at different steps")
  return steps, np.asarray([r[key] for r in runs], np.float64)


def steps_to_reach(steps: np.ndarray, acc: np.ndarray, target: float) -> Optional[int]:
  """First evaluated step whose accuracy is >= target (None if never)."""
  hit = np.nonzero(np.asarray(acc) >= target)[0]
  return int(np.asarray(steps)[hit[0]]) if len(hit) else None


def summarize(results: dict, baseline: str = "uniform") -> dict:
  """Per method: final / best mean accuracy, steps (and examples seen) to reach
  the baseline's final mean accuracy (on the seed-mean curve), noisy shares."""
  out = {}
  target = None
  if baseline in results["methods"]:
    _, acc = _curves(results, baseline)
    target = float(acc[:, -1].mean())
  for m in results["methods"]:
    steps, acc = _curves(results, m)
    _, seen = _curves(results, m, "examples_seen")
    mean = acc.mean(0)
    s = dict(final_acc_mean=float(mean[-1]), final_acc_std=float(acc[:, -1].std()),
             best_acc_mean=float(mean.max()), num_seeds=int(acc.shape[0]),
             total_steps=int(steps[-1]))
    if target is not None:
      hit = steps_to_reach(steps, mean, target)
      s["baseline_final_acc"] = target
      s["steps_to_baseline_final"] = hit
      s["examples_seen_to_baseline_final"] = (
          None if hit is None else float(seen.mean(0)[list(steps).index(hit)]))
      s["per_seed_steps_to_baseline_final"] = [steps_to_reach(steps, a, target) for a in acc]
      best = float(_curves(results, baseline)[1].mean(0).max())
      s["baseline_best_acc"] = best
      s["steps_to_baseline_best"] = steps_to_reach(steps, mean, best)
    sel = [r.get("selection") for r in results["methods"][m]["seeds"].values()]
    sel = [x for x in sel if x]
    if sel:
      s["noisy_selected_frac"] = float(np.mean([x["noisy_selected_frac"] for x in sel]))
      s["noisy_candidate_frac"] = float(np.mean([x["noisy_candidate_frac"] for x in sel]))
    out[m] = s
  return out


def write_results(results: dict, workdir: str) -> dict:
  """results.json (everything) and curves.csv (long format), both atomic."""
  paths = dict(json=os.path.join(workdir, "results.json"),
               csv=os.path.join(workdir, "curves.csv"))
  atomic_write_text(paths["json"], json.dumps(results, indent=1, default=_jsonable))
  lines = ["method,seed,step,examples_seen,test_acc"]
  for m, d in results["methods"].items():
    for seed, r in d["seeds"].items():
      for st, ex, a in zip(r["steps"], r["examples_seen"], r["test_acc"]):
        lines.append(f"{m},{seed},{int(st)},{int(ex)},{float(a):.6f}")
  atomic_write_text(paths["csv"], "\n".join(lines) + "\n")
  return paths


def _jsonable(o):
  if isinstance(o, (np.integer,)):
    return int(o)
  if isinstance(o, (np.floating,)):
    return float(o)
  if isinstance(o, np.ndarray):
    return o.tolist()
  return str(o)


def plot_results(results: dict, path: str, title: str = "") -> str:
  """Test accuracy vs gradient steps and vs examples seen (mean +- seed band,
  min..max shaded), plus the share of noisy labels among selected examples."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.0), gridspec_kw=dict(width_ratios=[1, 1, 0.7]))
  summary = summarize(results)
  for m in results["methods"]:
    label, color = METHOD_STYLE.get(m, (m, None))
    steps, acc = _curves(results, m)
    _, seen = _curves(results, m, "examples_seen")
    acc = 100 * acc
    for ax, x in ((axes[0], steps), (axes[1], seen.mean(0))):
      k = (x > 0) if ax is axes[1] else np.ones(len(x), bool)  # the log axis has no 0
      ax.plot(x[k], acc.mean(0)[k], color=color, lw=1.8, label=f"{label} ({acc.shape[0]} seeds)")
      ax.fill_between(x[k], acc.min(0)[k], acc.max(0)[k], color=color, alpha=0.18, lw=0)
  tgt = summary.get("uniform", {}).get("baseline_final_acc")
  for ax, xl in ((axes[0], "gradient steps"), (axes[1], "examples seen (incl. candidates)")):
    if tgt is not None:
      ax.axhline(100 * tgt, color="gray", ls=":", lw=1, label="uniform final acc")
    ax.set_xlabel(xl)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    lo = min(100 * _curves(results, m)[1].mean(0)[len(_curves(results, m)[0]) // 5]
             for m in results["methods"])
    ax.set_ylim(max(0, lo - 5), None)
  axes[1].set_xscale("log")
  axes[0].legend(fontsize=8, loc="lower right")
  axes[0].set_title("seed mean, band = min..max over seeds", fontsize=9)
  # noisy share among selected examples
  ms = [m for m in results["methods"] if "noisy_selected_frac" in summary[m]]
  ax = axes[2]
  if ms:
    vals = [100 * summary[m]["noisy_selected_frac"] for m in ms]
    ax.bar(range(len(ms)), vals, color=[METHOD_STYLE.get(m, (m, "gray"))[1] for m in ms])
    ax.set_xticks(range(len(ms)), [METHOD_STYLE.get(m, (m,))[0] for m in ms], fontsize=8)
    base = 100 * np.mean([summary[m]["noisy_candidate_frac"] for m in ms])
    ax.axhline(base, color="gray", ls=":", lw=1, label=f"noisy share of candidates {base:.0f}%")
    for i, v in enumerate(vals):
      ax.text(i, v, f"{v:.1f}%", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.25 * max(max(vals), base))
    ax.legend(fontsize=8, loc="upper left")
  ax.set_ylabel("noisy labels among selected (%)")
  ax.set_title("selected examples with flipped labels", fontsize=9)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return atomic_savefig(fig, path, dpi=90)


def noisy_splits(config):
  """(data with flipped training labels, noisy_ids, pool_ids, holdout_ids).

  `config.dataset` are load_dataset kwargs; `config.rholoss` holds
  noise_fraction / noise_seed / holdout_fraction / holdout_seed.
  """
  import dataclasses
  from core.data import load_dataset
  r = config.rholoss
  data = load_dataset(**dict(config.dataset))
  y, noisy = flip_labels(data.train.labels, data.train.ids, float(r.noise_fraction),
                         data.num_classes, int(r.noise_seed))
  data = dataclasses.replace(data, train=data.train.with_targets(y.astype(np.int32)))
  pool, holdout = split_holdout(data.train.ids, float(r.holdout_fraction), int(r.holdout_seed))
  return data, noisy, pool, holdout


def il_config(config):
  """Trainer config of the IL model: `config` with `config.rholoss.il` overrides,
  no selection, no checkpoints."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    del c["rholoss"]
    c.selection.candidate_batch_size = 0
    for k in ("num_steps", "num_epochs", "num_examples"):
      c[k] = None
    il = config.rholoss.il
    for k, v in il.items():
      if k == "optimizer":
        c.optimizer.update(dict(v))
      else:
        c[k] = v.to_dict() if hasattr(v, "to_dict") else v
    c.checkpoint = False
    c.eval_every_steps = 0
  return c


def train_il_model(config, data, holdout_ids, pool_ids, cache_path: Optional[str] = None,
                   log: Callable[[str], None] = print):
  """Trains the IL model on `holdout_ids` and returns (ILLosses on the pool, info).

  With `cache_path`, reuses that score file when it is for the same pool
  (fingerprint) and IL config, else computes and writes it.
  """
  from core import train
  from pruning import score_io
  cfg = il_config(config)
  pool = data.train.subset(pool_ids)
  key = score_io.config_key("il_loss", dict(il=cfg.to_dict(), holdout=np.asarray(holdout_ids)),
                            pool.fingerprint())
  if cache_path and os.path.exists(cache_path):
    il = ILLosses.load(cache_path, pool)
    if il.metadata.get("key") == key:
      log(f"reusing IL losses {cache_path}")
      return il, dict(il.metadata.get("il_model", {}))
  res = train.train_and_evaluate(cfg, None, data=data, train_ids=holdout_ids)
  info = dict(test_accuracy=res.metrics.get("test_accuracy"), steps=res.metrics.get("steps"),
              train_loss=res.metrics.get("train_loss"), num_holdout=int(len(holdout_ids)),
              model=cfg.model.to_dict())
  meta = dict(method="il_loss", dataset=data.train.name, fingerprint=pool.fingerprint(),
              num_examples=len(pool), key=key, il_model=info,
              config=score_io.to_jsonable(cfg),
              note="IL model trained on the holdout ids, losses on the pool (noisy labels)")
  il = il_losses_from_model(res.model, res.state, pool, int(cfg.eval_batch_size),
                            cfg.get("loss", "cross_entropy"), cfg.get("num_devices"), meta)
  if cache_path:
    il.save(cache_path)
  log(f"IL model: test acc {info['test_accuracy']:.4f} after {info['steps']} steps on "
      f"{len(holdout_ids)} holdout examples")
  return il, info


def run_method(config, data, pool_ids, method: str, seed: int, il: Optional[ILLosses],
               noisy_ids: np.ndarray) -> dict:
  """One target-model run; returns the curve and the selection statistics.

  'uniform' with `config.rholoss.uniform_plain` trains without a selector on
  batches of n_b (no candidate forward passes); otherwise every method draws
  n_B candidates per step and `BatchSelector(method)` picks n_b.
  """
  from core import train
  from core.predict import evaluate
  from core.state import create_train_state
  c = config.copy_and_resolve_references()
  with c.unlocked():
    del c["rholoss"]
    c.seed = int(seed)
    c.checkpoint = False
  plain = method == "uniform" and bool(config.rholoss.get("uniform_plain", True))
  selector = None if plain else BatchSelector(method, il, noisy_ids)
  if plain:
    with c.unlocked():
      c.selection.candidate_batch_size = 0
  source = None if plain else RhoLossSource(selector, int(c.selection.candidate_batch_size))
  res = train.train_and_evaluate(c, None, data=data, train_ids=pool_ids, batch_source=source)
  evals = [h for h in res.history if "test_accuracy" in h]
  acc0 = evaluate(res.model, create_train_state(c, res.model, data.example_shape, int(seed)),
                  data.test, int(c.eval_batch_size))["accuracy"]
  steps = [0] + [int(h["step"]) for h in evals]
  per_step = int(c.batch_size) if plain else int(c.selection.candidate_batch_size)
  out = dict(steps=steps, test_acc=[acc0] + [float(h["test_accuracy"]) for h in evals],
             examples_seen=[s * per_step for s in steps],
             gradient_examples=[s * int(c.batch_size) for s in steps],
             wall_time_s=float(res.metrics.get("wall_time_s", 0.0)),
             selection=selector.stats() if selector is not None else None)
  if selector is not None:  # how often each noisy / clean pool example was selected
    cnt = np.asarray([selector.selected_count.get(int(i), 0) for i in pool_ids], np.float64)
    is_noisy = np.isin(pool_ids, noisy_ids)
    out["selection"].update(
        selections_per_noisy_example=float(cnt[is_noisy].mean()) if is_noisy.any() else None,
        selections_per_clean_example=float(cnt[~is_noisy].mean()),
        noisy_examples_never_selected=int((cnt[is_noisy] == 0).sum()))
  return out


def config_fingerprint(cfg_json: dict) -> str:
  """12 hex digits naming an experiment config (its JSON form) in results.json."""
  from core.io import fingerprint
  return fingerprint(cfg_json, length=12)


def split_earlier(saved: dict, cfg_json: dict) -> tuple:
  """(the saved results of config `cfg_json` or None, {fingerprint: results} of every other
  config) from a results.json: the runs of earlier configs are kept, never dropped.

  A results.json holds the current config's runs at the top level and the other configs'
  under ``earlier_configs``; going back to an earlier config reuses its runs.
  """
  earlier = dict(saved.get("earlier_configs") or {})
  top = {k: v for k, v in saved.items() if k != "earlier_configs"}
  if top.get("config") is not None:
    earlier[top.get("config_fingerprint") or config_fingerprint(top["config"])] = top
  return earlier.pop(config_fingerprint(cfg_json), None), earlier


def run_experiment(config, workdir: Optional[str] = None,
                   log: Callable[[str], None] = print) -> dict:
  """The label-noise experiment: IL model, then every (method, seed) run.

  Writes (atomically) to `workdir`: il_losses.npz (score file), results.json,
  curves.csv, rholoss.png; results.json is rewritten after every run, and runs
  already in it (same config) are not repeated when the command is re-run. Runs of another
  config stay in results.json under ``earlier_configs[<config fingerprint>]``
  (`split_earlier`); curves.csv and rholoss.png show the current config.
  """
  import time
  from pruning import score_io
  t0 = time.time()
  r = config.rholoss
  if not len(r.methods) or not len(r.seeds):
    raise ValueError(f"nothing to run: rholoss.methods={list(r.methods)}, rholoss.seeds="
                     f"{list(r.seeds)}; give at least one of each (e.g. "
                     f"--config.rholoss.methods=uniform,rholoss)")
  data, noisy, pool, holdout = noisy_splits(config)
  noisy_pool = np.intersect1d(noisy, pool)
  log(f"{data.name}: {len(data.train)} train ({len(pool)} pool, {len(holdout)} IL holdout), "
      f"{len(noisy)} flipped labels ({len(noisy_pool)} in the pool), {len(data.test)} test")
  il, il_info = train_il_model(config, data, holdout, pool,
                               os.path.join(workdir, "il_losses.npz") if workdir else None, log)
  is_noisy = np.isin(il.ids, noisy)
  il_info.update(mean_il_loss_noisy=float(il.losses[is_noisy].mean()) if is_noisy.any() else None,
                 mean_il_loss_clean=float(il.losses[~is_noisy].mean()))
  cfg_json = score_io.to_jsonable(config)
  results = dict(config=cfg_json, config_fingerprint=config_fingerprint(cfg_json),
                 dataset=data.name, num_pool=int(len(pool)), num_holdout=int(len(holdout)),
                 num_noisy_pool=int(len(noisy_pool)), noisy_ids=noisy_pool.tolist(),
                 il_model=il_info, methods={})
  old, earlier = None, {}
  if workdir and os.path.exists(os.path.join(workdir, "results.json")):
    old, earlier = split_earlier(load_json(os.path.join(workdir, "results.json"),
                                           what="RHO-LOSS results"), cfg_json)
    if earlier:
      log(f"results.json keeps the runs of {len(earlier)} other config(s) under "
          f"earlier_configs: {sorted(earlier)}")
  results["earlier_configs"] = earlier
  for m in r.methods:
    results["methods"][m] = {"seeds": {}}
    for seed in r.seeds:
      prev = (old or {}).get("methods", {}).get(m, {}).get("seeds", {}).get(str(seed))
      if prev is not None:
        run = prev
      else:
        run = run_method(config, data, pool, m, int(seed), il, noisy_pool)
      results["methods"][m]["seeds"][str(seed)] = run
      sel = run.get("selection") or {}
      log(f"{m:8s} seed {seed}: final test acc {run['test_acc'][-1]:.4f} "
          f"({run['wall_time_s']:.0f}s)" + (
              f", noisy among selected {100 * sel['noisy_selected_frac']:.1f}% "
              f"(candidates {100 * sel['noisy_candidate_frac']:.1f}%)" if sel else ""))
      if workdir:
        write_results(results, workdir)
  results["summary"] = summarize(results)
  results["wall_time_s"] = time.time() - t0
  if workdir:
    write_results(results, workdir)
    plot_results(results, os.path.join(workdir, "rholoss.png"), title=experiment_title(results))
  return results


def experiment_title(results: dict) -> str:
  c = results["config"]
  sel = c.get("selection", {})
  return (f"{results['dataset']}: {100 * c['rholoss']['noise_fraction']:.0f}% flipped training "
          f"labels, {c['model']['name']}, n_b={c['batch_size']} of n_B="
          f"{sel.get('candidate_batch_size')} candidates; IL model on {results['num_holdout']} "
          f"held-out training examples (test acc {results['il_model'].get('test_accuracy', 0):.2f})")
