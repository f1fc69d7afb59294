"""Score reliability on a dataset: every score's rank agreement between independent runs, its
kept-set overlaps and its cost, as reliability.json and reliability.md (the measurements:
`pruning.reliability`).

`run_reliability(config, workdir)` computes these for EL2N, GraNd, forgetting, PCA
prototypes (k-means seeds, k) and SSL prototypes (encoder seeds, k) on the data of an
`experiments/configs/ssl_sweep_*.py` config, reusing score files of the sweep when the
configs match (``cache_dir``); `table` renders the markdown.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable

import ml_collections

from pruning import scores as scores_lib
from pruning.reliability import averaged_runs, pairwise


def _timed(fn: Callable):
  t = time.time()
  r = fn()
  return r, time.time() - t


def _score_cost(res, elapsed: float) -> float:
  # what the score took when computed (a cached file keeps it); this call's time for files
  # written before score_io recorded it
  return float(res.meta.get("compute_seconds", elapsed))


def run_reliability(config: ml_collections.ConfigDict, workdir: str,
                    log: Callable[[str], None] = print) -> dict:
  """See the module docstring. ``config``: an ssl_sweep config plus ``reliability`` =
  dict(fractions, forgetting_runs, pca_seeds, pca_ks, ssl_seeds, ssl_ks,
  el2n_cache, ssl_encoder_dir)."""
  from core.data import load_dataset
  from core.io import atomic_write_text
  from experiments import prune_sweep
  from pruning import ssl
  rc = config.reliability
  os.makedirs(workdir, exist_ok=True)
  base = ml_collections.ConfigDict(config.sweep.to_dict())
  data = load_dataset(**base.train.dataset.to_dict())
  ds = data.train
  ids, labels = ds.ids, ds.labels
  fr = tuple(float(f) for f in rc.fractions)
  sc = prune_sweep._scoring_config(base)
  cache = rc.get("score_cache") or os.path.join(workdir, "scores")
  out = {"dataset": data.name, "num_train": len(ds), "fractions": list(fr), "metrics": {}}
  prev = os.path.join(workdir, "reliability.json")
  if os.path.exists(prev):  # metrics measured by an earlier call stay (this call adds its own)
    with open(prev) as fh:
      old = json.load(fh)
    if old.get("num_train") == len(ds) and old.get("fractions") == list(fr):
      out["metrics"] = old.get("metrics", {})

  def record(name, entry):
    out["metrics"][name] = entry
    log(f"{name}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in entry.items() if not isinstance(v, dict)))
    atomic_write_text(os.path.join(workdir, "reliability.json"), json.dumps(out, indent=1))

  # EL2N and GraNd: R independent inits inside one score file (per_run).
  for name in ("el2n", "grand"):
    if name not in rc.metrics:
      continue
    res, dt = _timed(lambda: scores_lib.compute_scores(name, data, sc, cache_dir=cache, log=log))
    R = len(res.per_run)
    cost = _score_cost(res, dt)
    entry = {"num_runs": R, "cost_s_total": round(cost, 1), "cost_s_per_run": round(cost / R, 1),
             "cost_note": "the score file's compute_seconds; ~0 for a file from before it "
                          "existed, loaded from a cache"}
    for m in (1, 2):
      if R // m >= 2:
        entry[f"runs_averaged={m}"] = pairwise(averaged_runs(res.per_run, m), ids, labels, fr)
    record(name, entry)

  if "forgetting" in rc.metrics:
    scf = ml_collections.ConfigDict(sc.to_dict())
    scf.forgetting.num_runs = int(rc.forgetting_runs)
    res, dt = _timed(lambda: scores_lib.compute_scores("forgetting", data, scf, cache_dir=cache,
                                                       log=log))
    cost = _score_cost(res, dt)
    record("forgetting", {"cost_s_total": round(cost, 1),
                          "cost_s_per_run": round(cost / len(res.per_run), 1),
                          "across_runs": pairwise(list(res.per_run), ids, labels, fr)})

  if "prototype" in rc.metrics:
    emb, dt_e = _timed(lambda: scores_lib.pca_embedding(ds.x, int(sc.prototype.dim), 0))
    by_seed, t = [], time.time()
    for s in rc.pca_seeds:
      by_seed.append(ssl.checked_prototype_scores(emb, k=int(sc.prototype.k), seed=int(s)))
    dt_k = (time.time() - t) / len(rc.pca_seeds)
    by_k = [ssl.checked_prototype_scores(emb, k=int(k), seed=0) for k in rc.pca_ks]
    record("prototype_pca", {"cost_s_total": round(dt_e + dt_k, 1),
                             "across_kmeans_seeds": pairwise(by_seed, ids, labels, fr),
                             "across_k": pairwise(by_k, ids, labels, fr),
                             "ks": [int(k) for k in rc.pca_ks]})

  if "ssl_prototype" in rc.metrics:
    encs = []
    for s in rc.ssl_seeds:
      enc_cfg = ml_collections.ConfigDict(config.ssl.encoder.to_dict())
      enc_cfg.seed = int(s)
      sub = dict(encoder=enc_cfg, baselines=(), encoder_dir=rc.ssl_encoder_dir or
                 os.path.join(workdir, "encoders"))
      encs.append(ssl.encoder_for(data, sub, log))
    k0 = int(rc.ssl_ks[len(rc.ssl_ks) // 2])
    across_seeds = {}
    for k in rc.ssl_ks:
      across_seeds[f"k={int(k)}"] = pairwise(
          [ssl.checked_prototype_scores(e["train_embeddings"], k=int(k)) for e in encs],
          ids, labels, fr)
    t = time.time()
    by_k = [ssl.checked_prototype_scores(encs[0]["train_embeddings"], k=int(k))
            for k in rc.ssl_ks]
    dt_k = (time.time() - t) / len(rc.ssl_ks)
    cls = [ssl.checked_prototype_scores(e["train_embeddings"], labels, k=max(k0 // 10, 1),
                                        centroids="kmeans_per_class") for e in encs]
    tm = encs[0]["info"]["train_metrics"]["wall_time_s"] + encs[0]["info"]["embed_time_s"]
    record("ssl_prototype", {
        "encoder_seeds": [int(s) for s in rc.ssl_seeds],
        "linear_probe": [e["info"]["probe"]["linear_probe"] for e in encs],
        "cost_s_encoder": round(tm, 1), "cost_s_kmeans": round(dt_k, 1),
        "across_encoder_seeds": across_seeds,
        "across_k": pairwise(by_k, ids, labels, fr), "ks": [int(k) for k in rc.ssl_ks],
        f"class_conditional_k={k0}_across_encoder_seeds": pairwise(cls, ids, labels, fr)})
  atomic_write_text(os.path.join(workdir, "reliability.md"), table(out))
  return out


def table(out: dict) -> str:
  """Markdown table of the reliability results."""
  fr = out["fractions"]
  head = ("| score | what varies | runs | Spearman (mean, min..max) | " +
          " | ".join(f"kept overlap f={f:g}" for f in fr) + " | cost (s) |\n|---|---|---|---|" +
          "---|" * len(fr) + "---|")
  lines = [head]

  def row(score, what, p, cost):
    lines.append(f"| {score} | {what} | {p['num_runs']} | {p['spearman']:.3f} "
                 f"({p['spearman_min']:.3f}..{p['spearman_max']:.3f}) | " +
                 " | ".join(f"{p[f'overlap@{f:g}']:.3f}" for f in fr) + f" | {cost} |")

  m = out["metrics"]
  for name in ("el2n", "grand"):
    if name in m:
      e = m[name]
      for k in ("runs_averaged=1", "runs_averaged=2"):
        if k in e:
          row(name, f"init seed, {k.split('=')[1]} run(s) averaged", e[k],
              f"{e['cost_s_per_run']}/run")
  if "forgetting" in m:
    e = m["forgetting"]
    row("forgetting", "training run", e["across_runs"], f"{e['cost_s_per_run']}/run")
  if "prototype_pca" in m:
    e = m["prototype_pca"]
    row("prototype (PCA)", "k-means seed", e["across_kmeans_seeds"], e["cost_s_total"])
    row("prototype (PCA)", f"k in {e['ks']}", e["across_k"], e["cost_s_total"])
  if "ssl_prototype" in m:
    e = m["ssl_prototype"]
    cost = f"{e['cost_s_encoder']} encoder + {e['cost_s_kmeans']} k-means"
    for k, p in e["across_encoder_seeds"].items():
      row("SSL prototype", f"encoder seed, {k}", p, cost)
    row("SSL prototype", f"k in {e['ks']}", e["across_k"], e["cost_s_kmeans"])
    for k, p in e.items():
      if k.startswith("class_conditional"):
        row("SSL prototype, class-cond.", "encoder seed, " + k.split("_k=")[1].split("_")[0]
            + " centroids", p, cost)
  return "\n".join(lines) + "\n"
