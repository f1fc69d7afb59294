"""Beyond power-law scaling, measured: test error vs examples kept across pool sizes.

Sorscher, Geirhos, Shekhar, Ganguli, Morcos (NeurIPS 2022), "Beyond neural scaling laws:
beating power law scaling via data pruning", Fig. 3: with random data the test error falls as a
power law in the number of examples, eps ~ a k^b; keeping the hardest fraction f of a larger
pool P (k = f P kept) with a good difficulty metric can beat it, and the Pareto frontier over f
can fall faster than any power law. This module measures that on MNIST-1D, beside the replica
theory of the teacher-student perceptron (`theory.replica`, `theory.frontier`).

Grid (config: experiments/configs/scaling_mnist1d.py)
  * one MNIST-1D generation, a fixed test set of ``dataset.num_test`` examples (never used
    for any choice);
  * nested pools: one shuffled order of the generated training ids (``pool_seed``); pool P =
    its first P ids; a ``val_fraction`` of each pool (every 10th position of the order for
    0.1, so the validation splits are nested too) is the pool's validation split, the rest
    (n_P ids) is what is scored and pruned;
  * scores per pool (`pruning.scores.compute_scores` on a DatasetSplits whose train split is
    the pool's n_P ids and whose test split is the pool's validation split), from models
    trained on that pool only, cached under ``workdir/scores`` and computed lazily (a rerun
    whose cells are all cached trains nothing); ``ssl_prototype`` (the paper's metric) trains
    its self-supervised encoder on the pool's n_P training inputs (labels never read; the
    linear probe of its metadata reads the validation labels afterwards) and scores by the
    distance to the nearest k-means centroid of that embedding;
  * for every keep fraction f, metric, keep rule (hard / easy; random has one rule) and seed:
    `pruning.select.select_ids` (class-balanced) keeps k = f n_P ids and the shared trainer
    (`core.train.train_and_evaluate`, collective over devices and hosts) trains the network.
    f = 1 keeps the whole pool for every metric: it is trained once per (pool, seed).

Training budget per kept set (``budget``): steps = max(min_steps, epochs * k / batch), rounded
up to a whole number of epochs. Large sets get a fixed number of epochs (``epochs``, enough for
the MNIST-1D CNN to reach its plateau at 16k examples), small sets a floor of ``min_steps``
optimizer steps, so a 90-example set is not stopped after a dozen steps. The learning-rate
schedule (cosine) spans the whole run. Checkpoint choice: the validation split is evaluated
``num_evals`` times, evenly over the run (at epoch ends); the state with the best validation
accuracy (ties: lower validation loss, then later) gives ``test_error``; the final state's
error is ``test_error_final``. Every row records fraction kept, examples kept, optimizer
steps, examples seen (steps x batch) and epochs.

Analysis (pure numpy on the rows; `analyze`)
  1. power law on f = 1: log eps = log a + b log k, least squares over the pool means; a
     bootstrap over seeds (resampled within each pool) gives the interval of b;
  2. Pareto frontier per metric: at each k of a log grid, min over (f, keep) of the curves
     eps_{f,keep}(k) (log-log interpolation between pools, never extrapolated), against the
     f = 1 power law: ratio frontier / (a k^b), and local slopes d log eps / d log k;
  3. the replica theory (theta = 0 and theta > 0) for the same f: (a) per f the pool size where
     keep-hard starts beating keep-easy (measured, interpolated in log P) beside the theory's
     crossover alpha_prune (`frontier.crossover_alpha`); (b) the best f on the frontier vs k;
     (c) each metric's gain over the power law (a weaker metric should gain less);
  4. stretch: fit eps_meas = c * eps_theory(alpha = k / N_eff; f, theta, keep) (N_eff, theta, c)
     on the smaller half of the pools, predict the larger half (keep winner per f, best
     (f, keep) per pool, errors).

Entry points: ``run_scaling(config, workdir) -> results``; ``scaling_section(results,
image_prefix=None) -> markdown``; ``quick_scaling_config()`` (the `:quick` grid, a few minutes
on 2 CPU cores, for the main job's report). Multi-host: every process runs the same cells in
the same order (training and evaluation are collective in `core.train`, scoring is split by
`pruning.scores`); only process 0 writes.

Files in ``workdir`` (process 0 writes, atomically, via core.io):
  scores/        score files (reused);        cells/<key>.json  one trained cell (reused);
  theory.json    the theory tables (reused);  results.csv / results.json;
  scaling_curves.png, scaling_frontier.png.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from typing import Callable, Optional

import ml_collections
import numpy as np

from core import io as core_io
from core.cells import CellCache
from core import parallel
from core.data import DatasetSplits, load_dataset
from core.train import evaluate, train_and_evaluate
from pruning import scores as scores_lib
from pruning import select

KEEPS = ("hard", "easy")
METRIC_LABELS = {"prototype": "prototype (PCA)", "el2n": "EL2N", "forgetting": "forgetting",
                 "random": "random", "grand": "GraNd", "ssl_prototype": "prototype (SSL)",
                 "input_norm": "input norm"}


class ScalingConfigError(ValueError):
  """A scaling config that cannot run (raised before any training)."""


def metric_label(m: str) -> str:
  return METRIC_LABELS.get(m, m)


def _known_methods() -> tuple:
  reg = getattr(scores_lib, "SCORERS", None)
  return tuple(reg) if reg else tuple(scores_lib.METHODS)


# ----------------------------------------------------------------------------
# Config checks, pools, budget.


def validate_config(config, num_generated: Optional[int] = None) -> None:
  """Raises ScalingConfigError naming the bad value; called before any data or training."""
  err = ScalingConfigError
  fr = list(config.fractions)
  if not fr:
    raise err("config.fractions is empty: give keep fractions in (0, 1], e.g. (1.0, 0.5, 0.2)")
  for f in fr:
    try:
      select.check_fraction(f)
    except ValueError:
      raise err(f"config.fractions: keep fraction f={f!r} must lie in (0, 1]") from None
  if len(set(map(float, fr))) != len(fr):
    raise err(f"config.fractions has duplicates: {tuple(fr)}")
  metrics = list(config.metrics)
  if not metrics:
    raise err("config.metrics is empty: name at least one score method, e.g. "
              "('random', 'el2n')")
  known = _known_methods()
  bad = [m for m in metrics if m not in known]
  if bad:
    raise err(f"config.metrics: unknown score method(s) {bad}; choose from {known}")
  if "ssl_prototype" in metrics:
    sub = config.scores.get("ssl_prototype")
    if sub is None or sub.get("encoder") is None:
      raise err("metric 'ssl_prototype' needs config.scores.ssl_prototype.encoder, an encoder "
                "config such as pruning/configs/mnist1d_ssl.py (experiments/configs/"
                "scaling_mnist1d.py sets one)")
  keeps = list(config.keeps)
  if any(k not in KEEPS for k in keeps) or (not keeps and any(m != "random" for m in metrics)):
    raise err(f"config.keeps={tuple(keeps)}: choose a non-empty subset of {KEEPS}")
  pools = list(config.pools)
  if not pools:
    raise err("config.pools is empty: give pool sizes, e.g. (1000, 2000, 4000)")
  if any(int(p) != p or p < 1 for p in pools) or sorted(set(pools)) != pools:
    raise err(f"config.pools={tuple(pools)} must be distinct positive integers in increasing "
              f"order")
  n_gen = int(num_generated if num_generated is not None else config.dataset.num_train)
  if pools[-1] > n_gen:
    raise err(f"pool P={pools[-1]} is larger than the generated training set "
              f"(dataset.num_train={n_gen}); raise config.dataset.num_train or drop the pool")
  v = float(config.val_fraction)
  if not 0.0 < v <= 0.5:
    raise err(f"config.val_fraction={v} must lie in (0, 0.5]")
  if not list(config.seeds):
    raise err("config.seeds is empty: give at least one seed")
  b = config.budget
  if not float(b.epochs) > 0 or int(b.min_steps) < 1 or int(b.num_evals) < 1:
    raise err(f"config.budget={b.to_dict()}: epochs > 0, min_steps >= 1, num_evals >= 1")
  n_small = pools[0] - math.ceil(pools[0] * v)
  k_small = select.num_keep(min(fr), n_small)
  if k_small < 10:
    raise err(f"pool {pools[0]} with f={min(fr)} keeps only {k_small} examples (fewer than one "
              f"per class); use larger pools or larger keep fractions")


def make_pools(train_ids: np.ndarray, pools, pool_seed: int, val_fraction: float) -> list:
  """Nested pools: dict(pool, ids (n_P,), val_ids) for each pool size, sorted ids.

  Position i of one shuffled order goes to validation iff floor((i+1) v) > floor(i v)
  (a fraction v of every prefix, the same positions for every pool).
  """
  order = np.asarray(train_ids)[np.random.default_rng(int(pool_seed)).permutation(len(train_ids))]
  i = np.arange(len(order))
  is_val = np.floor((i + 1) * val_fraction + 1e-9) > np.floor(i * val_fraction + 1e-9)
  out = []
  for p in pools:
    p = int(p)
    out.append(dict(pool=p, ids=np.sort(order[:p][~is_val[:p]]),
                    val_ids=np.sort(order[:p][is_val[:p]])))
  return out


def budget_steps(n: int, batch_size: int, budget) -> int:
  """max(min_steps, epochs * n / batch), rounded up to whole epochs of ceil(n / batch) steps."""
  spe = math.ceil(int(n) / int(batch_size))
  want = max(int(budget.min_steps), math.ceil(float(budget.epochs) * int(n) / int(batch_size)))
  return spe * math.ceil(want / spe)


def train_config_for(config, n: int, seed: int) -> ml_collections.ConfigDict:
  tc = ml_collections.ConfigDict(config.train.to_dict())
  tc.seed = int(seed)
  tc.num_steps = budget_steps(n, int(tc.batch_size), config.budget)
  tc.num_epochs = None
  tc.num_examples = None
  tc.checkpoint = False
  tc.progress_bar = False
  return tc


def score_config_for(config, n_pool: int) -> ml_collections.ConfigDict:
  """The pool's scoring config: its own training run (the cell budget at f = 1), EL2N after
  ``el2n_epoch_fraction`` of that run's epochs."""
  sc = ml_collections.ConfigDict(config.scores.to_dict())
  sc.train = train_config_for(config, n_pool, 0)
  spe = math.ceil(n_pool / int(sc.train.batch_size))
  epochs = sc.train.num_steps // spe
  sc.el2n.epoch = max(1, int(round(float(config.el2n_epoch_fraction) * epochs)))
  return sc


# Trainer fields that do not change a cell's numbers (logging, checkpointing, resuming): left
# out of cache keys, so a new operational option does not invalidate finished cells.
OPERATIONAL = ("checkpoint", "checkpoint_every_steps", "max_checkpoints", "progress_bar",
               "log_every_steps", "resume", "eval_every_steps", "stop_after_steps",
               "eval_batch_size", "dataset")


def result_fields(tc) -> dict:
  d = core_io.to_jsonable(tc)
  return {k: v for k, v in d.items() if k not in OPERATIONAL}


def score_key(sc, metric: str) -> dict:
  """What a metric's scores depend on: its own options, the score seed and its training run."""
  return dict(method=metric, sub=core_io.to_jsonable(sc[metric]), seed=int(sc.seed),
              train=result_fields(sc.train))


def cell_specs(config) -> list:
  """(metric, keep) pairs: random has the single rule 'random'."""
  out = []
  for m in config.metrics:
    if m == "random":
      out.append(("random", "random"))
    else:
      out += [(m, k) for k in config.keeps]
  return out


# ----------------------------------------------------------------------------
# One cell.


def train_cell(tc, data: DatasetSplits, val, ids, num_evals: int, model) -> dict:
  """Trains on `ids` of data.train; returns test error at the best-validation checkpoint."""
  n = len(ids)
  spe = math.ceil(n / int(tc.batch_size))
  total = int(tc.num_steps)
  marks = sorted({spe * math.ceil(total * (j + 1) / num_evals / spe) for j in range(num_evals)})
  bs = int(tc.eval_batch_size)
  best = dict(key=None, state=None, step=None, val=None)
  evals = []

  def cb(epoch, state):
    step = epoch * spe
    if step not in marks:
      return
    ev = evaluate(model, state, val, bs, num_devices=tc.get("num_devices"))
    evals.append(dict(step=step, val_accuracy=ev["accuracy"], val_loss=ev["loss"]))
    key = (ev["accuracy"], -ev["loss"], step)
    if best["key"] is None or key > best["key"]:
      best.update(key=key, state=state, step=step, val=ev)

  t0 = time.time()
  res = train_and_evaluate(tc, None, data=data, train_ids=ids, epoch_callback=cb)
  te = evaluate(model, best["state"], data.test, bs, num_devices=tc.get("num_devices"))
  steps = int(res.metrics["steps"])
  return dict(num_kept=n, num_steps=steps, batch_size=int(tc.batch_size),
              examples_seen=steps * int(tc.batch_size), epochs=round(steps / spe, 3),
              best_step=int(best["step"]), val_error=1.0 - best["val"]["accuracy"],
              test_error=1.0 - te["accuracy"], test_loss=te["loss"],
              test_error_final=1.0 - float(res.metrics["test_accuracy"]),
              wall_time_s=round(time.time() - t0, 2), evals=evals)


# ----------------------------------------------------------------------------
# The run.


def run_scaling(config: ml_collections.ConfigDict, workdir: str, *, verbose: bool = True,
                log: Optional[Callable[[str], None]] = None) -> dict:
  """Runs (or resumes from the cell cache) the scaling grid; writes and returns the results."""
  validate_config(config)
  is_main = parallel.process_index() == 0
  if log is None:
    log = (lambda s: print(f"[scaling] {s}", flush=True)) if (verbose and is_main) \
        else (lambda s: None)
  t_start = time.time()
  os.makedirs(workdir, exist_ok=True)
  data = load_dataset(**config.dataset.to_dict())
  validate_config(config, len(data.train))
  from core.models import create_model
  model = create_model(config.train.model, num_classes=data.num_classes)
  pools = make_pools(data.train.ids, config.pools, config.pool_seed, float(config.val_fraction))
  base_fp = data.train.fingerprint() + data.test.fingerprint()
  fractions = [float(f) for f in config.fractions]
  specs = cell_specs(config)
  seeds = [int(s) for s in config.seeds]
  log(f"{data.name}: {len(data.train)} generated / {len(data.test)} test; pools "
      f"{[p['pool'] for p in pools]}; f {fractions}; {len(specs)} metric/keep rules; "
      f"seeds {seeds}")
  cache = CellCache(os.path.join(workdir, "cells"), what="scaling cell")
  score_dir = os.path.join(workdir, "scores")
  cells, rows = [], []
  n_trained = n_cached = 0
  t_train = 0.0
  for pool in pools:
    P, ids = pool["pool"], pool["ids"]
    pool_data = DatasetSplits(train=data.train.subset(ids), test=data.test,
                              num_classes=data.num_classes, name=data.name)
    val = data.train.subset(pool["val_ids"])
    labels = pool_data.train.labels
    pool_fp = core_io.fingerprint(base_fp, ids, pool["val_ids"])
    sc = score_config_for(config, len(ids))
    score_cache: dict = {}

    def pool_scores(metric, sc=sc, pool_data=pool_data, P=P, score_cache=score_cache):
      if metric not in score_cache:
        t = time.time()
        scd = DatasetSplits(train=pool_data.train, test=val, num_classes=data.num_classes,
                            name=f"{data.name}-pool{P}")
        r = scores_lib.compute_scores(metric, scd, sc, cache_dir=score_dir, log=log)
        score_cache[metric] = r.aligned_to(pool_data.train.ids)
        log(f"pool {P}: {metric} scores ready ({time.time() - t:.1f}s)")
      return score_cache[metric]

    for seed in seeds:
      for f in fractions:
        groups = [("full", "full")] if f == 1.0 else specs
        for metric, keep in groups:
          tc = train_config_for(config, select.num_keep(f, len(ids)), seed)
          key_obj = dict(pool=pool_fp, f=f, metric=metric, keep=keep, seed=seed,
                         train=result_fields(tc), budget=config.budget.to_dict(),
                         class_balanced=bool(config.class_balanced),
                         scores=None if metric in ("full", "random") else
                         score_key(sc, metric))
          key = core_io.fingerprint(key_obj)
          name = f"P{P}_f{f:.3f}_{metric}-{keep}_s{seed}_{key}"  # cells/<name>.json
          cell = cache.get(name)  # a corrupt cell raises CorruptFileError naming it
          if cell is not None:
            n_cached += 1
          else:
            if metric == "full":
              kept = ids
            else:
              s = np.zeros(len(ids)) if metric == "random" else pool_scores(metric)
              kept = np.sort(select.select_ids(
                  s, ids, labels, fraction=f, mode="random" if metric == "random" else keep,
                  class_balanced=bool(config.class_balanced), seed=seed))
            tc = train_config_for(config, len(kept), seed)
            out = train_cell(tc, pool_data, val, kept, int(config.budget.num_evals), model)
            cell = dict(pool=P, num_pool=len(ids), num_val=len(pool["val_ids"]), fraction=f,
                        metric=metric, keep=keep, seed=seed, key=key, **out)
            cache.put(name, cell)  # process 0 writes
            n_trained += 1
            t_train += cell["wall_time_s"]
            log(f"P={P} f={f:g} {metric}:{keep} seed {seed}: k={cell['num_kept']} "
                f"{cell['num_steps']} steps, test error {cell['test_error']:.4f} "
                f"({cell['wall_time_s']:.1f}s; {time.time() - t_start:.0f}s total)")
          cells.append(cell)
          expand = specs if metric == "full" else [(metric, keep)]
          for m, k in expand:
            r = {c: cell[c] for c in ROW_FIELDS if c in cell}
            r.update(metric=m, keep=k, shared_full_cell=metric == "full")
            rows.append(r)
  log(f"{n_trained} cells trained ({t_train:.0f}s), {n_cached} from the cache")
  results = dict(config=core_io.to_jsonable(config), dataset=data.name,
                 num_generated=len(data.train), num_test=len(data.test),
                 pools=[p["pool"] for p in pools], fractions=fractions,
                 metrics=list(config.metrics), keeps=list(config.keeps), seeds=seeds,
                 rows=rows, cells_trained=n_trained, cells_cached=n_cached)
  results["analysis"] = analyze(results, config, workdir, log=log)
  results["wall_time_s"] = round(time.time() - t_start, 1)
  if is_main:
    write_outputs(results, workdir)
    log(f"wrote {workdir}/results.csv, results.json, scaling_curves.png, scaling_frontier.png "
        f"({results['wall_time_s']:.0f}s)")
  return results


ROW_FIELDS = ("pool", "num_pool", "num_val", "fraction", "metric", "keep", "seed", "num_kept",
              "num_steps", "batch_size", "examples_seen", "epochs", "best_step", "val_error",
              "test_error", "test_error_final", "test_loss", "wall_time_s", "key")


def write_outputs(results: dict, workdir: str) -> None:
  buf = io.StringIO()
  fields = list(ROW_FIELDS) + ["shared_full_cell"]
  w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
  w.writeheader()
  w.writerows(results["rows"])
  core_io.atomic_write_text(os.path.join(workdir, "results.csv"), buf.getvalue())
  core_io.atomic_write_text(os.path.join(workdir, "results.json"),
                            json.dumps(core_io.to_jsonable(results), indent=1))
  plot_curves(results, os.path.join(workdir, "scaling_curves.png"))
  plot_frontier(results, os.path.join(workdir, "scaling_frontier.png"))
  core_io.atomic_write_text(os.path.join(workdir, "report.md"), scaling_section(results))


def quick_scaling_config() -> ml_collections.ConfigDict:
  """The small grid for the main job's report (`:quick`: a few minutes on 2 cores, cached)."""
  from experiments.configs import scaling_mnist1d
  return scaling_mnist1d.get_config("quick")


# ----------------------------------------------------------------------------
# Analysis (pure numpy on rows).


def summarize(rows: list) -> list:
  """Mean, std, s.e.m. of test error over seeds per (metric, keep, pool, fraction)."""
  groups: dict = {}
  for r in rows:
    groups.setdefault((r["metric"], r["keep"], r["pool"], r["fraction"]), []).append(r)
  out = []
  for (m, k, p, f), rs in sorted(groups.items()):
    e = np.array([r["test_error"] for r in rs], float)
    out.append(dict(metric=m, keep=k, pool=p, fraction=f, num_kept=rs[0]["num_kept"],
                    num_pool=rs[0]["num_pool"], num_steps=rs[0]["num_steps"],
                    examples_seen=rs[0]["examples_seen"], num_seeds=len(rs),
                    err_mean=float(e.mean()), err_std=float(e.std(ddof=1)) if len(e) > 1 else 0.0,
                    err_sem=float(e.std(ddof=1) / np.sqrt(len(e))) if len(e) > 1 else 0.0))
  return out


def fit_power_law(k, err) -> tuple:
  """Least squares log err = log a + b log k -> (a, b)."""
  b, la = np.polyfit(np.log(np.asarray(k, float)), np.log(np.asarray(err, float)), 1)
  return float(np.exp(la)), float(b)


def power_law_bootstrap(rows: list, n_boot: int = 1000, seed: int = 0) -> dict:
  """Power law on the f = 1 cells (one per pool and seed): fit on pool means, and a bootstrap
  over seeds (resampled with replacement within each pool) for the exponent's 95% interval."""
  full = {}
  for r in rows:
    if r["fraction"] == 1.0 and r.get("shared_full_cell", True):
      full.setdefault(r["num_kept"], {})[r["seed"]] = r["test_error"]
  ks = np.array(sorted(full), float)
  errs = [np.array([full[int(k)][s] for s in sorted(full[int(k)])]) for k in ks]
  a, b = fit_power_law(ks, [e.mean() for e in errs])
  rng = np.random.default_rng(seed)
  bs = []
  for _ in range(int(n_boot)):
    m = [e[rng.integers(0, len(e), len(e))].mean() for e in errs]
    bs.append(fit_power_law(ks, m)[1])
  bs = np.array(bs)
  m = np.array([e.mean() for e in errs])
  resid = np.log(m) - np.log(a * ks ** b)
  local = np.diff(np.log(m)) / np.diff(np.log(ks))  # slope between neighbouring pools
  return dict(a=a, b=b, rms_log_residual=float(np.sqrt(np.mean(resid ** 2))),
              local_slopes=local.tolist(), b_lo=float(np.percentile(bs, 2.5)),
              b_hi=float(np.percentile(bs, 97.5)),
              k=ks.tolist(), err=[float(e.mean()) for e in errs], num_boot=int(n_boot))


def interp_loglog(k, err, kq) -> np.ndarray:
  """log-log linear interpolation of (k, err) at kq; nan outside [min k, max k]."""
  k, err, kq = (np.asarray(v, float) for v in (k, err, kq))
  o = np.argsort(k)
  k, err = k[o], err[o]
  out = np.exp(np.interp(np.log(kq), np.log(k), np.log(np.maximum(err, 1e-6))))
  out[(kq < k[0] * (1 - 1e-9)) | (kq > k[-1] * (1 + 1e-9))] = np.nan
  return out


def curves(summary: list) -> dict:
  """(metric, keep, f) -> dict(k, err, sem, pool) sorted by pool; f = 1 under every metric."""
  out: dict = {}
  for s in summary:
    c = out.setdefault((s["metric"], s["keep"], s["fraction"]),
                       dict(k=[], err=[], sem=[], std=[], pool=[]))
    for name, v in (("k", s["num_kept"]), ("err", s["err_mean"]), ("sem", s["err_sem"]),
                    ("std", s["err_std"]), ("pool", s["pool"])):
      c[name].append(v)
  for c in out.values():
    o = np.argsort(c["pool"])
    for name in c:
      c[name] = np.asarray(c[name], float)[o]
  return out


def pareto_frontier(summary: list, metric: str, k_grid, power: dict) -> dict:
  """Min over (f, keep) of metric's curves at each k; ratio to the power law; local slopes."""
  cs = {key: c for key, c in curves(summary).items() if key[0] == metric and len(c["k"]) >= 1}
  k_grid = np.asarray(k_grid, float)
  names, stack = [], []
  for (m, keep, f), c in sorted(cs.items()):
    if len(c["k"]) == 1:
      v = np.where(np.isclose(k_grid, c["k"][0], rtol=1e-6), c["err"][0], np.nan)
    else:
      v = interp_loglog(c["k"], c["err"], k_grid)
    names.append((keep, f))
    stack.append(v)
  stack = np.array(stack)
  ok = np.isfinite(stack).any(0)
  best = np.full(len(k_grid), np.nan)
  f_opt = np.full(len(k_grid), np.nan)
  keep_opt = [None] * len(k_grid)
  pruned = np.zeros(len(k_grid), bool)  # some f < 1 curve is defined here
  for j in np.flatnonzero(ok):
    i = int(np.nanargmin(stack[:, j]))
    best[j], f_opt[j], keep_opt[j] = stack[i, j], names[i][1], names[i][0]
    pruned[j] = any(np.isfinite(stack[t, j]) and names[t][1] < 1 for t in range(len(names)))
  pl = power["a"] * k_grid ** power["b"]
  ratio = best / pl
  f1 = next((stack[i] for i, nm in enumerate(names) if nm[1] == 1.0), np.full(len(k_grid), np.nan))
  ratio_f1 = best / f1
  lk, le = np.log(k_grid), np.log(best)
  slope = np.full(len(k_grid), np.nan)
  fin = np.isfinite(le)
  idx = np.flatnonzero(fin)
  for j in range(1, len(idx) - 1):
    a, c = idx[j - 1], idx[j + 1]
    slope[idx[j]] = (le[c] - le[a]) / (lk[c] - lk[a])
  return dict(k=k_grid, err=best, f_opt=f_opt, keep_opt=keep_opt, ratio=ratio, slope=slope,
              has_pruned=pruned, ratio_f1=ratio_f1, pruned_wins=pruned & (f_opt < 1))


def crossovers(summary: list, metric: str, fractions) -> dict:
  """Per f < 1: the pool size where keep-hard starts beating keep-easy (log interpolation of
  err_hard - err_easy between pools); 'below' = hard wins already at the smallest pool,
  'above' = easy wins up to the largest."""
  cs = curves(summary)
  out = {}
  for f in fractions:
    if f == 1.0 or (metric, "hard", f) not in cs or (metric, "easy", f) not in cs:
      continue
    h, e = cs[(metric, "hard", f)], cs[(metric, "easy", f)]
    d = h["err"] - e["err"]  # > 0: easy better
    P, k = h["pool"], h["k"]
    res = dict(diff=d.tolist(), pool=P.tolist(), status="none", pool_x=None, k_x=None)
    if (d <= 0).all():
      res["status"] = "below"
    elif (d > 0).all():
      res["status"] = "above"
    else:
      i = next((j for j in range(len(d) - 1) if d[j] > 0 and d[j + 1] <= 0), None)
      if i is None:  # hard better at small pools, easy at large: against the theory
        res["status"] = "reversed"
      else:
        t = d[i] / (d[i] - d[i + 1])
        res["status"] = "crossed"
        res["pool_x"] = float(np.exp(np.log(P[i]) + t * (np.log(P[i + 1]) - np.log(P[i]))))
        res["k_x"] = float(np.exp(np.log(k[i]) + t * (np.log(k[i + 1]) - np.log(k[i]))))
    out[str(f)] = res
  return out


def best_at_pool(summary: list, metric: str) -> list:
  """At each pool: the (f, keep) with the lowest mean test error (f = 1 included), and the
  smallest f (either keep rule) whose error is within 2 combined s.e.m. of f = 1 (how much of
  the pool can be pruned for free; the measured analogue of theory.frontier.lossless_fraction)."""
  out = []
  for P in sorted({s["pool"] for s in summary}):
    ss = [s for s in summary if s["pool"] == P and s["metric"] == metric]
    b = min(ss, key=lambda s: s["err_mean"])
    full = next(s for s in ss if s["fraction"] == 1.0)
    free = [s for s in ss if s["err_mean"] <= full["err_mean"] + 2 * math.hypot(
        s["err_sem"], full["err_sem"])]
    fr = min(free, key=lambda s: (s["fraction"], s["err_mean"]))
    out.append(dict(pool=P, num_pool=full["num_kept"], fraction=b["fraction"], keep=b["keep"],
                    err=b["err_mean"], err_full=full["err_mean"], sem_full=full["err_sem"],
                    free_fraction=fr["fraction"], free_keep=fr["keep"]))
  return out


def frontier_at_pool_sizes(summary: list, metric: str) -> list:
  """At each whole-pool size k = n_P (the f = 1 points): the best of the whole pool and the
  pruned sets of larger pools with the same k (log-log interpolated between pools), i.e. where
  to get k examples from. Pools whose k no pruned curve reaches are left out."""
  cs = {key: c for key, c in curves(summary).items() if key[0] == metric}
  f1 = next(c for (m, keep, f), c in cs.items() if f == 1.0)
  out = []
  for k, e1, s1 in zip(f1["k"], f1["err"], f1["sem"]):
    cands = []
    for (m, keep, f), c in cs.items():
      if f < 1 and len(c["k"]) > 1:
        v = interp_loglog(c["k"], c["err"], [k])[0]
        if np.isfinite(v):
          cands.append((float(v), f, keep))
    if cands:
      v, f, keep = min(cands)
      out.append(dict(k=float(k), err_full=float(e1), sem_full=float(s1), best_pruned_err=v,
                      best_pruned_f=f, best_pruned_keep=keep,
                      f_opt=f if v < e1 else 1.0, pool_for_best=float(k / f)))
  return out


def _spearman(a, b) -> float:
  from scipy.stats import spearmanr
  a, b = np.asarray(a, float), np.asarray(b, float)
  ok = np.isfinite(a) & np.isfinite(b)
  if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
    return float("nan")
  return float(spearmanr(a[ok], b[ok])[0])


# ----------------------------------------------------------------------------
# Theory tables.


def theory_tables(config, workdir: Optional[str], log=lambda s: None) -> dict:
  """eps(alpha_prune; f, theta, keep) on a log alpha grid for the config's f and thetas, plus
  the theta = 0 crossover alphas and frontier; cached in workdir/theory.json."""
  from theory import frontier as th_frontier
  from theory.replica import solve_replica
  th = config.theory
  alpha = np.geomspace(float(th.alpha_min), float(th.alpha_max), int(th.num_alpha))
  fr = np.array(sorted({float(f) for f in config.fractions}, reverse=True))
  thetas = [float(t) for t in th.thetas_deg]
  key = core_io.fingerprint(dict(alpha=alpha.tolist(), f=fr.tolist(), thetas=thetas, v=1))
  path = os.path.join(workdir, "theory.json") if workdir else None
  if path and os.path.exists(path):
    with open(path) as fh:
      t = json.load(fh)
    if t.get("key") == key:
      return t
  t0 = time.time()
  eps = {}
  for deg in thetas:
    for keep in KEEPS:
      r = solve_replica(alpha[None], fr[:, None], math.radians(deg), keep)
      e = np.where(r["residual"] < 1e-5, r["eps"], np.nan)
      eps[f"{deg:g}/{keep}"] = e.tolist()
  cross = {str(f): th_frontier.crossover_alpha(float(f)) for f in fr if f < 1}
  front = th_frontier.pareto_frontier(alpha, fr, 0.0)
  c = th_frontier.asymptotic_constant()
  t = dict(key=key, alpha=alpha.tolist(), fractions=fr.tolist(), thetas_deg=thetas, eps=eps,
           crossover_alpha=cross, frontier_eps=front["eps"].tolist(),
           frontier_f_opt=front["f_opt"].tolist(),
           frontier_keep_opt=[str(k) for k in front["keep_opt"]], power_law_c=c,
           wall_time_s=round(time.time() - t0, 1))
  log(f"theory tables: {t['wall_time_s']}s")
  if path and parallel.process_index() == 0:
    core_io.atomic_write_text(path, json.dumps(t))
  return t


def theory_eps(t: dict, alpha, f: float, theta_deg: float, keep: str) -> np.ndarray:
  """Interpolates a theory table in log alpha (nan outside the grid)."""
  fr = np.asarray(t["fractions"])
  i = int(np.argmin(np.abs(fr - f)))
  keep = "hard" if f == 1.0 else keep
  row = np.asarray(t["eps"][f"{theta_deg:g}/{keep}"], float)[i]
  return interp_loglog(t["alpha"], row, np.atleast_1d(np.asarray(alpha, float)))


def theory_f_opt(t: dict, theta_deg: float) -> np.ndarray:
  """The f (of the config's) on the theory's Pareto frontier at each alpha of the table."""
  alpha = np.asarray(t["alpha"])
  fr = list(t["fractions"])
  e = np.array([[theory_eps(t, alpha, f, theta_deg, k) for k in KEEPS] for f in fr])
  e = np.where(np.isfinite(e), e, np.inf).min(axis=1)  # (F, A)
  return np.asarray(fr)[np.argmin(e, axis=0)]


def stretch_fit(summary: list, metric: str, t: dict, pools_fit, pools_pred) -> dict:
  """Fits log eps_meas = log c + log eps_th(k / N_eff; f, theta, keep) on the cells of
  `pools_fit` (grid over theta and N_eff, c in closed form), predicts `pools_pred`."""
  ss = [s for s in summary if s["metric"] == metric and s["keep"] in KEEPS + ("random",)]
  ss = [s for s in ss if s["fraction"] < 1.0 or s["keep"] == "hard"]  # f = 1 once per pool
  fit = [s for s in ss if s["pool"] in pools_fit]
  pred = [s for s in ss if s["pool"] in pools_pred]
  if not fit or not pred:
    return dict(status="not enough pools")
  ks = np.array([s["num_kept"] for s in summary], float)
  amin, amax = t["alpha"][0], t["alpha"][-1]
  n_grid = np.geomspace(ks.max() / amax, ks.min() / amin, 61)
  best = None
  for deg in t["thetas_deg"]:
    for n_eff in n_grid:
      th = np.array([theory_eps(t, s["num_kept"] / n_eff, s["fraction"], deg, s["keep"])[0]
                     for s in fit])
      if not np.isfinite(th).all() or (th <= 0).any():
        continue
      r = np.log([s["err_mean"] for s in fit]) - np.log(th)
      c = float(r.mean())
      sse = float(((r - c) ** 2).sum())
      if best is None or sse < best["sse"]:
        best = dict(theta_deg=deg, n_eff=float(n_eff), log_c=c, sse=sse)
  if best is None:
    return dict(status="no fit inside the theory grid")

  def predict(s):
    return float(np.exp(best["log_c"]) * theory_eps(
        t, s["num_kept"] / best["n_eff"], s["fraction"], best["theta_deg"], s["keep"])[0])

  out = dict(status="ok", **best, pools_fit=list(pools_fit), pools_pred=list(pools_pred),
             rms_log_fit=float(np.sqrt(best["sse"] / len(fit))))
  lr = [math.log(s["err_mean"] / predict(s)) for s in pred if np.isfinite(predict(s))]
  out["rms_log_pred"] = float(np.sqrt(np.mean(np.square(lr)))) if lr else float("nan")
  keep_calls = []
  for P in pools_pred:
    for f in sorted({s["fraction"] for s in pred if s["fraction"] < 1}):
      h = [s for s in pred if s["pool"] == P and s["fraction"] == f and s["keep"] == "hard"]
      e = [s for s in pred if s["pool"] == P and s["fraction"] == f and s["keep"] == "easy"]
      if h and e:
        keep_calls.append(dict(pool=P, fraction=f,
                               predicted="hard" if predict(h[0]) < predict(e[0]) else "easy",
                               measured="hard" if h[0]["err_mean"] < e[0]["err_mean"] else "easy"))
  out["keep_calls"] = keep_calls
  out["keep_accuracy"] = (float(np.mean([c["predicted"] == c["measured"] for c in keep_calls]))
                          if keep_calls else float("nan"))
  best_calls = []
  for P in pools_pred:
    cand = [s for s in pred if s["pool"] == P]
    pb = min(cand, key=predict)
    mb = min(cand, key=lambda s: s["err_mean"])
    best_calls.append(dict(pool=P, predicted=(pb["fraction"], pb["keep"]),
                           measured=(mb["fraction"], mb["keep"])))
  out["best_calls"] = best_calls
  return out


def analyze(results: dict, config, workdir: Optional[str], log=lambda s: None) -> dict:
  rows = results["rows"]
  summary = summarize(rows)
  power = power_law_bootstrap(rows, int(config.get("bootstrap", 1000)))
  # Frontiers on the k range of the f = 1 points: the power law is compared where it was
  # measured (interpolation), never extrapolated below the smallest pool.
  k_grid = np.geomspace(min(power["k"]), max(power["k"]), 28)
  metrics = [m for m in results["metrics"]]
  fronts, cross, best_pool, gains, at_k = {}, {}, {}, {}, {}
  for m in metrics:
    fr = pareto_frontier(summary, m, k_grid, power)
    fronts[m] = fr
    sel = fr["has_pruned"] & np.isfinite(fr["ratio"])
    upper = sel & (k_grid >= np.sqrt(k_grid[sel].min() * k_grid[sel].max())) if sel.any() else sel
    # "beats the power law": a pruned set (f < 1) is the frontier there and lies below the
    # fitted f = 1 power law (the f = 1 points alone scatter around their own fit).
    beats = fr["pruned_wins"] & (fr["ratio"] < 1)
    win = fr["pruned_wins"] & np.isfinite(fr["ratio_f1"])
    gains[m] = dict(
        min_ratio=float(np.nanmin(fr["ratio"][beats])) if beats.any() else float("nan"),
        k_at_min=float(k_grid[beats][np.nanargmin(fr["ratio"][beats])]) if beats.any() else None,
        min_ratio_f1=float(np.nanmin(fr["ratio_f1"][win])) if win.any() else float("nan"),
        k_at_min_f1=float(k_grid[win][np.nanargmin(fr["ratio_f1"][win])]) if win.any() else None,
        mean_log_gain_upper=float(-np.nanmean(np.log(fr["ratio"][upper]))) if upper.any()
        else float("nan"),
        k_beats_from=float(k_grid[beats].min()) if beats.any() else None,
        frac_grid_beating=float(beats.sum() / max(sel.sum(), 1)),
        slope_lower=_fit_slope(k_grid, fr["err"], sel & ~upper),
        slope_upper=_fit_slope(k_grid, fr["err"], upper),
        spearman_k_fopt=_spearman(k_grid[sel], fr["f_opt"][sel]))
    if m != "random":
      cross[m] = crossovers(summary, m, results["fractions"])
    best_pool[m] = best_at_pool(summary, m)
    at_k[m] = frontier_at_pool_sizes(summary, m)
  t = theory_tables(config, workdir, log)
  for m, cm in cross.items():
    for f, c in cm.items():
      ax = t["crossover_alpha"].get(str(float(f)))
      c["theory_alpha_x"] = ax
      c["implied_n_eff"] = (c["k_x"] / ax) if (c.get("k_x") and ax and np.isfinite(ax)) else None
  pools = results["pools"]
  half = int(math.ceil(len(pools) / 2))
  stretch = {}
  for m in metrics:
    if m != "random" and len(pools) >= 2:
      stretch[m] = stretch_fit(summary, m, t, pools[:half], pools[half:])
  theory_gain = {}
  alpha = np.asarray(t["alpha"])
  for deg in t["thetas_deg"]:
    e = np.array([theory_eps(t, alpha, f, deg, k) for f in t["fractions"] for k in KEEPS])
    frontier_eps = np.nanmin(e, axis=0)
    f1 = theory_eps(t, alpha, 1.0, deg, "hard")
    upper = alpha >= 2.0
    theory_gain[f"{deg:g}"] = dict(mean_log_gain_vs_f1=float(np.nanmean(np.log(
        f1[upper] / frontier_eps[upper]))), frontier=frontier_eps.tolist())
  return dict(summary=summary, power_law=power, frontiers={m: _lists(v) for m, v in
                                                           fronts.items()},
              gains=gains, crossovers=cross, best_at_pool=best_pool, frontier_at_k=at_k,
              theory=t,
              theory_gain=theory_gain, stretch=stretch)


def _fit_slope(k, err, mask) -> float:
  mask = mask & np.isfinite(err)
  if mask.sum() < 2:
    return float("nan")
  return float(np.polyfit(np.log(k[mask]), np.log(err[mask]), 1)[0])


def _lists(d: dict) -> dict:
  return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}


# ----------------------------------------------------------------------------
# Plots.


def _colors(n):
  import matplotlib.pyplot as plt
  return plt.cm.viridis(np.linspace(0.0, 0.85, n))  # as theory.figures


def _fcolors(fractions):
  fr = sorted({float(f) for f in fractions}, reverse=True)
  return dict(zip(fr, _colors(len(fr))))


def _panels(results):
  out = []
  for m in results["metrics"]:
    out += [(m, "random")] if m == "random" else [(m, k) for k in results["keeps"]]
  return out


def plot_curves(results: dict, path: str) -> None:
  """Panel per (metric, keep): test error vs examples kept, log-log, one curve per f."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  an = results["analysis"]
  cs = curves(an["summary"])
  pw = an["power_law"]
  panels = _panels(results)
  ncol = 4
  nrow = int(math.ceil(len(panels) / ncol))
  fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.5 * nrow), dpi=80, squeeze=False,
                           sharex=True, sharey=True)
  col = _fcolors(results["fractions"])
  kk = np.geomspace(min(pw["k"]) / 1.5, max(pw["k"]) * 1.1, 50)
  for ax, (m, keep) in zip(axes.flat, panels):
    for f in sorted(col, reverse=True):
      c = cs.get((m, keep, f))
      if c is None:
        continue
      ax.errorbar(c["k"], 100 * c["err"], yerr=100 * c["sem"], color=col[f], marker="o", ms=3.5,
                  capsize=2, lw=1.4, label=f"f = {f:g}")
    ax.plot(kk, 100 * pw["a"] * kk ** pw["b"], "k:", lw=1.2,
            label=f"f=1 power law, b={pw['b']:.2f}")
    ax.set(xscale="log", yscale="log", title=f"{metric_label(m)}" +
           ("" if keep == "random" else f", keep {keep}"))
    ax.grid(alpha=0.3, which="both")
  for ax in axes.flat[len(panels):]:
    ax.axis("off")
  for c in range(ncol):  # the lowest drawn panel of each column carries the x axis
    used = [r for r in range(nrow) if r * ncol + c < len(panels)]
    if used:
      axes[used[-1], c].tick_params(labelbottom=True)
      axes[used[-1], c].set_xlabel("examples kept k = f * pool")
  for ax in axes[:, 0]:
    ax.set_ylabel("test error (%)")
  from matplotlib.ticker import FormatStrFormatter
  for ax in axes.flat:
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="y", which="minor", labelsize=7)
  axes.flat[0].legend(fontsize=7.5, loc="lower left")
  n_seeds = len(results["seeds"])
  fig.suptitle(f"{results['dataset']}: test error vs examples kept, pools {results['pools']} "
               f"(nested), error bars: s.e.m. over {n_seeds} seeds; power law on f = 1: "
               f"b = {pw['b']:.3f} [{pw['b_lo']:.3f}, {pw['b_hi']:.3f}] (95% bootstrap)",
               fontsize=10)
  fig.tight_layout()
  core_io.atomic_savefig(fig, path)


def plot_frontier(results: dict, path: str) -> None:
  """Measured keep-hard / keep-easy of the main metric beside the theory's Fig. 1 (same f and
  colours), then the frontiers vs the power law, their local slopes, crossovers and best f."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  an = results["analysis"]
  t = an["theory"]
  cs = curves(an["summary"])
  pw = an["power_law"]
  col = _fcolors(results["fractions"])
  main = main_metric(results)
  fig, axes = plt.subplots(2, 4, figsize=(19, 8.6), dpi=80)
  alpha = np.asarray(t["alpha"])
  for j, keep in enumerate(KEEPS):
    ax = axes[0, j]
    for f in sorted(col, reverse=True):
      c = cs.get((main, keep, f))
      if c is not None:
        ax.errorbar(c["k"], 100 * c["err"], yerr=100 * c["sem"], color=col[f], marker="o",
                    ms=3.5, capsize=2, lw=1.4, label=f"f = {f:g}")
    kk = np.geomspace(min(pw["k"]) / 1.5, max(pw["k"]) * 1.1, 50)
    ax.plot(kk, 100 * pw["a"] * kk ** pw["b"], "k:", lw=1.2, label="f=1 power law")
    ax.set(xscale="log", yscale="log", xlabel="examples kept k",
           ylabel="test error (%)", title=f"measured: {metric_label(main)}, keep {keep}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7.5)
    ax = axes[0, 2 + j]
    for f in sorted(col, reverse=True):
      ax.plot(alpha, theory_eps(t, alpha, f, 0.0, keep), color=col[f], lw=2, label=f"f = {f:g}")
    ax.plot(alpha, np.asarray(t["frontier_eps"]), "k--", lw=1.3, label="Pareto frontier")
    ax.plot(alpha, t["power_law_c"] / alpha, "k:", lw=1.2, label=f"{t['power_law_c']:.2f}/alpha")
    ax.set(xscale="log", yscale="log", ylim=(1e-4, 0.6), xlabel="alpha_prune = k / N",
           ylabel="test error eps", title=f"replica theory (perfect probe), keep {keep}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7.5)
  # Frontiers vs power law.
  ax = axes[1, 0]
  mcol = plt.get_cmap("tab10")
  for i, m in enumerate(results["metrics"]):
    fr = an["frontiers"][m]
    k, e = np.asarray(fr["k"]), np.asarray(fr["err"], float)
    sel = np.asarray(fr["has_pruned"])
    ax.plot(k[sel], 100 * e[sel], color=mcol(i), lw=1.8, label=f"{metric_label(m)} frontier")
  c1 = cs.get((results["metrics"][0], "random" if results["metrics"][0] == "random" else
               results["keeps"][0], 1.0))
  if c1 is not None:
    ax.errorbar(c1["k"], 100 * c1["err"], yerr=100 * c1["sem"], fmt="ko", ms=4, capsize=2,
                label="f = 1 (whole pool)")
  kk = np.asarray(an["frontiers"][main]["k"])
  ax.plot(kk, 100 * pw["a"] * kk ** pw["b"], "k:", lw=1.2,
          label=f"power law b = {pw['b']:.2f} [{pw['b_lo']:.2f}, {pw['b_hi']:.2f}]")
  ax.set(xscale="log", yscale="log", xlabel="examples kept k", ylabel="test error (%)",
         title="Pareto frontier over f and keep rule vs power law")
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=7.5)
  ax = axes[1, 1]
  for i, m in enumerate(results["metrics"]):
    fr = an["frontiers"][m]
    sel = np.asarray(fr["has_pruned"])
    ax.plot(np.asarray(fr["k"])[sel], np.asarray(fr["ratio"], float)[sel], color=mcol(i),
            lw=1.8, label=f"{metric_label(m)} / power law")
    ax.plot(np.asarray(fr["k"])[sel], np.asarray(fr["ratio_f1"], float)[sel], color=mcol(i),
            lw=1.2, ls="--", label=f"{metric_label(m)} / measured f = 1")
  ax.axhline(1.0, color="k", lw=1, ls=":")
  ax.set(xscale="log", xlabel="examples kept k", ylabel="frontier error / reference",
         title="frontier relative to the f = 1 power law (< 1: beats it)")
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=7.5)
  # (a) Crossovers: implied N_eff = k_x / alpha_x per f (constant if the theory's shape holds).
  n_ref, n_src = reference_n_eff(an, main)
  ax = axes[1, 2]
  lines = []  # one line per metric (a line per (metric, f) overflowed the panel)
  for m, cm in an["crossovers"].items():
    fs, ne = [], []
    for f, c in cm.items():
      if c.get("implied_n_eff"):
        fs.append(float(f))
        ne.append(c["implied_n_eff"])
    lines.append(f"{metric_label(m)}: " + ", ".join(f"{float(f):g} {c['status']}"
                                                    for f, c in cm.items()))
    if fs:
      ax.plot(fs, ne, "o-", color=mcol(results["metrics"].index(m)), label=metric_label(m))
  if n_ref:
    ax.axhline(n_ref, color="k", ls="--", lw=1.2, label=f"N_eff = {n_ref:.0f} ({n_src})")
  ax.set(xscale="log", yscale="log", xlabel="keep fraction f",
         ylabel="k at crossover / theory alpha_x(f)",
         title="(a) keep-hard overtakes keep-easy: implied N_eff")
  from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter, NullLocator
  ax.xaxis.set_major_locator(FixedLocator(sorted({float(f) for cm in an["crossovers"].values()
                                                  for f in cm})))
  ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
  ax.xaxis.set_minor_locator(NullLocator())
  ax.xaxis.set_minor_formatter(NullFormatter())
  ax.grid(alpha=0.3, which="both")
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=7, loc="lower right")
  ax.text(0.02, 0.98, "crossover per f (pools: results.json):\n" + "\n".join(lines),
          transform=ax.transAxes, fontsize=6.5, va="top",
          bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
  # (b) Best f on the frontier vs k (measured) and the theory's at k = alpha * N_eff.
  ax = axes[1, 3]
  for i, m in enumerate(results["metrics"]):
    fr = an["frontiers"][m]
    sel = np.asarray(fr["has_pruned"])
    ax.plot(np.asarray(fr["k"])[sel], np.asarray(fr["f_opt"], float)[sel], "o-", ms=3,
            color=mcol(i), label=f"{metric_label(m)} (measured)")
  if n_ref:
    for deg, ls in zip(t["thetas_deg"], ("--", "-.", ":")):
      ax.plot(alpha * n_ref, theory_f_opt(t, deg), "k", ls=ls, lw=1.5,
              label=f"theory, theta={deg:g}°, k = alpha x {n_ref:.0f}")
    k_all = np.asarray(an["frontiers"][main]["k"])
    ax.set_xlim(k_all.min() / 1.5, k_all.max() * 1.5)
  ax.set(xscale="log", yscale="log", xlabel="examples kept k", ylabel="best f on the frontier",
         title="(b) best keep fraction vs size")
  ax.legend(fontsize=7, loc="lower left")
  ax.grid(alpha=0.3, which="both")
  for ax in list(axes[0, :2]) + [axes[1, 0]]:
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="y", which="minor", labelsize=7)
  fig.suptitle(f"{results['dataset']}: measured scaling beside the replica theory (same f, same "
               f"colours); top: {metric_label(main)} vs theory Fig. 1", fontsize=11)
  fig.tight_layout()
  core_io.atomic_savefig(fig, path)


def reference_n_eff(an: dict, main: str) -> tuple:
  """N_eff that maps theory alpha to examples kept: the stretch fit of the main metric, else
  the median crossover-implied value; (None, '') when neither exists."""
  st = an.get("stretch", {}).get(main, {})
  if st.get("status") == "ok":
    return st["n_eff"], f"stretch fit, {metric_label(main)}"
  vals = [c["implied_n_eff"] for cm in an.get("crossovers", {}).values() for c in cm.values()
          if c.get("implied_n_eff")]
  if vals:
    return float(np.median(vals)), "median over crossovers"
  return None, ""


def main_metric(results: dict) -> str:
  for m in ("el2n", "forgetting", "ssl_prototype", "prototype", "grand"):
    if m in results["metrics"]:
      return m
  return results["metrics"][0]


# ----------------------------------------------------------------------------
# Report.


def _ratio_at(r, k) -> str:
  return "none" if k is None or not np.isfinite(r) else f"{r:.3f} (k={k:.0f})"


def _num(x, none: str = "") -> str:
  return none if x is None or not np.isfinite(x) else f"{x:.0f}"


def scaling_section(results: dict, image_prefix: Optional[str] = None) -> str:
  """Markdown section (tables + numbers) for a report. The figures are scaling_curves.png and
  scaling_frontier.png in the run folder; with ``image_prefix`` (a path or URL prefix, e.g.
  'scaling/') the section links them."""
  an = results["analysis"]
  pw = an["power_law"]
  summ = an["summary"]
  lines = ["## Beyond power-law scaling, measured (MNIST-1D pools)", ""]
  if image_prefix is not None:
    lines += [f"![test error vs examples kept]({image_prefix}scaling_curves.png)", "",
              f"![frontier and replica theory]({image_prefix}scaling_frontier.png)", ""]
  lines.append(
      f"{results['dataset']}, nested pools {results['pools']} (10% of each pool is its "
      f"validation split), fixed test set of {results['num_test']}; keep fractions "
      f"{results['fractions']}; metrics {[metric_label(m) for m in results['metrics']]}; "
      f"seeds {results['seeds']}. Budget: steps = max(min_steps, epochs x k / batch) "
      f"({results['config']['budget']}), best-validation checkpoint. "
      f"{results['cells_trained']} cells trained, {results['cells_cached']} from the cache.")
  lines.append("")
  lines.append(f"**Power law on f = 1**: test error = {pw['a']:.3g} k^{pw['b']:.3f}, exponent "
               f"95% bootstrap interval [{pw['b_lo']:.3f}, {pw['b_hi']:.3f}]; rms log residual "
               f"{pw['rms_log_residual']:.3f}; slopes between neighbouring pools: " +
               ", ".join(f"{x:.2f}" for x in pw["local_slopes"]) + ".")
  lines.append("")
  main = main_metric(results)
  fr = [f for f in results["fractions"]]
  head = "| pool | k at f=1 | steps at f=1 | " + " | ".join(
      f"f={f:g}" for f in fr) + " |"
  for m, keep in [("random", "random")] + [(main, k) for k in results["keeps"]]:
    if m not in results["metrics"]:
      continue
    lines.append(f"Test error (%), {metric_label(m)}" + ("" if keep == "random" else
                                                        f" keep {keep}") +
                 ", mean ± s.e.m. over seeds:")
    lines.append("")
    lines.append(head)
    lines.append("|" + "---|" * (3 + len(fr)))
    for P in results["pools"]:
      cells = []
      full = None
      for f in fr:
        s = next((s for s in summ if s["metric"] == m and s["keep"] == keep and s["pool"] == P
                  and s["fraction"] == f), None)
        if f == 1.0:
          full = s
        cells.append("" if s is None else f"{100 * s['err_mean']:.1f} ± {100 * s['err_sem']:.1f}")
      lines.append(f"| {P} | {full['num_kept'] if full else ''} | "
                   f"{full['num_steps'] if full else ''} | " + " | ".join(cells) + " |")
    lines.append("")
  lines.append("Frontier (min over f and keep rule) against the f = 1 power law:")
  lines.append("")
  lines.append("| metric | best ratio frontier/power law (at k) | best ratio frontier/measured "
               "f=1 (at k) | pruned set beats the power law from k | share of grid beating | "
               "mean log gain, upper half | slope lower / upper half | Spearman(k, best f) |")
  lines.append("|---|---|---|---|---|---|---|---|")
  for m, g in an["gains"].items():
    lines.append(
        f"| {metric_label(m)} | {_ratio_at(g['min_ratio'], g['k_at_min'])} | "
        f"{_ratio_at(g['min_ratio_f1'], g['k_at_min_f1'])} | "
        f"{_num(g['k_beats_from'], 'never')} | "
        f"{g['frac_grid_beating']:.2f} | {g['mean_log_gain_upper']:+.3f} | "
        f"{g['slope_lower']:.2f} / {g['slope_upper']:.2f} | {g['spearman_k_fopt']:+.2f} |")
  lines.append("")
  lines.append(f"(power-law exponent b = {pw['b']:.2f}; a frontier that steepens has upper-half "
               f"slope below b.)")
  lines.append("")
  lines.append("(a) Crossover keep-easy -> keep-hard (theory: alpha_prune at which keep-hard "
               "starts to win; implied N_eff = k_x / alpha_x):")
  lines.append("")
  lines.append("| metric | f | status | pool at crossover | k at crossover | theory alpha_x | "
               "implied N_eff |")
  lines.append("|---|---|---|---|---|---|---|")
  for m, cm in an["crossovers"].items():
    for f, c in cm.items():
      lines.append(f"| {metric_label(m)} | {float(f):g} | {c['status']} | "
                   f"{_num(c['pool_x'])} | {_num(c['k_x'])} | {c['theory_alpha_x']:.2f} | "
                   f"{_num(c['implied_n_eff'])} |")
  lines.append("")
  lines.append("(b) Best (f, keep) at each pool (lowest mean test error, f = 1 included):")
  lines.append("")
  lines.append("| metric | " + " | ".join(str(p) for p in results["pools"]) + " |")
  lines.append("|---|" + "---|" * len(results["pools"]))
  for m, bs in an["best_at_pool"].items():
    lines.append(f"| {metric_label(m)} | " + " | ".join(
        (f"f=1 ({100 * b['err']:.1f})" if b["fraction"] == 1.0 else
         f"f={b['fraction']:g} {b['keep']} ({100 * b['err']:.1f} vs {100 * b['err_full']:.1f})")
        for b in bs) + " |")
  lines.append("")
  ks = [r["k"] for r in next(iter(an["frontier_at_k"].values()), [])]
  lines.append("Where to get k examples from: test error (%) of the whole pool of that size vs "
               "the best pruned set of a larger pool (f, keep; interpolated between pools):")
  lines.append("")
  lines.append("| metric | " + " | ".join(f"k={k:.0f}" for k in ks) + " |")
  lines.append("|---|" + "---|" * len(ks))
  for m, rs in an["frontier_at_k"].items():
    lines.append(f"| {metric_label(m)} | " + " | ".join(
        f"whole {100 * r['err_full']:.1f} ± {100 * r['sem_full']:.1f} / f={r['best_pruned_f']:g} "
        f"{r['best_pruned_keep']} {100 * r['best_pruned_err']:.1f}" for r in rs) + " |")
  lines.append("")
  lines.append("Smallest f within 2 s.e.m. of the whole pool (pruned for free), per pool:")
  lines.append("")
  lines.append("| metric | " + " | ".join(str(p) for p in results["pools"]) + " |")
  lines.append("|---|" + "---|" * len(results["pools"]))
  for m, bs in an["best_at_pool"].items():
    lines.append(f"| {metric_label(m)} | " + " | ".join(
        "1" if b["free_fraction"] == 1.0 else f"{b['free_fraction']:g} {b['free_keep']}"
        for b in bs) + " |")
  lines.append("")
  tg = an["theory_gain"]
  lines.append("(c) Theory: mean log gain of the frontier over f = 1 for alpha_prune >= 2: " +
               ", ".join(f"theta={d}°: {v['mean_log_gain_vs_f1']:+.2f}" for d, v in tg.items()) +
               "; measured gains per metric are in the frontier table.")
  lines.append("")
  for m, st in an["stretch"].items():
    if st.get("status") != "ok":
      lines.append(f"Stretch fit ({metric_label(m)}): {st.get('status')}")
      continue
    lines.append(
        f"Stretch ({metric_label(m)}): fit on pools {st['pools_fit']}: N_eff = "
        f"{st['n_eff']:.0f}, theta = {st['theta_deg']:g}°, scale c = {math.exp(st['log_c']):.3g} "
        f"(rms log error {st['rms_log_fit']:.2f}); on pools {st['pools_pred']}: rms log error "
        f"{st['rms_log_pred']:.2f}, keep rule per f predicted right in "
        f"{100 * st['keep_accuracy']:.0f}% of {len(st['keep_calls'])}; best (f, keep) per pool "
        "predicted / measured: " + "; ".join(
            f"P={b['pool']}: {b['predicted'][0]:g} {b['predicted'][1]} / {b['measured'][0]:g} "
            f"{b['measured'][1]}" for b in st["best_calls"]))
    lines.append("")
  return "\n".join(lines) + "\n"
